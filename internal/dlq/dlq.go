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

	"github.com/taskbridge/taskbridge/internal/consumer"
	"github.com/taskbridge/taskbridge/internal/event"
	"github.com/taskbridge/taskbridge/internal/telemetry"
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
	// nowFunc and sleepFunc are the clock: time.Now and consumer.Sleep, the
	// redrive's pacing; the package's tests replace them.
	nowFunc   func() time.Time
	sleepFunc func(ctx context.Context, d time.Duration) bool

	events eventsAPI      // WithEvents: the events DLQ's redrive
	lookup queueLookupAPI // WithEvents
}

// New returns an Inspector over the two clients.
func New(sqsClient sqsAPI, sfnClient sfnAPI) *Inspector {
	return &Inspector{sqs: sqsClient, sfn: sfnClient, nowFunc: time.Now, sleepFunc: consumer.Sleep}
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
	r := reading{q: q, seen: map[string]bool{}}
	defer func() {
		// Detached: a cancelled command must still give back what it hid.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if rerr := in.release(rctx, q.DLQURL, r.held); rerr != nil && err == nil {
			err = rerr
		}
	}()
	stale := 0
	for limit <= 0 || len(r.seen) < limit {
		if beforeReceive != nil {
			if err := beforeReceive(); err != nil {
				return err
			}
		}
		n := batch
		if limit > 0 {
			n = min(batch, limit-len(r.seen))
		}
		msgs, err := in.receive(ctx, q, n, visibility)
		if err != nil {
			return err
		}
		fresh, err := r.visitNew(msgs, visit)
		switch {
		case err != nil:
			return err
		case len(msgs) == 0:
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

// reading is what one read has seen and holds hidden, owned by its goroutine.
type reading struct {
	q    Queue
	seen map[string]bool // message IDs
	held []string        // receipt handles to release
}

// visitNew calls visit on each message not seen before, and holds every receipt
// visit does not keep; fresh counts the new ones.
func (r *reading) visitNew(msgs []types.Message, visit func(Message) (keep bool, err error)) (fresh int, err error) {
	for _, raw := range msgs {
		id := aws.ToString(raw.MessageId)
		if r.seen[id] {
			// Its visibility ran out during a long read: hold the newest receipt.
			r.held = append(r.held, aws.ToString(raw.ReceiptHandle))
			continue
		}
		r.seen[id] = true
		fresh++
		m := parse(r.q.Name, raw)
		keep, err := visit(m)
		if !keep {
			r.held = append(r.held, m.receipt)
		}
		if err != nil {
			return fresh, err
		}
	}
	return fresh, nil
}

// receive asks q's DLQ for up to n messages with every attribute, hiding them for
// visibility.
func (in *Inspector) receive(ctx context.Context, q Queue, n int, visibility time.Duration) ([]types.Message, error) {
	out, err := in.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(q.DLQURL), MaxNumberOfMessages: int32(n),
		VisibilityTimeout:           int32(visibility / time.Second),
		WaitTimeSeconds:             1, // a short poll samples only some servers and can answer empty
		MessageAttributeNames:       []string{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
	})
	if err != nil {
		return nil, fmt.Errorf("receive from the DLQ of %s: %w", q.Name, err)
	}
	return out.Messages, nil
}

// staleReceives is how many receives in a row may bring only messages already seen
// before a read ends: with one message a call, unseen ones still come up among them.
const staleReceives = 10

// release makes the messages of receipts visible now, ten at a time. Receipts that
// are no longer valid (deleted, or received again by someone) are not an error:
// those messages are visible or owned already.
func (in *Inspector) release(ctx context.Context, url string, receipts []string) error {
	var errs []error
	consumer.ChangeVisibility(ctx, in.sqs, url, receipts, 0, func(b consumer.VisibilityBatch) {
		if b.Err != nil {
			errs = append(errs, fmt.Errorf("make %d read messages visible again (they come back within %s): %w", len(b.Receipts), ReadVisibility, b.Err))
			return
		}
		for _, f := range b.Failed {
			if code := aws.ToString(f.Code); code != "ReceiptHandleIsInvalid" && code != "InvalidParameterValue" && !strings.Contains(code, "MessageNotInflight") {
				errs = append(errs, fmt.Errorf("make a read message visible again: %s: %s", code, aws.ToString(f.Message)))
			}
		}
	})
	return errors.Join(errs...)
}

// Depth is the DLQ's approximate number of visible messages.
func (in *Inspector) Depth(ctx context.Context, url string) (int, error) {
	a, err := in.Attributes(ctx, url)
	return a.Visible, err
}

// Attributes are the approximate counts SQS keeps of a queue, and its size.
type Attributes struct {
	Visible  int `json:"visible"`
	InFlight int `json:"inFlight"`
	Delayed  int `json:"delayed"`
	// MaxMessageBytes is the queue's MaximumMessageSize, read in the same call.
	MaxMessageBytes int64 `json:"maxMessageBytes"`
}

// Attributes reads a queue's approximate counts and its size.
func (in *Inspector) Attributes(ctx context.Context, url string) (Attributes, error) {
	n, err := telemetry.QueueCounts(ctx, in.sqs, url,
		types.QueueAttributeNameApproximateNumberOfMessages,
		types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		types.QueueAttributeNameApproximateNumberOfMessagesDelayed,
		types.QueueAttributeNameMaximumMessageSize)
	if err != nil {
		return Attributes{}, err
	}
	return Attributes{Visible: int(n[0]), InFlight: int(n[1]), Delayed: int(n[2]), MaxMessageBytes: n[3]}, nil
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
	if v := raw.MessageAttributes[consumer.DeadLetterReasonAttr].StringValue; v != nil {
		// The worker's copy: sent when it was dead-lettered. Its reason is a job's
		// error text, which may quote the token (older workers did not redact it).
		m.Reason, m.DeadSince = RedactText(*v, m.token), sent
	} else {
		m.FirstSent = sent
	}
	m.ReceiveCount, _ = strconv.Atoi(raw.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
	if v := raw.MessageAttributes[consumer.DeadLetterReceiveCountAttr].StringValue; v != nil {
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

// pace waits until interval after last (not at all when last is zero); ctx's error
// if it ends first.
func (in *Inspector) pace(ctx context.Context, last time.Time, interval time.Duration) error {
	if last.IsZero() || in.sleepFunc(ctx, interval-in.nowFunc().Sub(last)) {
		return nil
	}
	return ctx.Err()
}
