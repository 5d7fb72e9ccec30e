// Package bootstrap creates, on whatever endpoint the AWS config points to (moto
// server, LocalStack, a sandbox account), everything the flows need, from the same
// topology and ASL files the worker and terraform read: the bus, queues with DLQs and
// redrive, rules and targets, the buckets (EventBridge notifications on the landing
// bucket), the state machines and the Glue job. Every step is idempotent: running it
// twice creates nothing twice and is not an error. It also resolves an existing stack
// for a worker that starts against it.
package bootstrap

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/glue"
	gluetypes "github.com/aws/aws-sdk-go-v2/service/glue/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/taskbridge/taskbridge/internal/awslimit"
	"github.com/taskbridge/taskbridge/internal/topology"
)

// Output is what `worker bootstrap --output json` prints (the contract's keys).
type Output struct {
	EventBus      string            `json:"eventBus"`
	DataBucket    string            `json:"dataBucket"`
	LandingBucket string            `json:"landingBucket"`
	GlueJob       string            `json:"glueJob"`
	StateMachines map[string]string `json:"stateMachines"` // logical name → ARN
	Queues        map[string]string `json:"queues"`        // logical name → URL
	DLQs          map[string]string `json:"dlqs"`          // logical name → URL
	// EventsDLQ is the URL of the dead-letter queue of every rule target (what
	// EventBridge could not deliver); empty when the topology turns it off, or the
	// stack was bootstrapped before it existed.
	EventsDLQ string `json:"eventsDlq,omitempty"`
	// GlueWarning says why the Glue job is missing, when Stack.GlueOptional let
	// bootstrap go on without it.
	GlueWarning string `json:"glueWarning,omitempty"`
}

// Stack names the resources of one stack. Buckets and the bus may be overridden (in
// AWS, bucket names are global); empty fields follow topology.Names.
type Stack struct {
	Names         topology.Names
	EventBus      string
	DataBucket    string
	LandingBucket string
	GlueJob       string
	// GlueOptional turns a failed Glue job creation into a warning (GlueWarning in
	// the output): LocalStack's community image has no Glue, and the callback flows
	// do not need it.
	GlueOptional bool
}

func (s Stack) withDefaults() Stack {
	s.EventBus = cmp.Or(s.EventBus, s.Names.EventBus())
	s.DataBucket = cmp.Or(s.DataBucket, s.Names.DataBucket())
	s.LandingBucket = cmp.Or(s.LandingBucket, s.Names.LandingBucket())
	s.GlueJob = cmp.Or(s.GlueJob, s.Names.GlueJob())
	return s
}

// Clients are the AWS clients bootstrap uses.
type Clients struct {
	SQS         *sqs.Client
	EventBridge *eventbridge.Client
	S3          *s3.Client
	SFN         *sfn.Client
	Glue        *glue.Client
	STS         *sts.Client
}

// Bootstrapper creates or resolves one stack.
type Bootstrapper struct {
	topo    *topology.Topology
	stack   Stack
	c       Clients
	region  string
	account string // filled lazily from STS
}

// New returns a Bootstrapper for stack, in region.
func New(topo *topology.Topology, stack Stack, c Clients, region string) *Bootstrapper {
	return &Bootstrapper{topo: topo, stack: stack.withDefaults(), c: c, region: region}
}

// Apply creates whatever is missing and returns the stack's resources.
func (b *Bootstrapper) Apply(ctx context.Context) (Output, error) {
	out := b.baseOutput()
	if err := b.createBus(ctx); err != nil {
		return Output{}, err
	}
	if err := b.createBuckets(ctx); err != nil {
		return Output{}, err
	}
	if err := b.createQueues(ctx, &out); err != nil {
		return Output{}, err
	}
	for _, sm := range b.topo.StateMachines {
		arn, err := b.putStateMachine(ctx, sm)
		if err != nil {
			return Output{}, err
		}
		out.StateMachines[sm.Name] = arn
	}
	if !b.batches() {
		return out, nil
	}
	if err := b.createGlueJob(ctx); err != nil {
		if !b.stack.GlueOptional {
			return Output{}, err
		}
		out.GlueWarning = err.Error()
	}
	return out, nil
}

func (b *Bootstrapper) createBus(ctx context.Context) error {
	_, err := b.c.EventBridge.CreateEventBus(ctx, &eventbridge.CreateEventBusInput{Name: aws.String(b.stack.EventBus)})
	if err != nil && !isCode(err, "ResourceAlreadyExistsException") {
		return fmt.Errorf("create event bus %s: %w", b.stack.EventBus, err)
	}
	return nil
}

// createBuckets creates the data bucket and, for a topology that batches, the
// landing bucket with its EventBridge notifications on.
func (b *Bootstrapper) createBuckets(ctx context.Context) error {
	if err := b.createBucket(ctx, b.stack.DataBucket); err != nil {
		return err
	}
	if !b.batches() {
		return nil
	}
	if err := b.createBucket(ctx, b.stack.LandingBucket); err != nil {
		return err
	}
	if _, err := b.c.S3.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{
		Bucket:                    aws.String(b.stack.LandingBucket),
		NotificationConfiguration: &s3types.NotificationConfiguration{EventBridgeConfiguration: &s3types.EventBridgeConfiguration{}},
	}); err != nil {
		return fmt.Errorf("turn on eventbridge notifications of %s: %w", b.stack.LandingBucket, err)
	}
	return nil
}

// createQueues creates each queue of the topology with its DLQ and redrive, and the
// rule that feeds it; their URLs go into out.
func (b *Bootstrapper) createQueues(ctx context.Context, out *Output) error {
	steps, err := b.topo.Steps(b.vars())
	if err != nil {
		return err
	}
	var events eventsDLQ
	if b.topo.DeadLetters() {
		if events, err = b.createEventsDLQ(ctx); err != nil {
			return err
		}
	}
	var ruleARNs []string
	for _, q := range b.topo.Queues {
		dlqURL, err := b.createQueue(ctx, b.stack.Names.DLQ(q.Name), map[string]string{
			"MessageRetentionPeriod": strconv.Itoa(14 * 24 * 3600),
		})
		if err != nil {
			return err
		}
		dlqARN, err := b.queueARN(ctx, dlqURL)
		if err != nil {
			return err
		}
		redrive, _ := json.Marshal(map[string]string{"deadLetterTargetArn": dlqARN, "maxReceiveCount": strconv.Itoa(q.MaxReceiveCount)})
		url, err := b.createQueue(ctx, b.stack.Names.Queue(q.Name), map[string]string{
			"VisibilityTimeout": strconv.Itoa(q.VisibilityTimeoutSeconds),
			"RedrivePolicy":     string(redrive),
		})
		if err != nil {
			return err
		}
		ruleARN, err := b.route(ctx, q, b.topo.Sources(q, steps), url, events.arn)
		if err != nil {
			return err
		}
		ruleARNs = append(ruleARNs, ruleARN)
		out.Queues[q.Name], out.DLQs[q.Name] = url, dlqURL
	}
	if events.url != "" {
		if err := b.allowRules(ctx, events, ruleARNs); err != nil {
			return err
		}
		out.EventsDLQ = events.url
	}
	return nil
}

// Resolve finds an existing stack's queues and state machines without creating
// anything: what a worker does at start.
func (b *Bootstrapper) Resolve(ctx context.Context) (Output, error) {
	out := b.baseOutput()
	for _, q := range b.topo.Queues {
		for name, into := range map[string]map[string]string{b.stack.Names.Queue(q.Name): out.Queues, b.stack.Names.DLQ(q.Name): out.DLQs} {
			got, err := b.c.SQS.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
			if err != nil {
				return Output{}, resolveError(name, err)
			}
			into[q.Name] = aws.ToString(got.QueueUrl)
		}
	}
	var err error
	if out.EventsDLQ, err = b.ResolveEventsDLQ(ctx); err != nil {
		return Output{}, err
	}
	for _, sm := range b.topo.StateMachines {
		arn, err := b.StateMachineARN(ctx, sm.Name)
		if err != nil {
			return Output{}, err
		}
		out.StateMachines[sm.Name] = arn
	}
	return out, nil
}

// ResolveEventsDLQ finds the URL of the stack's events DLQ alone, "" when there is
// none: optional, as a stack bootstrapped before the events DLQ existed still runs.
// Apart from Resolve, so the DLQ can be read while a rule's queue is missing (one
// of the reasons events land in it).
func (b *Bootstrapper) ResolveEventsDLQ(ctx context.Context) (string, error) {
	if !b.topo.DeadLetters() {
		return "", nil
	}
	got, err := b.c.SQS.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(b.stack.Names.EventsDLQ())})
	switch {
	case err == nil:
		return aws.ToString(got.QueueUrl), nil
	case isCode(err, "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
		return "", nil
	default:
		return "", fmt.Errorf("find queue %s: %w", b.stack.Names.EventsDLQ(), err)
	}
}

// resolveError tells apart why a queue of the stack was not found: no such queue
// (the stack is not bootstrapped on this endpoint), no answer at all (a wrong or
// stopped endpoint), or another refusal.
func resolveError(queue string, err error) error {
	var api smithy.APIError
	switch {
	case isCode(err, "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
		return fmt.Errorf("no queue %s on this endpoint (run `worker bootstrap` first?): %w", queue, err)
	case !errors.As(err, &api):
		return fmt.Errorf("find queue %s: cannot reach the endpoint (check AWS_ENDPOINT_URL and AWS_REGION, and that the service runs): %w", queue, err)
	default:
		return fmt.Errorf("find queue %s: %w", queue, err)
	}
}

// batches reports whether the topology has an s3Batch queue: only then does the stack
// need the landing bucket and the Glue job.
func (b *Bootstrapper) batches() bool {
	for _, q := range b.topo.Queues {
		if q.S3Batch != nil {
			return true
		}
	}
	return false
}

func (b *Bootstrapper) vars() map[string]string {
	vars := b.stack.Names.DefinitionVars(topology.Partition(b.region))
	vars["event_bus_name"] = b.stack.EventBus
	return vars
}

func (b *Bootstrapper) baseOutput() Output {
	return Output{
		EventBus: b.stack.EventBus, DataBucket: b.stack.DataBucket, LandingBucket: b.stack.LandingBucket, GlueJob: b.stack.GlueJob,
		StateMachines: map[string]string{}, Queues: map[string]string{}, DLQs: map[string]string{},
	}
}

func (b *Bootstrapper) createBucket(ctx context.Context, bucket string) error {
	in := &s3.CreateBucketInput{Bucket: aws.String(bucket)}
	if b.region != "" && b.region != "us-east-1" { // us-east-1 rejects an explicit constraint
		in.CreateBucketConfiguration = &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(b.region)}
	}
	_, err := b.c.S3.CreateBucket(ctx, in)
	if err != nil && !isCode(err, "BucketAlreadyOwnedByYou", "BucketAlreadyExists") {
		return fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	return nil
}

// createQueue creates a queue or, when it exists, brings its attributes up to date
// (CreateQueue refuses different attributes for an existing queue).
//
// Every queue takes SQS's largest message (awslimit.SQSMessageBytes): an event may be
// up to 1 MB since 2026-01-29, and a DLQ must take whatever its queue took.
func (b *Bootstrapper) createQueue(ctx context.Context, name string, attrs map[string]string) (string, error) {
	attrs = maps.Clone(attrs)
	attrs["MaximumMessageSize"] = strconv.Itoa(awslimit.SQSMessageBytes)
	out, err := b.c.SQS.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err == nil {
		return aws.ToString(out.QueueUrl), nil
	}
	if !isCode(err, "QueueAlreadyExists", "QueueNameExists") {
		return "", fmt.Errorf("create queue %s: %w", name, err)
	}
	got, err := b.c.SQS.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		return "", fmt.Errorf("find queue %s: %w", name, err)
	}
	url := aws.ToString(got.QueueUrl)
	if _, err := b.c.SQS.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(url), Attributes: attrs}); err != nil {
		return "", fmt.Errorf("update queue %s: %w", name, err)
	}
	return url, nil
}

func (b *Bootstrapper) queueARN(ctx context.Context, url string) (string, error) {
	out, err := b.c.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return "", fmt.Errorf("read arn of %s: %w", url, err)
	}
	return out.Attributes[string(sqstypes.QueueAttributeNameQueueArn)], nil
}

// route puts the rule and target that feed queue q, and the queue policy that lets
// only that rule send to it, and returns the rule's ARN. The target carries the
// topology's retry policy and, when dlqARN is set, the events DLQ. An unchanged rule
// or target is left alone: re-putting rules while events flow disturbs PutEvents on
// some emulators.
func (b *Bootstrapper) route(ctx context.Context, q topology.Queue, sources []string, url, dlqARN string) (string, error) {
	queueARN, err := b.queueARN(ctx, url)
	if err != nil {
		return "", err
	}
	// A producer on the bus is not trusted: a rule takes only the sources the
	// topology allows (nil: any, for a finisher).
	bus, pattern := b.stack.EventBus, map[string]any{"detail-type": q.DetailTypes}
	if sources != nil {
		pattern["source"] = sources
	}
	if q.S3Batch != nil { // S3 sends its events to the default bus
		bus = "default"
		pattern = map[string]any{
			"source":      []string{"aws.s3"},
			"detail-type": []string{"Object Created"},
			"detail":      map[string]any{"bucket": map[string]any{"name": []string{b.stack.LandingBucket}}},
		}
	}
	patternJSON, _ := json.Marshal(pattern)
	ruleName := b.stack.Names.Rule(q.Name)
	ruleARN := ""
	existing, err := b.c.EventBridge.DescribeRule(ctx, &eventbridge.DescribeRuleInput{Name: aws.String(ruleName), EventBusName: aws.String(bus)})
	if err == nil && samePattern(aws.ToString(existing.EventPattern), patternJSON) {
		ruleARN = aws.ToString(existing.Arn)
	} else {
		put, err := b.c.EventBridge.PutRule(ctx, &eventbridge.PutRuleInput{
			Name: aws.String(ruleName), EventBusName: aws.String(bus), EventPattern: aws.String(string(patternJSON)),
			State: ebtypes.RuleStateEnabled, Description: aws.String("taskbridge: routes to queue " + q.Name),
		})
		if err != nil {
			return "", fmt.Errorf("put rule %s: %w", ruleName, err)
		}
		ruleARN = aws.ToString(put.RuleArn)
	}
	want := b.target(q, queueARN, dlqARN)
	targets, err := b.c.EventBridge.ListTargetsByRule(ctx, &eventbridge.ListTargetsByRuleInput{Rule: aws.String(ruleName), EventBusName: aws.String(bus)})
	if err != nil || !slices.ContainsFunc(targets.Targets, func(t ebtypes.Target) bool { return SameTarget(t, want) }) {
		put, err := b.c.EventBridge.PutTargets(ctx, &eventbridge.PutTargetsInput{
			Rule: aws.String(ruleName), EventBusName: aws.String(bus), Targets: []ebtypes.Target{want},
		})
		if err != nil {
			return "", fmt.Errorf("put target of rule %s: %w", ruleName, err)
		}
		if put.FailedEntryCount > 0 {
			return "", fmt.Errorf("put target of rule %s: %d failed entries", ruleName, put.FailedEntryCount)
		}
	}
	policy, _ := json.Marshal(map[string]any{
		"Version": "2012-10-17",
		"Statement": []map[string]any{{
			"Sid": "AllowRule", "Effect": "Allow", "Principal": map[string]string{"Service": "events.amazonaws.com"},
			"Action": "sqs:SendMessage", "Resource": queueARN,
			"Condition": map[string]any{"ArnEquals": map[string]string{"aws:SourceArn": ruleARN}},
		}},
	})
	if _, err := b.c.SQS.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(url), Attributes: map[string]string{"Policy": string(policy)}}); err != nil {
		return "", fmt.Errorf("set policy of queue %s: %w", q.Name, err)
	}
	return ruleARN, nil
}

// samePattern reports whether two JSON documents are equal, whatever their layout
// and key order.
func samePattern(have string, want []byte) bool {
	var a, b any
	if json.Unmarshal([]byte(have), &a) != nil || json.Unmarshal(want, &b) != nil {
		return false
	}
	ja, _ := json.Marshal(a) // maps marshal with sorted keys: a canonical form
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// putStateMachine creates a state machine, or brings an existing one's definition
// up to date. It looks first instead of relying on CreateStateMachine's
// StateMachineAlreadyExists: moto answers a create of an existing name with the
// existing machine, its old definition kept.
func (b *Bootstrapper) putStateMachine(ctx context.Context, sm topology.StateMachine) (string, error) {
	def, err := b.topo.Definition(sm, b.vars())
	if err != nil {
		return "", err
	}
	name := b.stack.Names.StateMachine(sm.Name)
	arn, err := b.StateMachineARN(ctx, sm.Name)
	if err != nil {
		return "", err
	}
	have, err := b.c.SFN.DescribeStateMachine(ctx, &sfn.DescribeStateMachineInput{StateMachineArn: aws.String(arn)})
	switch {
	case err == nil:
		return arn, b.updateStateMachine(ctx, name, arn, aws.ToString(have.Definition), def)
	case !isCode(err, "StateMachineDoesNotExist"):
		return "", fmt.Errorf("describe state machine %s: %w", name, err)
	}
	role, err := b.roleARN(ctx, b.stack.Names.Stack+"-states")
	if err != nil {
		return "", err
	}
	out, err := b.c.SFN.CreateStateMachine(ctx, &sfn.CreateStateMachineInput{Name: aws.String(name), Definition: aws.String(string(def)), RoleArn: aws.String(role)})
	if err == nil {
		return aws.ToString(out.StateMachineArn), nil
	}
	if !isCode(err, "StateMachineAlreadyExists") { // another bootstrap created it meanwhile
		return "", fmt.Errorf("create state machine %s: %w", name, err)
	}
	return arn, b.updateStateMachine(ctx, name, arn, "", def)
}

// updateStateMachine puts def as the definition of arn unless have is the same
// document: an unchanged machine is left alone (no new revision).
func (b *Bootstrapper) updateStateMachine(ctx context.Context, name, arn, have string, def []byte) error {
	if samePattern(have, def) {
		return nil
	}
	if _, err := b.c.SFN.UpdateStateMachine(ctx, &sfn.UpdateStateMachineInput{StateMachineArn: aws.String(arn), Definition: aws.String(string(def))}); err != nil {
		return fmt.Errorf("update state machine %s: %w", name, err)
	}
	return nil
}

func (b *Bootstrapper) createGlueJob(ctx context.Context) error {
	role, err := b.roleARN(ctx, b.stack.Names.Stack+"-glue")
	if err != nil {
		return err
	}
	_, err = b.c.Glue.CreateJob(ctx, &glue.CreateJobInput{
		Name: aws.String(b.stack.GlueJob), Role: aws.String(role),
		Command: &gluetypes.JobCommand{
			Name: aws.String("glueetl"), PythonVersion: aws.String("3"),
			ScriptLocation: aws.String("s3://" + b.stack.DataBucket + "/glue/etl.py"),
		},
		GlueVersion:       aws.String("4.0"),
		ExecutionProperty: &gluetypes.ExecutionProperty{MaxConcurrentRuns: 3},
	})
	if err != nil && !isCode(err, "AlreadyExistsException", "IdempotentParameterMismatchException") {
		return fmt.Errorf("create glue job %s: %w", b.stack.GlueJob, err)
	}
	return nil
}

// roleARN names a role in the caller's account. Emulators accept any role; in AWS
// the roles come from terraform, and bootstrap is for local stacks.
func (b *Bootstrapper) roleARN(ctx context.Context, name string) (string, error) {
	if _, err := b.accountID(ctx); err != nil {
		return "", err
	}
	return "arn:" + topology.Partition(b.region) + ":iam::" + b.account + ":role/" + name, nil
}

func (b *Bootstrapper) accountID(ctx context.Context) (string, error) {
	if b.account == "" {
		id, err := b.c.STS.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			return "", fmt.Errorf("find account id: %w", err)
		}
		b.account = aws.ToString(id.Account)
	}
	return b.account, nil
}

func isCode(err error, codes ...string) bool {
	var api smithy.APIError
	return errors.As(err, &api) && slices.Contains(codes, api.ErrorCode())
}

// QueueNames lists the logical queue names of an Output, sorted.
func (o Output) QueueNames() []string { return slices.Sorted(maps.Keys(o.Queues)) }

// StateMachineARN is the ARN of a logical state machine of the stack, built from
// the partition, region, account and name: no List* permission needed.
func (b *Bootstrapper) StateMachineARN(ctx context.Context, logical string) (string, error) {
	account, err := b.accountID(ctx)
	if err != nil {
		return "", err
	}
	return topology.StateMachineARN(topology.Partition(b.region), b.region, account, b.stack.Names.StateMachine(logical)), nil
}
