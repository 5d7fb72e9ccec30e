package dlq

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awstest"
	"github.com/taskbridge/taskbridge/internal/consumer"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// fakeSFN answers a heartbeat by token: "closed-…" tokens are closed, "broken-…"
// ones fail to be checked; executions by ARN suffix.
type fakeSFN struct{ beats []string }

func (f *fakeSFN) SendTaskHeartbeat(_ context.Context, in *sfn.SendTaskHeartbeatInput, _ ...func(*sfn.Options)) (*sfn.SendTaskHeartbeatOutput, error) {
	tok := aws.ToString(in.TaskToken)
	f.beats = append(f.beats, tok)
	switch {
	case strings.HasPrefix(tok, "closed-"):
		return nil, &smithy.GenericAPIError{Code: "TaskTimedOut", Message: "task timed out"}
	case strings.HasPrefix(tok, "broken-"):
		return nil, &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "no"}
	}
	return &sfn.SendTaskHeartbeatOutput{}, nil
}

func (f *fakeSFN) DescribeExecution(_ context.Context, in *sfn.DescribeExecutionInput, _ ...func(*sfn.Options)) (*sfn.DescribeExecutionOutput, error) {
	if strings.HasSuffix(aws.ToString(in.ExecutionArn), ":ended") {
		return &sfn.DescribeExecutionOutput{Status: sfntypes.ExecutionStatusFailed}, nil
	}
	return &sfn.DescribeExecutionOutput{Status: sfntypes.ExecutionStatusRunning}, nil
}

// failingSQS is the emulator's SQS with SendMessage or DeleteMessage failing.
type failingSQS struct {
	*sqs.Client
	sendErr, deleteErr error
}

func (f failingSQS) SendMessage(ctx context.Context, in *sqs.SendMessageInput, o ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	if f.sendErr != nil {
		return nil, f.sendErr
	}
	return f.Client.SendMessage(ctx, in, o...)
}

func (f failingSQS) DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, o ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error) {
	if f.deleteErr != nil {
		return nil, f.deleteErr
	}
	return f.Client.DeleteMessage(ctx, in, o...)
}

type bundle struct {
	sqs *sqs.Client
	sfn *fakeSFN
	q   Queue
	in  *Inspector
}

// setup makes a queue and its DLQ on the emulator, and an Inspector that does not
// wait between moves.
func setup(t *testing.T) bundle {
	t.Helper()
	client := sqs.NewFromConfig(awstest.Config(t))
	ctx := context.Background()
	name := awstest.Stack(t)
	var urls []string
	for _, n := range []string{name, name + "-dlq"} {
		out, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(n)})
		require.NoError(t, err)
		urls = append(urls, aws.ToString(out.QueueUrl))
		t.Cleanup(func() { _, _ = client.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: out.QueueUrl}) })
	}
	b := bundle{sqs: client, sfn: &fakeSFN{}, q: Queue{Name: "work", URL: urls[0], DLQURL: urls[1]}}
	b.in = New(client, b.sfn)
	b.in.sleepFunc = func(context.Context, time.Duration) bool { return true }
	return b
}

func envelope(detail map[string]any) string {
	b, _ := json.Marshal(map[string]any{"version": "0", "id": "1", "detail-type": "work", "source": "t", "account": "1", "time": "2026-01-02T03:04:05Z", "region": "us-east-1", "resources": []string{}, "detail": detail})
	return string(b)
}

// deadLetter puts a message into the DLQ as the worker does (reason != "") or as
// SQS's redrive leaves it (no attributes).
// It is sent once: a send the SDK retried after a reply it lost (the emulator under
// load) put one message twice once, and the tests count messages exactly.
func (b bundle) deadLetter(t *testing.T, body, reason string) {
	t.Helper()
	in := &sqs.SendMessageInput{QueueUrl: aws.String(b.q.DLQURL), MessageBody: aws.String(body)}
	if reason != "" {
		in.MessageAttributes = map[string]types.MessageAttributeValue{
			consumer.DeadLetterReasonAttr:       {DataType: aws.String("String"), StringValue: aws.String(reason)},
			consumer.DeadLetterSourceQueueAttr:  {DataType: aws.String("String"), StringValue: aws.String("work")},
			consumer.DeadLetterReceiveCountAttr: {DataType: aws.String("Number"), StringValue: aws.String("5")},
		}
	}
	before := b.depth(t, b.q.DLQURL)
	_, err := b.sqs.SendMessage(context.Background(), in, func(o *sqs.Options) { o.RetryMaxAttempts = 1 })
	if err != nil && b.depth(t, b.q.DLQURL) == before {
		_, err = b.sqs.SendMessage(context.Background(), in, func(o *sqs.Options) { o.RetryMaxAttempts = 1 })
	}
	require.NoError(t, err)
	require.Equal(t, before+1, b.depth(t, b.q.DLQURL), "one message more in the DLQ")
}

// depth is the messages of url, visible or not.
func (b bundle) depth(t *testing.T, url string) int {
	t.Helper()
	out, err := b.sqs.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	require.NoError(t, err)
	n := 0
	for _, v := range out.Attributes {
		c, err := strconv.Atoi(v)
		require.NoError(t, err)
		n += c
	}
	return n
}

// drain receives every message of url and deletes it, returning the bodies.
func (b bundle) drain(t *testing.T, url string) []string {
	t.Helper()
	var bodies []string
	for {
		out, err := b.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"}})
		require.NoError(t, err)
		if len(out.Messages) == 0 {
			return bodies
		}
		for _, m := range out.Messages {
			if url == b.q.URL {
				require.NotContains(t, m.MessageAttributes, consumer.DeadLetterReasonAttr, "the DLQ's notes do not travel back")
			}
			bodies = append(bodies, aws.ToString(m.Body))
			_, err := b.sqs.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle})
			require.NoError(t, err)
		}
	}
}

func TestListGroupsByReasonAndReleasesWhatItRead(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.deadLetter(t, envelope(map[string]any{"TaskToken": "open-1", "executionArn": "arn:x:1"}), "job work failed: boom")
	b.deadLetter(t, "not JSON", "malformed event")
	b.deadLetter(t, envelope(map[string]any{"TaskToken": "open-2"}), "job work failed: boom")
	b.deadLetter(t, envelope(map[string]any{"n": 1}), "")

	l, err := b.in.List(ctx, b.q, 100)
	require.NoError(t, err)
	require.Equal(t, 4, l.Depth)
	require.Equal(t, 4, l.Read)
	got := map[string]int{}
	for _, g := range l.Groups {
		got[g.Reason] = g.Count
		for _, m := range g.Messages {
			require.Empty(t, m.Body, "list shows no bodies")
		}
	}
	require.Equal(t, map[string]int{"job work failed: boom": 2, "malformed event": 1, ReasonMaxReceives: 1}, got)
	require.Equal(t, "job work failed: boom", l.Groups[0].Reason, "the oldest group first")
	require.Equal(t, "arn:x:1", l.Groups[0].Messages[0].ExecutionARN)
	require.Equal(t, 5, l.Groups[0].Messages[0].ReceiveCount, "the source queue's receives, from the worker's note")

	// Everything it read is visible again at once.
	again, err := b.in.List(ctx, b.q, 100)
	require.NoError(t, err)
	require.Equal(t, 4, again.Read)
}

func TestShowRedactsTokens(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.deadLetter(t, envelope(map[string]any{"TaskToken": "secret-token/+=", "other": "x"}), "bad")
	b.deadLetter(t, `{"detail":{"TaskToken":"truncated-secret`, "malformed event")
	msgs, err := b.in.Show(context.Background(), b.q, 10)
	require.NoError(t, err)
	require.Len(t, msgs, 2)
	for _, m := range msgs {
		require.NotContains(t, m.Body, "secret", m.Body)
	}
	require.Contains(t, msgs[0].Body, `"other":"x"`)
	require.NotEmpty(t, msgs[0].TokenHash)
	require.Equal(t, "work", msgs[0].DetailType)
}

func TestRedriveMovesOpenSkipsClosedAndFiltersByReason(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	open := envelope(map[string]any{"TaskToken": "open-1"})
	b.deadLetter(t, open, "job work failed: flag missing")
	b.deadLetter(t, envelope(map[string]any{"TaskToken": "closed-1"}), "job work failed: flag missing")
	b.deadLetter(t, envelope(map[string]any{"executionArn": "arn:x:ended"}), "job work failed: flag missing")
	b.deadLetter(t, envelope(map[string]any{"TaskToken": "broken-1"}), "job work failed: flag missing")
	b.deadLetter(t, "not JSON", "malformed event")

	dry, err := b.in.Redrive(ctx, b.q, RedriveOptions{Reason: "flag missing", DryRun: true})
	require.NoError(t, err)
	require.Equal(t, [3]int{1, 2, 1}, [3]int{dry.Moved, dry.Skipped, dry.Left})
	require.Empty(t, b.drain(t, b.q.URL), "a dry run moves nothing")

	var seen []Outcome
	sum, err := b.in.Redrive(ctx, b.q, RedriveOptions{Reason: "flag missing", Rate: 50, Progress: func(o Outcome) { seen = append(seen, o) }})
	require.NoError(t, err)
	require.Equal(t, [3]int{1, 2, 1}, [3]int{sum.Moved, sum.Skipped, sum.Left})
	require.Equal(t, sum.Messages, seen)
	for _, o := range sum.Messages {
		switch o.Action {
		case ActionSkipped:
			require.Contains(t, []string{"task closed (TaskTimedOut)", "execution FAILED"}, o.Why)
		case ActionLeft:
			require.Contains(t, o.Why, "AccessDeniedException")
		}
	}
	require.Equal(t, []string{open}, b.drain(t, b.q.URL), "the open task's message is back, body unchanged")
	l, err := b.in.List(ctx, b.q, 100)
	require.NoError(t, err)
	require.Equal(t, 4, l.Read, "skipped, left and unselected messages stay in the DLQ")
}

func TestRedriveNeverDeletesWhatItCouldNotSend(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.deadLetter(t, envelope(map[string]any{"TaskToken": "open-1"}), "boom")
	b.deadLetter(t, envelope(map[string]any{"TaskToken": "open-2"}), "boom")

	b.in.sqs = failingSQS{Client: b.sqs, sendErr: errors.New("queue gone")}
	sum, err := b.in.Redrive(ctx, b.q, RedriveOptions{})
	require.NoError(t, err)
	require.Equal(t, 2, sum.Left)
	require.Contains(t, sum.Messages[0].Why, "queue gone")

	// A failed delete leaves a duplicate, never a loss.
	b.in.sqs = failingSQS{Client: b.sqs, deleteErr: errors.New("delete refused")}
	sum, err = b.in.Redrive(ctx, b.q, RedriveOptions{})
	require.NoError(t, err)
	require.Equal(t, 2, sum.Moved)
	require.Contains(t, sum.Messages[0].Why, "still in the DLQ too")
	require.Len(t, b.drain(t, b.q.URL), 2)
	require.Len(t, b.drain(t, b.q.DLQURL), 2)
}

func TestRedriveSkipsWhatWasDeadLetteredAfterItBegan(t *testing.T) {
	t.Parallel()
	// The worker's copy (reason "boom"), and one SQS moved (no reason: its send,
	// perhaps by this very redrive, is after the redrive began).
	for _, reason := range []string{"boom", ""} {
		b := setup(t)
		b.deadLetter(t, envelope(map[string]any{"TaskToken": "open-1"}), reason)
		b.in.nowFunc = func() time.Time { return time.Now().Add(-time.Hour) }
		sum, err := b.in.Redrive(context.Background(), b.q, RedriveOptions{})
		require.NoError(t, err)
		require.Equal(t, Summary{Queue: "work", Skipped: 1, Messages: []Outcome{{
			MessageID: sum.Messages[0].MessageID, Reason: cmp.Or(reason, ReasonMaxReceives), Action: ActionSkipped,
			Why: "dead-lettered after this redrive began", TokenHash: sum.Messages[0].TokenHash,
		}}}, sum, reason)
		require.Empty(t, b.drain(t, b.q.URL))
		require.Len(t, b.drain(t, b.q.DLQURL), 1, "a skipped message stays in the DLQ")
	}
}

func TestPurge(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.deadLetter(t, "x", "boom")
	require.NoError(t, b.in.Purge(context.Background(), b.q))
	n, err := b.in.Depth(context.Background(), b.q.DLQURL)
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestRedact(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ body, token, secret string }{
		"member":         {`{"detail":{"TaskToken":"abc/+="}}`, "abc/+=", "abc/+="},
		"escaped value":  {`{"detail":{"TaskToken":"a\u0062c"}}`, "abc", "a\\u0062c"},
		"lower-case key": {`{"detail":{"taskToken":"s3cr3t"}}`, "", "s3cr3t"},
		"truncated":      {`{"detail":{"TaskToken":"s3cr3t`, "s3cr3t", "s3cr3t"},
		"escaped key":    {`{"detail":{"Task\u0054oken":"s3cr3t"}}`, "s3cr3t", "s3cr3t"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := Redact(tc.body, tc.token)
			require.NotContains(t, got, tc.secret)
		})
	}
}

// FuzzRedact: whatever the body, the token FindTaskToken reads in it is not in the
// redacted body.
func FuzzRedact(f *testing.F) {
	for _, s := range []string{`{"detail":{"TaskToken":"abc"}}`, `{"detail":{"TaskToken":"a\"b"}}`, `{"detail":{"Task\u0054oken":"xyz"}}`, `not json`, `{"detail":{"TaskToken":"tr`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		// The worker's reason quoting the body (a job's error that printed its input).
		reason := map[string]types.MessageAttributeValue{consumer.DeadLetterReasonAttr: {DataType: aws.String("String"), StringValue: aws.String("dead letter: " + body)}}
		m := parse("q", types.Message{Body: aws.String(body), MessageAttributes: reason})
		// (A token of a few characters may also be part of the redaction's own text.)
		if len(m.token) >= 8 && !strings.Contains(redacted(m.token), m.token) {
			if strings.Contains(m.Body, m.token) {
				t.Fatalf("token %q readable in %q", m.token, m.Body)
			}
			if strings.Contains(m.Reason, m.token) {
				t.Fatalf("token %q readable in the reason %q", m.token, m.Reason)
			}
		}
	})
}

// A worker's reason that quotes the task token (a job's error that printed its
// input) is shown redacted by list, show and redrive, in text and JSON alike: they
// all print Message.Reason or Outcome.Reason.
func TestReasonsAreRedacted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const tok = "closed-AQB4AAAAsecret-token/+=="
	b.deadLetter(t, envelope(map[string]any{"TaskToken": tok}), "dead letter: job work failed: call with "+tok+": refused")
	b.deadLetter(t, envelope(map[string]any{"TaskToken": tok}), "dead letter: reason cut at 1024 bytes: "+tok[:24])
	l, err := b.in.List(ctx, b.q, 10)
	require.NoError(t, err)
	msgs, err := b.in.Show(ctx, b.q, 10)
	require.NoError(t, err)
	sum, err := b.in.Redrive(ctx, b.q, RedriveOptions{})
	require.NoError(t, err)
	require.Equal(t, 2, sum.Skipped)
	for _, v := range []any{l, msgs, sum} {
		js, err := json.Marshal(v)
		require.NoError(t, err)
		require.NotContains(t, string(js), "secret-token", string(js))
		require.Contains(t, string(js), "redacted token")
	}
}

// A redrive keeps the AWSTraceHeader system attribute, like the message's own
// attributes; the time a worker's copy was dead-lettered is its send time, and a
// message SQS moved shows when it was first sent instead.
func TestRedriveKeepsTheTraceHeaderAndListShowsTimes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
	_, err := b.sqs.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl: aws.String(b.q.DLQURL), MessageBody: aws.String(envelope(map[string]any{"TaskToken": "open-1"})),
		MessageSystemAttributes: map[string]types.MessageSystemAttributeValue{
			"AWSTraceHeader": {DataType: aws.String("String"), StringValue: aws.String(trace)},
		},
	})
	require.NoError(t, err)
	b.deadLetter(t, envelope(map[string]any{"n": 1}), "boom")
	msgs, err := b.in.Show(ctx, b.q, 10)
	require.NoError(t, err)
	require.Len(t, msgs, 2)
	for _, m := range msgs {
		if m.Reason == "boom" {
			require.False(t, m.DeadSince.IsZero(), "the worker's copy was sent when it was dead-lettered")
			require.True(t, m.FirstSent.IsZero())
		} else {
			require.True(t, m.DeadSince.IsZero(), "SQS keeps no time of its move")
			require.False(t, m.FirstSent.IsZero())
		}
	}

	sum, err := b.in.Redrive(ctx, b.q, RedriveOptions{Reason: ReasonMaxReceives})
	require.NoError(t, err)
	require.Equal(t, 1, sum.Moved)
	out, err := b.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(b.q.URL), WaitTimeSeconds: 1,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAWSTraceHeader},
	})
	require.NoError(t, err)
	require.Len(t, out.Messages, 1)
	require.Equal(t, trace, out.Messages[0].Attributes["AWSTraceHeader"])
}
