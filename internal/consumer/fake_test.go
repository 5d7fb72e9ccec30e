package consumer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
)

// fakeSQS is an in-memory queue with visibility timeouts, enough of SQS for the
// consumer. Time is the caller's (tests run it under synctest).
type fakeSQS struct {
	mu         sync.Mutex
	visibility time.Duration
	msgs       map[string]*fakeMsg // by receipt
	order      []*fakeMsg
	seq        int
	deleted    []string // message bodies
	dlq        []types.MessageAttributeValue
	dlqBodies  []string
	dlqTraces  []string // the AWSTraceHeader system attribute of each DLQ copy
	calls      map[string]int
	maxAsked   []int32
	waits      []int32         // WaitTimeSeconds of each receive
	changes    []time.Duration // ChangeMessageVisibility values
	// batchChanges are ChangeMessageVisibilityBatch values, per entry.
	batchChanges []time.Duration

	// strandOnCancel makes a receive whose context is cancelled go on taking
	// messages until its wait ends, and lose them, as moto, LocalStack and SQS do.
	strandOnCancel bool
	// callDelay slows every delete and visibility change (a slow SQS), unless the
	// call's context ends first.
	callDelay time.Duration

	receiveErr    func() error // injected per call
	extendErr     error
	receiveNotify chan struct{}
}

type fakeMsg struct {
	id, body, receipt string
	traceHeader       string
	attrs             map[string]types.MessageAttributeValue
	visibleAt         time.Time
	receives          int
	deleted           bool
}

func newFakeSQS(visibility time.Duration) *fakeSQS {
	return &fakeSQS{visibility: visibility, msgs: map[string]*fakeMsg{}, calls: map[string]int{}, receiveNotify: make(chan struct{}, 1)}
}

func (f *fakeSQS) send(bodies ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range bodies {
		f.seq++
		m := &fakeMsg{id: fmt.Sprintf("m%d", f.seq), body: b}
		f.order = append(f.order, m)
	}
}

// sendTraced queues a message that arrived with an X-Ray trace header.
func (f *fakeSQS) sendTraced(body, traceHeader string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	f.order = append(f.order, &fakeMsg{id: fmt.Sprintf("m%d", f.seq), body: body, traceHeader: traceHeader})
}

func (f *fakeSQS) count(api string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[api]
}

func (f *fakeSQS) deletedBodies() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.deleted...)
}

func (f *fakeSQS) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	f.mu.Lock()
	f.calls["ReceiveMessage"]++
	f.maxAsked = append(f.maxAsked, in.MaxNumberOfMessages)
	f.waits = append(f.waits, in.WaitTimeSeconds)
	inject := f.receiveErr
	f.mu.Unlock()
	if inject != nil {
		if err := inject(); err != nil {
			return nil, err
		}
	}
	deadline := time.Now().Add(time.Duration(in.WaitTimeSeconds) * time.Second)
	for {
		if out := f.take(int(in.MaxNumberOfMessages)); len(out) > 0 {
			return &sqs.ReceiveMessageOutput{Messages: out}, nil
		}
		if !time.Now().Before(deadline) {
			return &sqs.ReceiveMessageOutput{}, nil
		}
		select {
		case <-ctx.Done():
			if f.strandOnCancel {
				return nil, f.strand(ctx, int(in.MaxNumberOfMessages), deadline)
			}
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// strand is the server side of a cancelled long poll: it takes what arrives until
// the wait ends, and nobody gets the messages.
func (f *fakeSQS) strand(ctx context.Context, max int, deadline time.Time) error {
	for time.Now().Before(deadline) {
		if len(f.take(max)) > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return ctx.Err()
}

// slow waits callDelay or until ctx ends.
func (f *fakeSQS) slow(ctx context.Context) error {
	f.mu.Lock()
	d := f.callDelay
	f.mu.Unlock()
	if d == 0 {
		return nil
	}
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// visible reports whether the message with body b can be received now.
func (f *fakeSQS) visible(b string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.order {
		if m.body == b {
			return !m.deleted && !time.Now().Before(m.visibleAt)
		}
	}
	return false
}

// held is how many messages are received and invisible now, not deleted.
func (f *fakeSQS) held() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, m := range f.order {
		if m.receives > 0 && !m.deleted && time.Now().Before(m.visibleAt) {
			n++
		}
	}
	return n
}

func (f *fakeSQS) take(max int) []types.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	var out []types.Message
	for _, m := range f.order {
		if len(out) == max {
			break
		}
		if m.deleted || now.Before(m.visibleAt) {
			continue
		}
		m.receives++
		f.seq++
		delete(f.msgs, m.receipt)
		m.receipt = "r" + strconv.Itoa(f.seq)
		f.msgs[m.receipt] = m
		m.visibleAt = now.Add(f.visibility)
		out = append(out, types.Message{
			MessageId: aws.String(m.id), Body: aws.String(m.body), ReceiptHandle: aws.String(m.receipt),
			Attributes:        map[string]string{"ApproximateReceiveCount": strconv.Itoa(m.receives), "SentTimestamp": "1700000000000"},
			MessageAttributes: m.attrs,
		})
		if m.traceHeader != "" {
			out[len(out)-1].Attributes["AWSTraceHeader"] = m.traceHeader
		}
	}
	return out
}

func (f *fakeSQS) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	if err := f.slow(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["DeleteMessageBatch"]++
	if len(in.Entries) > 10 {
		return nil, errors.New("too many entries")
	}
	out := &sqs.DeleteMessageBatchOutput{}
	for _, e := range in.Entries {
		m, ok := f.msgs[aws.ToString(e.ReceiptHandle)]
		if !ok {
			out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("ReceiptHandleIsInvalid"), SenderFault: true})
			continue
		}
		m.deleted = true
		f.deleted = append(f.deleted, m.body)
		out.Successful = append(out.Successful, types.DeleteMessageBatchResultEntry{Id: e.Id})
	}
	return out, nil
}

func (f *fakeSQS) ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	if err := f.slow(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["ChangeMessageVisibility"]++
	d := time.Duration(in.VisibilityTimeout) * time.Second
	f.changes = append(f.changes, d)
	if m, ok := f.msgs[aws.ToString(in.ReceiptHandle)]; ok {
		m.visibleAt = time.Now().Add(d)
	}
	return &sqs.ChangeMessageVisibilityOutput{}, nil
}

func (f *fakeSQS) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	if err := f.slow(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["ChangeMessageVisibilityBatch"]++
	if f.extendErr != nil {
		return nil, f.extendErr
	}
	out := &sqs.ChangeMessageVisibilityBatchOutput{}
	for _, e := range in.Entries {
		f.batchChanges = append(f.batchChanges, time.Duration(e.VisibilityTimeout)*time.Second)
		if m, ok := f.msgs[aws.ToString(e.ReceiptHandle)]; ok {
			m.visibleAt = time.Now().Add(time.Duration(e.VisibilityTimeout) * time.Second)
			out.Successful = append(out.Successful, types.ChangeMessageVisibilityBatchResultEntry{Id: e.Id})
		}
	}
	return out, nil
}

// queueURL is the queue the fake is: a send to it enqueues (a continuation); a
// send anywhere else is a DLQ copy.
const queueURL = "https://sqs.local/q"

func (f *fakeSQS) SendMessage(_ context.Context, in *sqs.SendMessageInput, _ ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["SendMessage"]++
	if aws.ToString(in.QueueUrl) == queueURL {
		if in.DelaySeconds > 900 {
			return nil, errors.New("InvalidParameterValue: DelaySeconds must be 0..900")
		}
		f.seq++
		m := &fakeMsg{id: fmt.Sprintf("m%d", f.seq), body: aws.ToString(in.MessageBody), attrs: in.MessageAttributes,
			visibleAt: time.Now().Add(time.Duration(in.DelaySeconds) * time.Second)}
		f.order = append(f.order, m)
		return &sqs.SendMessageOutput{MessageId: aws.String(m.id)}, nil
	}
	for name, v := range in.MessageSystemAttributes {
		if name != "AWSTraceHeader" || aws.ToString(v.DataType) != "String" {
			return nil, &smithy.GenericAPIError{Code: "InvalidParameterValue", Message: "only AWSTraceHeader, of type String, is a system attribute of a send"}
		}
	}
	f.dlqTraces = append(f.dlqTraces, aws.ToString(in.MessageSystemAttributes["AWSTraceHeader"].StringValue))
	f.dlqBodies = append(f.dlqBodies, aws.ToString(in.MessageBody))
	f.dlq = append(f.dlq, in.MessageAttributes["taskbridge-error"])
	return &sqs.SendMessageOutput{}, nil
}
