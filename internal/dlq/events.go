package dlq

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// The message attributes EventBridge sets on an event it could not deliver to a
// target and sent to the target's dead-letter queue instead (the body is the event).
const (
	attrEBErrorCode    = "ERROR_CODE"
	attrEBErrorMessage = "ERROR_MESSAGE"
	attrEBRuleARN      = "RULE_ARN"
	attrEBTargetARN    = "TARGET_ARN"
	attrEBRetries      = "RETRY_ATTEMPTS"
)

// eventsAPI is what a redrive of the events DLQ calls on EventBridge; *eventbridge.Client
// satisfies it.
type eventsAPI interface {
	PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, opts ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

// queueLookupAPI finds a target queue's URL from its ARN; *sqs.Client satisfies it.
type queueLookupAPI interface {
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, opts ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
}

// WithEvents lets the Inspector redrive the stack's events DLQ (a Queue with Events
// set): events go back on their bus with eb, or to their target queue, found with
// lookup. It returns in.
func (in *Inspector) WithEvents(eb eventsAPI, lookup queueLookupAPI) *Inspector {
	in.events, in.lookup = eb, lookup
	return in
}

// parseEventBridge reads EventBridge's attributes of a dead letter of a rule target:
// the reason is its error code and rule, the receive count its retry attempts.
func parseEventBridge(m *Message, raw types.Message) {
	str := func(name string) string { return aws.ToString(raw.MessageAttributes[name].StringValue) }
	code := str(attrEBErrorCode)
	if code == "" {
		return
	}
	m.RuleARN, m.TargetARN, m.ErrorMessage = str(attrEBRuleARN), str(attrEBTargetARN), str(attrEBErrorMessage)
	_, m.Rule = ruleBusAndName(m.RuleARN)
	m.Reason = code
	if m.Rule != "" {
		m.Reason += " (rule " + m.Rule + ")"
	}
	if n, err := strconv.Atoi(str(attrEBRetries)); err == nil {
		m.ReceiveCount = n
	}
	m.traceHeader = raw.Attributes[string(types.MessageSystemAttributeNameAWSTraceHeader)]
}

// ruleBusAndName reads arn:<partition>:events:<region>:<account>:rule/[<bus>/]<name>;
// a rule of the default bus has no bus part.
func ruleBusAndName(arn string) (bus, name string) {
	_, res, ok := strings.Cut(arn, ":rule/")
	if !ok || res == "" {
		return "", ""
	}
	if b, n, ok := strings.Cut(res, "/"); ok {
		if b == "" || n == "" {
			return "", "" // not a rule's ARN
		}
		return b, n
	}
	return "default", res
}

// putBack redrives one dead letter of the events DLQ: onto the bus of the rule that
// could not deliver it (PutEvents, with the event's own trace header, so that every
// rule of the bus sees it again), or straight into the target queue, the body as
// EventBridge would have sent it, when q.ToTarget asks (the other rules' queues got
// it already) or the event has an AWS source (S3's Object Created: no one may put an
// aws.* source). It is deleted from the DLQ only once EventBridge or SQS accepted it.
func (in *Inspector) putBack(ctx context.Context, q Queue, m Message) (action, why string, keep bool) {
	var ev struct {
		Source     string          `json:"source"`
		DetailType string          `json:"detail-type"`
		Detail     json.RawMessage `json:"detail"`
		Resources  []string        `json:"resources"`
		Time       time.Time       `json:"time"`
	}
	if err := json.Unmarshal([]byte(m.rawBody), &ev); err != nil || ev.Source == "" || ev.DetailType == "" || len(ev.Detail) == 0 {
		return ActionLeft, "not an EventBridge event: it cannot be put back", false
	}
	bus, _ := ruleBusAndName(m.RuleARN)
	var to string
	switch {
	case in.events == nil || in.lookup == nil:
		return ActionLeft, "no EventBridge client to put it back with", false
	case q.ToTarget || strings.HasPrefix(ev.Source, "aws."):
		url, err := in.targetQueueURL(ctx, m.TargetARN)
		if err != nil {
			return ActionLeft, err.Error(), false
		}
		if _, err := in.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(m.rawBody)}); err != nil {
			return ActionLeft, fmt.Sprintf("send to its target queue: %v", err), false
		}
		to = "its target queue " + url
	case bus == "":
		return ActionLeft, fmt.Sprintf("RULE_ARN %q names no rule: its bus is unknown", m.RuleARN), false
	default:
		entry := ebtypes.PutEventsRequestEntry{
			EventBusName: aws.String(bus), Source: aws.String(ev.Source), DetailType: aws.String(ev.DetailType),
			Detail: aws.String(string(ev.Detail)), Resources: ev.Resources,
		}
		if !ev.Time.IsZero() {
			entry.Time = aws.Time(ev.Time)
		}
		if m.traceHeader != "" {
			entry.TraceHeader = aws.String(m.traceHeader) // the event's own trace continues
		}
		out, err := in.events.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{entry}})
		if err != nil {
			// A lost answer may hide an accepted event: left in the DLQ, it is put
			// again by the next redrive, a duplicate the jobs tolerate.
			return ActionLeft, fmt.Sprintf("put on bus %s: %v", bus, err), false
		}
		if out.FailedEntryCount > 0 || len(out.Entries) != 1 || aws.ToString(out.Entries[0].EventId) == "" {
			code, msg := "", ""
			if len(out.Entries) == 1 {
				code, msg = aws.ToString(out.Entries[0].ErrorCode), aws.ToString(out.Entries[0].ErrorMessage)
			}
			return ActionLeft, fmt.Sprintf("put on bus %s: refused: %s %s", bus, code, msg), false
		}
		to = "bus " + bus
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := in.sqs.DeleteMessage(dctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q.DLQURL), ReceiptHandle: aws.String(m.receipt)}); err != nil {
		return ActionMoved, fmt.Sprintf("on %s again, but still in the DLQ too (delete: %v)", to, err), false
	}
	return ActionMoved, "", true
}

// targetQueueURL finds the URL of the queue arn:<partition>:sqs:<region>:<account>:<name>.
func (in *Inspector) targetQueueURL(ctx context.Context, arn string) (string, error) {
	parts := strings.Split(arn, ":")
	if len(parts) != 6 || parts[2] != "sqs" {
		return "", fmt.Errorf("TARGET_ARN %q is not a queue: its event cannot go back", arn)
	}
	out, err := in.lookup.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(parts[5]), QueueOwnerAWSAccountId: aws.String(parts[4])})
	if err != nil {
		return "", fmt.Errorf("find its target queue %s: %w", parts[5], err)
	}
	return aws.ToString(out.QueueUrl), nil
}
