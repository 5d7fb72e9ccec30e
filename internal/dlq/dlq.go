// Package dlq lets an operator inspect, redrive and purge the dead-letter queues of a
// topology. Reading a queue in SQS means receiving its messages: every read here
// hides what it reads for a short while (ReadVisibility) and makes it visible again
// as soon as it is done, so a read never takes a message away from anyone for long,
// and a crashed read gives everything back when the visibility ends.
//
// A message reaches a DLQ in one of two ways: the worker copies it there itself
// (consumer.Poller.deadLetter) with a taskbridge-error attribute saying why, or SQS
// moves it after maxReceiveCount receives (the redrive policy), with no reason of its
// own. Redrive moves messages back to their source queue one at a time, each deleted
// from the DLQ only after SendMessage to the queue succeeded: a crash mid-way
// duplicates a message (delivery is at-least-once anyway), it never loses one.
// RedriveExecutions redrives instead the executions a worker failed (Step Functions
// RedriveExecution), for the dead letters whose task the worker itself closed.
package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/taskbridge/taskbridge/internal/event"
	"github.com/taskbridge/taskbridge/internal/telemetry"
)

// The message attributes consumer.Poller.deadLetter sets on its DLQ copies.
const (
	attrError        = "taskbridge-error"
	attrSourceQueue  = "taskbridge-source-queue"
	attrReceiveCount = "taskbridge-receive-count"
)

// ReasonMaxReceives is the reason of a message SQS's redrive policy moved: it has no
// taskbridge-error attribute, because no worker decided it; it was received
// maxReceiveCount times without being deleted (a job that kept failing or timing
// out, a worker that crashed on it, a callback that could not be reported).
const ReasonMaxReceives = "maxReceiveCount exceeded"

// ReadVisibility is how long a read hides the messages it received (they are made
// visible again as soon as the read ends). Long enough to read a few thousand
// messages without seeing one twice, short enough that a crashed read gives
// everything back quickly.
const ReadVisibility = 30 * time.Second

// sqsAPI is what the inspector calls on SQS; *sqs.Client satisfies it. Calls come
// from one goroutine.
type sqsAPI interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, opts ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
	PurgeQueue(ctx context.Context, in *sqs.PurgeQueueInput, opts ...func(*sqs.Options)) (*sqs.PurgeQueueOutput, error)
}

// Queue is one topology queue and its DLQ.
type Queue struct {
	Name   string // logical name in the topology
	URL    string
	DLQURL string
	// Events marks the stack's events DLQ (URL empty): the events EventBridge could
	// not deliver to a rule target. A redrive puts them back on their bus (events.go),
	// or, with ToTarget, into the queue of the rule that could not deliver them.
	Events   bool
	ToTarget bool
}

// Message is one dead letter as an operator sees it. Body has every task token
// replaced by its hash.
type Message struct {
	ID     string `json:"messageId"`
	Queue  string `json:"queue"`
	Reason string `json:"reason"`
	// ReceiveCount is how often the source queue delivered it before it was
	// dead-lettered (the worker's copy says so); for a message SQS moved it is SQS's
	// ApproximateReceiveCount, which also counts the reads of this tool.
	ReceiveCount int `json:"receiveCount"`
	// DeadSince is when the message was moved to the DLQ: the send time of the
	// worker's copy. SQS keeps no such time for a message its redrive policy moved
	// (the moved message keeps its first SentTimestamp): zero then.
	DeadSince time.Time `json:"deadSince,omitzero"`
	// FirstSent is when the message was first sent to its source queue, for a
	// message SQS moved; zero for the worker's copy (the event's time says it).
	FirstSent    time.Time `json:"firstSent,omitzero"`
	EventTime    time.Time `json:"eventTime,omitzero"`   // the EventBridge event's time, when the body has one
	DetailType   string    `json:"detailType,omitempty"` // the event's detail-type, when the body has one
	ExecutionARN string    `json:"executionArn,omitempty"`
	TokenHash    string    `json:"tokenHash,omitempty"` // telemetry.TokenHash of the task token
	Body         string    `json:"body,omitempty"`
	// Rule, RuleARN, TargetARN and ErrorMessage are EventBridge's, for an event it
	// could not deliver (the events DLQ).
	Rule         string `json:"rule,omitempty"`
	RuleARN      string `json:"ruleArn,omitempty"`
	TargetARN    string `json:"targetArn,omitempty"`
	ErrorMessage string `json:"errorMessage,omitempty"`

	token       string // the task token, for the redrive's check; never printed
	traceHeader string // the AWSTraceHeader system attribute; kept by a redrive
	rawBody     string
	attrs       map[string]types.MessageAttributeValue
	receipt     string
}

// deadOrSent is the message's time in the DLQ listing order: when it was moved, or,
// when SQS moved it, no later than that: when it was first sent.
func (m Message) deadOrSent() time.Time {
	if m.DeadSince.IsZero() {
		return m.FirstSent
	}
	return m.DeadSince
}

// Group is the dead letters of one queue with one reason, oldest first.
type Group struct {
	Reason   string    `json:"reason"`
	Count    int       `json:"count"`
	Oldest   time.Time `json:"oldest"`
	Newest   time.Time `json:"newest"`
	Messages []Message `json:"messages"`
}

// Listing is what `dlq list` shows of one queue.
type Listing struct {
	Queue string `json:"queue"`
	DLQ   string `json:"dlqUrl"`
	// Depth is SQS's ApproximateNumberOfMessages of the DLQ before the read.
	Depth int `json:"depth"`
	// Read is how many messages the read saw; less than Depth when it stopped at its
	// limit, or when some were in flight (being read by someone else).
	Read   int     `json:"read"`
	Groups []Group `json:"groups"`
}

// Inspector reads and moves the messages of a topology's DLQs.
type Inspector struct {
	sqs sqsAPI
	sfn sfnAPI
	// NowFunc is the clock (tests set it).
	NowFunc func() time.Time
	// SleepFunc waits d or until ctx ends; the redrive's pacing (tests set it).
	SleepFunc func(ctx context.Context, d time.Duration) error

	events eventsAPI      // WithEvents: the events DLQ's redrive
	lookup queueLookupAPI // WithEvents
}

// New returns an Inspector over the two clients.
func New(sqsClient sqsAPI, sfnClient sfnAPI) *Inspector {
	return &Inspector{sqs: sqsClient, sfn: sfnClient, NowFunc: time.Now, SleepFunc: sleep}
}

// List reads up to limit messages of q's DLQ and groups them by reason, groups with
// the oldest message first, each group's messages oldest first. Bodies are left out.
func (in *Inspector) List(ctx context.Context, q Queue, limit int) (Listing, error) {
	depth, err := in.Depth(ctx, q.DLQURL)
	if err != nil {
		return Listing{}, err
	}
	msgs, err := in.Show(ctx, q, limit)
	if err != nil {
		return Listing{}, err
	}
	l := Listing{Queue: q.Name, DLQ: q.DLQURL, Depth: depth, Read: len(msgs), Groups: []Group{}}
	byReason := map[string]int{}
	for _, m := range msgs {
		m.Body = ""
		i, ok := byReason[m.Reason]
		if !ok {
			i = len(l.Groups)
			byReason[m.Reason] = i
			l.Groups = append(l.Groups, Group{Reason: m.Reason, Oldest: m.deadOrSent()})
		}
		g := &l.Groups[i]
		g.Count++
		g.Newest = m.deadOrSent()
		g.Messages = append(g.Messages, m)
	}
	return l, nil
}

// Show reads up to limit messages of q's DLQ, oldest first, with their bodies
// (tokens redacted). Every message read is visible again when it returns.
func (in *Inspector) Show(ctx context.Context, q Queue, limit int) ([]Message, error) {
	var msgs []Message
	err := in.read(ctx, q, limit, 10, ReadVisibility, func(m Message) (keep bool, err error) {
		msgs = append(msgs, m)
		return false, nil
	})
	slices.SortStableFunc(msgs, func(a, b Message) int { return a.deadOrSent().Compare(b.deadOrSent()) })
	return msgs, err
}

// read receives up to limit distinct messages of q's DLQ, batch (1..10) a call,
// hiding each for visibility, and calls visit on each new one in arrival order. A
// message visit keeps is not released (it was deleted); every other one is made
// visible again before read returns, whatever happened. It stops at limit, when a
// receive brings nothing, after staleReceives receives in a row brought only
// messages it had seen (their visibility ran out during a long read), or at the
// first error of visit or of SQS.
func (in *Inspector) read(ctx context.Context, q Queue, limit, batch int, visibility time.Duration, visit func(Message) (keep bool, err error)) (err error) {
	return in.readPaced(ctx, q, limit, batch, visibility, nil, visit)
}

// readPaced is read with beforeReceive (when not nil) called before each receive: a
// paced reader waits there, not while it holds messages hidden.
func (in *Inspector) readPaced(ctx context.Context, q Queue, limit, batch int, visibility time.Duration, beforeReceive func() error, visit func(Message) (keep bool, err error)) (err error) {
	seen := map[string]bool{}
	var held []string // receipt handles to release
	defer func() {
		// Detached: a cancelled command must still give back what it hid.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if rerr := in.release(rctx, q.DLQURL, held); rerr != nil && err == nil {
			err = rerr
		}
	}()
	stale := 0
	for limit <= 0 || len(seen) < limit {
		n := int32(batch)
		if limit > 0 {
			n = int32(min(batch, limit-len(seen)))
		}
		if beforeReceive != nil {
			if err := beforeReceive(); err != nil {
				return err
			}
		}
		out, err := in.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(q.DLQURL), MaxNumberOfMessages: n,
			VisibilityTimeout:           int32(visibility / time.Second),
			WaitTimeSeconds:             1, // a short poll samples only some servers and can answer empty
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		})
		if err != nil {
			return fmt.Errorf("receive from the DLQ of %s: %w", q.Name, err)
		}
		fresh := 0
		for _, raw := range out.Messages {
			id := aws.ToString(raw.MessageId)
			if seen[id] {
				// Its visibility ran out during a long read: hold the newest receipt.
				held = append(held, aws.ToString(raw.ReceiptHandle))
				continue
			}
			seen[id] = true
			fresh++
			m := parse(q.Name, raw)
			keep, err := visit(m)
			if !keep {
				held = append(held, m.receipt)
			}
			if err != nil {
				return err
			}
		}
		switch {
		case len(out.Messages) == 0:
			return nil
		case fresh == 0:
			stale++
			if stale >= staleReceives {
				return nil
			}
		default:
			stale = 0
		}
	}
	return nil
}

// staleReceives is how many receives in a row may bring only messages already seen
// before a read ends: with one message a call, unseen ones still come up among them.
const staleReceives = 10

// release makes the messages of receipts visible now, ten at a time. Receipts that
// are no longer valid (deleted, or received again by someone) are not an error:
// those messages are visible or owned already.
func (in *Inspector) release(ctx context.Context, url string, receipts []string) error {
	var errs []error
	for start := 0; start < len(receipts); start += 10 {
		batch := receipts[start:min(start+10, len(receipts))]
		entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(batch))
		for i, r := range batch {
			entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(r)}
		}
		out, err := in.sqs.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(url), Entries: entries})
		if err != nil {
			errs = append(errs, fmt.Errorf("make %d read messages visible again (they come back within %s): %w", len(batch), ReadVisibility, err))
			continue
		}
		for _, f := range out.Failed {
			if code := aws.ToString(f.Code); code != "ReceiptHandleIsInvalid" && code != "InvalidParameterValue" && !strings.Contains(code, "MessageNotInflight") {
				errs = append(errs, fmt.Errorf("make a read message visible again: %s: %s", code, aws.ToString(f.Message)))
			}
		}
	}
	return errors.Join(errs...)
}

// Depth is the DLQ's approximate number of visible messages.
func (in *Inspector) Depth(ctx context.Context, url string) (int, error) {
	a, err := in.Attributes(ctx, url)
	return a.Visible, err
}

// Attributes are the approximate counts SQS keeps of a queue.
type Attributes struct {
	Visible  int `json:"visible"`
	InFlight int `json:"inFlight"`
	Delayed  int `json:"delayed"`
}

// Attributes reads a queue's approximate counts.
func (in *Inspector) Attributes(ctx context.Context, url string) (Attributes, error) {
	names := []types.QueueAttributeName{
		types.QueueAttributeNameApproximateNumberOfMessages,
		types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		types.QueueAttributeNameApproximateNumberOfMessagesDelayed,
	}
	out, err := in.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: names})
	if err != nil {
		return Attributes{}, fmt.Errorf("get attributes of %s: %w", url, err)
	}
	var a Attributes
	for i, into := range []*int{&a.Visible, &a.InFlight, &a.Delayed} {
		v, ok := out.Attributes[string(names[i])]
		if !ok {
			return Attributes{}, fmt.Errorf("get attributes of %s: answer has no %s", url, names[i])
		}
		if *into, err = strconv.Atoi(v); err != nil || *into < 0 {
			return Attributes{}, fmt.Errorf("get attributes of %s: %s is %q, not a count", url, names[i], v)
		}
	}
	return a, nil
}

// Purge deletes every message of q's DLQ (SQS PurgeQueue: it takes up to a minute,
// and SQS accepts one purge per queue per minute).
func (in *Inspector) Purge(ctx context.Context, q Queue) error {
	if _, err := in.sqs.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: aws.String(q.DLQURL)}); err != nil {
		return fmt.Errorf("purge the DLQ of %s: %w", q.Name, err)
	}
	return nil
}

// parse reads what an operator needs from a received DLQ message.
func parse(queue string, raw types.Message) Message {
	body := aws.ToString(raw.Body)
	m := Message{
		ID: aws.ToString(raw.MessageId), Queue: queue, Reason: ReasonMaxReceives,
		rawBody: body, attrs: raw.MessageAttributes, receipt: aws.ToString(raw.ReceiptHandle),
	}
	m.token = event.FindTaskToken([]byte(body))
	m.TokenHash = telemetry.TokenHash(m.token)
	m.traceHeader = raw.Attributes[string(types.MessageSystemAttributeNameAWSTraceHeader)]
	sent := time.Time{}
	if ms, err := strconv.ParseInt(raw.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
		sent = time.UnixMilli(ms).UTC()
	}
	if v := raw.MessageAttributes[attrError].StringValue; v != nil {
		// The worker's copy: sent when it was dead-lettered. Its reason is a job's
		// error text, which may quote the token (older workers did not redact it).
		m.Reason, m.DeadSince = RedactText(*v, m.token), sent
	} else {
		m.FirstSent = sent
	}
	m.ReceiveCount, _ = strconv.Atoi(raw.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
	if v := raw.MessageAttributes[attrReceiveCount].StringValue; v != nil {
		if n, err := strconv.Atoi(*v); err == nil {
			m.ReceiveCount = n
		}
	}
	if env, err := event.Parse([]byte(body)); err == nil {
		m.DetailType, m.EventTime = env.DetailType, env.Time
		var d struct {
			ExecutionARN string `json:"executionArn"`
		}
		if json.Unmarshal(env.Detail, &d) == nil {
			m.ExecutionARN = d.ExecutionARN
		}
	}
	m.Body = Redact(body, m.token)
	parseEventBridge(&m, raw)
	return m
}

// tokenMember is a "TaskToken" (or "taskToken") member with a string value, escapes
// included, or with a string cut off by the end of a truncated body.
var tokenMember = regexp.MustCompile(`("[Tt]ask[Tt]oken"\s*:\s*)"(?:[^"\\]|\\.)*(?:"|\\?$)`)

// Redact replaces every task token in body (token, the one FindTaskToken reads, and
// any "TaskToken" member) with its hash. A body in which a token would still be
// readable afterwards (escaped names) is withheld whole: a token is a credential.
func Redact(body, token string) string {
	out := tokenMember.ReplaceAllStringFunc(body, func(member string) string {
		sub := tokenMember.FindStringSubmatch(member)
		v := member[len(sub[1]):]
		_ = json.Unmarshal([]byte(v), &v) // a truncated value is hashed as it is
		return sub[1] + `"` + redacted(v) + `"`
	})
	out = RedactText(out, token)
	if t := event.FindTaskToken([]byte(out)); t != "" && !strings.HasPrefix(t, "<redacted") {
		return "<body withheld: it holds a task token that could not be redacted>"
	}
	return out
}

// RedactText replaces token in a text (an error's reason) with its hash: see
// telemetry.RedactToken.
func RedactText(text, token string) string { return telemetry.RedactToken(text, token) }

func redacted(token string) string { return telemetry.RedactedToken(token) }

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
