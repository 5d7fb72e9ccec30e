package dlq

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awstest"
)

// recordingEvents is the emulator's EventBridge, noting every entry put; refuse
// answers each entry as EventBridge does when it takes none (FailedEntryCount).
type recordingEvents struct {
	*eventbridge.Client
	entries []ebtypes.PutEventsRequestEntry
	refuse  bool
}

func (r *recordingEvents) PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, o ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	r.entries = append(r.entries, in.Entries...)
	if r.refuse {
		out := &eventbridge.PutEventsOutput{FailedEntryCount: int32(len(in.Entries))}
		for range in.Entries {
			out.Entries = append(out.Entries, ebtypes.PutEventsResultEntry{ErrorCode: aws.String("InternalFailure"), ErrorMessage: aws.String("try again")})
		}
		return out, nil
	}
	return r.Client.PutEvents(ctx, in, o...)
}

type eventsBundle struct {
	bundle
	eb       *recordingEvents
	events   Queue  // the events DLQ (the bundle's DLQ)
	ruleARN  string // routes detail-type "work" from the bus to the bundle's queue
	queueARN string
}

// setupEvents is setup plus a bus whose rule feeds the bundle's queue; the bundle's
// DLQ plays the stack's events DLQ.
func setupEvents(t *testing.T) eventsBundle {
	t.Helper()
	b := setup(t)
	cfg := awstest.Config(t)
	ctx := context.Background()
	eb := &recordingEvents{Client: eventbridge.NewFromConfig(cfg)}
	bus := awstest.Stack(t)
	_, err := eb.CreateEventBus(ctx, &eventbridge.CreateEventBusInput{Name: aws.String(bus)})
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = eb.DeleteEventBus(context.Background(), &eventbridge.DeleteEventBusInput{Name: aws.String(bus)})
	})
	rule, err := eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String(bus + "-work"), EventBusName: aws.String(bus), EventPattern: aws.String(`{"detail-type":["work"]}`)})
	require.NoError(t, err)
	attrs, err := b.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(b.q.URL), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn}})
	require.NoError(t, err)
	queueARN := attrs.Attributes[string(types.QueueAttributeNameQueueArn)]
	_, err = eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String(bus + "-work"), EventBusName: aws.String(bus), Targets: []ebtypes.Target{{Id: aws.String("q"), Arn: aws.String(queueARN)}}})
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = eb.RemoveTargets(context.Background(), &eventbridge.RemoveTargetsInput{Rule: aws.String(bus + "-work"), EventBusName: aws.String(bus), Ids: []string{"q"}})
		_, _ = eb.DeleteRule(context.Background(), &eventbridge.DeleteRuleInput{Name: aws.String(bus + "-work"), EventBusName: aws.String(bus)})
	})
	b.in.WithEvents(eb, b.sqs)
	return eventsBundle{bundle: b, eb: eb, events: Queue{Name: "eventbridge", DLQURL: b.q.DLQURL, Events: true}, ruleARN: aws.ToString(rule.RuleArn), queueARN: queueARN}
}

// undeliverable puts body into the events DLQ as EventBridge does with an event it
// could not deliver to the rule's target.
func (e eventsBundle) undeliverable(t *testing.T, body, traceHeader string) {
	t.Helper()
	str := func(v string) types.MessageAttributeValue {
		return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
	}
	in := &sqs.SendMessageInput{QueueUrl: aws.String(e.events.DLQURL), MessageBody: aws.String(body), MessageAttributes: map[string]types.MessageAttributeValue{
		attrEBErrorCode:    str("NO_PERMISSIONS"),
		attrEBErrorMessage: str("User: arn:aws:sts::123456789012:assumed-role/events is not authorized to perform: sqs:SendMessage"),
		attrEBRuleARN:      str(e.ruleARN),
		attrEBTargetARN:    str(e.queueARN),
		attrEBRetries:      str("185"),
	}}
	if traceHeader != "" {
		in.MessageSystemAttributes = map[string]types.MessageSystemAttributeValue{
			"AWSTraceHeader": {DataType: aws.String("String"), StringValue: aws.String(traceHeader)},
		}
	}
	_, err := e.sqs.SendMessage(context.Background(), in)
	require.NoError(t, err)
}

// An event EventBridge could not deliver is listed with its error code and rule,
// and a redrive puts it back on its bus (with its own trace header), from where the
// rule delivers it to its queue; it is deleted from the events DLQ only then.
func TestEventsDLQListedAndPutBackOnItsBus(t *testing.T) {
	t.Parallel()
	e := setupEvents(t)
	ctx := context.Background()
	const trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
	body := envelope(map[string]any{"TaskToken": "open-1", "executionArn": "arn:x:1", "n": 1})
	e.undeliverable(t, body, trace)

	l, err := e.in.List(ctx, e.events, 10)
	require.NoError(t, err)
	require.Len(t, l.Groups, 1)
	g := l.Groups[0]
	_, rule := ruleBusAndName(e.ruleARN)
	require.Equal(t, "NO_PERMISSIONS (rule "+rule+")", g.Reason)
	m := g.Messages[0]
	require.Equal(t, rule, m.Rule)
	require.Equal(t, e.queueARN, m.TargetARN)
	require.Contains(t, m.ErrorMessage, "not authorized")
	require.Equal(t, 185, m.ReceiveCount, "EventBridge's retry attempts")
	require.Equal(t, "arn:x:1", m.ExecutionARN)

	sum, err := e.in.Redrive(ctx, e.events, RedriveOptions{Rate: 10})
	require.NoError(t, err)
	require.Equal(t, 1, sum.Moved, "%+v", sum)
	require.Len(t, e.eb.entries, 1)
	entry := e.eb.entries[0]
	bus, _ := ruleBusAndName(e.ruleARN)
	require.Equal(t, bus, aws.ToString(entry.EventBusName))
	require.Equal(t, "work", aws.ToString(entry.DetailType))
	require.Equal(t, trace, aws.ToString(entry.TraceHeader), "the event's own trace header")
	got := e.drain(t, e.q.URL)
	require.Len(t, got, 1, "the rule delivered it to its queue")
	var ev struct {
		Detail map[string]any `json:"detail"`
	}
	require.NoError(t, json.Unmarshal([]byte(got[0]), &ev))
	require.Equal(t, map[string]any{"TaskToken": "open-1", "executionArn": "arn:x:1", "n": float64(1)}, ev.Detail)
	require.Empty(t, e.drain(t, e.events.DLQURL), "deleted once accepted")
}

// PutEvents that takes nothing (a failed entry) leaves the event in the DLQ; a
// closed task's event is skipped; an aws.* event (S3's, which no one may put) goes
// straight to its target queue.
func TestEventsDLQRedriveKeepsWhatWasNotAccepted(t *testing.T) {
	t.Parallel()
	e := setupEvents(t)
	ctx := context.Background()
	e.undeliverable(t, envelope(map[string]any{"TaskToken": "open-1"}), "")
	e.eb.refuse = true
	sum, err := e.in.Redrive(ctx, e.events, RedriveOptions{Rate: 10})
	require.NoError(t, err)
	require.Equal(t, 1, sum.Left, "%+v", sum)
	require.Contains(t, sum.Messages[0].Why, "InternalFailure")
	require.Equal(t, 1, func() int { d, err := e.in.Depth(ctx, e.events.DLQURL); require.NoError(t, err); return d }())
	require.Len(t, e.drain(t, e.events.DLQURL), 1)

	e.eb.refuse = false
	e.undeliverable(t, envelope(map[string]any{"TaskToken": "closed-1"}), "")
	s3, _ := json.Marshal(map[string]any{"version": "0", "id": "2", "detail-type": "Object Created", "source": "aws.s3", "account": "1",
		"time": "2026-01-02T03:04:05Z", "region": "us-east-1", "resources": []string{"arn:aws:s3:::b"}, "detail": map[string]any{"bucket": map[string]any{"name": "b"}}})
	e.undeliverable(t, string(s3), "")
	sum, err = e.in.Redrive(ctx, e.events, RedriveOptions{Rate: 10})
	require.NoError(t, err)
	require.Equal(t, 1, sum.Skipped, "%+v", sum)
	require.Equal(t, 1, sum.Moved, "%+v", sum)
	require.Empty(t, e.eb.entries[1:], "the aws.s3 event is not put on a bus")
	got := e.drain(t, e.q.URL)
	require.Equal(t, []string{string(s3)}, got, "the S3 event went to its target queue as it was")
	require.Len(t, e.drain(t, e.events.DLQURL), 1, "the closed task's event stays")
}

// With ToTarget an event goes into the queue of the rule that could not deliver
// it, not onto the bus (whose other rules got it already).
func TestEventsDLQRedriveToTheRulesQueue(t *testing.T) {
	t.Parallel()
	e := setupEvents(t)
	body := envelope(map[string]any{"TaskToken": "open-1"})
	e.undeliverable(t, body, "")
	q := e.events
	q.ToTarget = true
	sum, err := e.in.Redrive(context.Background(), q, RedriveOptions{Rate: 10})
	require.NoError(t, err)
	require.Equal(t, 1, sum.Moved, "%+v", sum)
	require.Empty(t, e.eb.entries, "nothing put on the bus")
	require.Equal(t, []string{body}, e.drain(t, e.q.URL), "the event as EventBridge would have sent it")
	require.Empty(t, e.drain(t, e.events.DLQURL))
}

func TestRuleBusAndName(t *testing.T) {
	t.Parallel()
	for arn, want := range map[string][2]string{
		"arn:aws:events:eu-west-1:1:rule/stack/stack-work": {"stack", "stack-work"},
		"arn:aws:events:eu-west-1:1:rule/stack-landing":    {"default", "stack-landing"},
		"arn:aws:sqs:eu-west-1:1:q":                        {"", ""},
		"":                                                 {"", ""},
	} {
		bus, name := ruleBusAndName(arn)
		require.Equal(t, want, [2]string{bus, name}, arn)
	}
}

// EventBridge's attributes come from outside: any RULE_ARN, retry count or error
// parses without a panic, and a rule name never holds the bus.
func FuzzParseEventBridge(f *testing.F) {
	f.Add("NO_PERMISSIONS", "arn:aws:events:eu-west-1:1:rule/stack/stack-work", "185", "arn:aws:sqs:eu-west-1:1:q")
	f.Add("THROTTLING", "arn:aws:events:eu-west-1:1:rule/stack-landing", "x", "")
	f.Add("", "rule/", "-1", "arn:aws:sqs")
	f.Fuzz(func(t *testing.T, code, ruleARN, retries, target string) {
		str := func(v string) types.MessageAttributeValue {
			return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
		}
		m := parse("eventbridge", types.Message{Body: aws.String(`{}`), MessageAttributes: map[string]types.MessageAttributeValue{
			attrEBErrorCode: str(code), attrEBRuleARN: str(ruleARN), attrEBRetries: str(retries), attrEBTargetARN: str(target),
		}})
		if code == "" {
			require.Equal(t, ReasonMaxReceives, m.Reason, "not EventBridge's")
			return
		}
		require.Contains(t, m.Reason, code)
		if bus, name := ruleBusAndName(ruleARN); name != "" {
			require.NotEmpty(t, bus)
			require.Equal(t, ruleARN, strings.TrimSuffix(ruleARN, name)+name)
		}
	})
}
