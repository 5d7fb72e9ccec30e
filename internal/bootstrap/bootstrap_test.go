package bootstrap_test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/glue"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awslimit"
	"github.com/taskbridge/taskbridge/internal/awstest"
	"github.com/taskbridge/taskbridge/internal/bootstrap"
	"github.com/taskbridge/taskbridge/internal/topology"
)

func TestMain(m *testing.M) { awstest.Main(m) }

func clients(cfg aws.Config) bootstrap.Clients {
	return bootstrap.Clients{
		SQS: sqs.NewFromConfig(cfg), EventBridge: eventbridge.NewFromConfig(cfg),
		S3:  s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }),
		SFN: sfn.NewFromConfig(cfg), Glue: glue.NewFromConfig(cfg), STS: sts.NewFromConfig(cfg),
	}
}

func TestApplyIsIdempotentAndResolvable(t *testing.T) {
	cfg := awstest.Config(t)
	topo, err := topology.Load("")
	require.NoError(t, err)
	stack := awstest.Stack(t)
	b := bootstrap.New(topo, bootstrap.Stack{Names: topology.Names{Stack: stack}}, clients(cfg), awstest.Region)
	ctx := context.Background()

	first, err := b.Apply(ctx)
	require.NoError(t, err)
	second, err := b.Apply(ctx)
	require.NoError(t, err, "a second bootstrap is not an error")
	if diff := cmp.Diff(first, second); diff != "" {
		t.Fatalf("second apply differs (-first +second):\n%s", diff)
	}

	require.Equal(t, stack, first.EventBus)
	require.Equal(t, stack+"-data", first.DataBucket)
	require.Equal(t, stack+"-landing", first.LandingBucket)
	require.Equal(t, stack+"-etl", first.GlueJob)
	require.Contains(t, first.StateMachines, "cookies")
	require.Len(t, first.Queues, len(topo.Queues))
	require.Len(t, first.DLQs, len(topo.Queues))

	resolved, err := b.Resolve(ctx)
	require.NoError(t, err)
	if diff := cmp.Diff(first, resolved); diff != "" {
		t.Fatalf("resolve differs from apply (-apply +resolve):\n%s", diff)
	}

	// The redrive policy carries the topology's maxReceiveCount.
	c := clients(cfg)
	attrs, err := c.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(first.Queues["processSingle"]), AttributeNames: []sqstypes.QueueAttributeName{"RedrivePolicy", "VisibilityTimeout"}})
	require.NoError(t, err)
	require.Contains(t, attrs.Attributes["RedrivePolicy"], stack+"-processSingle-dlq")
	q, _ := topo.Queue("processSingle")
	require.Contains(t, attrs.Attributes["RedrivePolicy"], `"maxReceiveCount"`)
	require.Equal(t, strconv.Itoa(q.VisibilityTimeoutSeconds), attrs.Attributes["VisibilityTimeout"])
}

func TestResolveOfMissingStackSaysWhatToDo(t *testing.T) {
	cfg := awstest.Config(t)
	topo, err := topology.Load("")
	require.NoError(t, err)
	b := bootstrap.New(topo, bootstrap.Stack{Names: topology.Names{Stack: awstest.Stack(t)}}, clients(cfg), awstest.Region)
	_, err = b.Resolve(context.Background())
	require.ErrorContains(t, err, "worker bootstrap")
}

// A producer on the bus is not trusted: each rule takes only the sources the
// topology allows (its state machines' and the worker's own), except the finisher's.
func TestRulesMatchTheTopologysSources(t *testing.T) {
	cfg := awstest.Config(t)
	topo, err := topology.Load("")
	require.NoError(t, err)
	stack := awstest.Stack(t)
	b := bootstrap.New(topo, bootstrap.Stack{Names: topology.Names{Stack: stack}}, clients(cfg), awstest.Region)
	ctx := context.Background()
	_, err = b.Apply(ctx)
	require.NoError(t, err)
	eb := eventbridge.NewFromConfig(cfg)
	rule, err := eb.DescribeRule(ctx, &eventbridge.DescribeRuleInput{Name: aws.String(stack + "-processSingle"), EventBusName: aws.String(stack)})
	require.NoError(t, err)
	require.JSONEq(t, `{"detail-type":["processSingle"],"source":["taskbridge.stepfunctions","taskbridge.worker"]}`, aws.ToString(rule.EventPattern))
	finisher, err := eb.DescribeRule(ctx, &eventbridge.DescribeRuleInput{Name: aws.String(stack + "-finisher"), EventBusName: aws.String(stack)})
	require.NoError(t, err)
	require.JSONEq(t, `{"detail-type":["taskFinished"]}`, aws.ToString(finisher.EventPattern), "any producer may finish a task")
}

// A bootstrap after an ASL file changed puts the new definition (moto's
// CreateStateMachine answers an existing name with the old machine, so bootstrap
// must look and update); a topology without s3Batch gets no landing bucket and no
// Glue job.
func TestApplyUpdatesAnEditedDefinitionAndMakesNoBatchParts(t *testing.T) {
	cfg := awstest.Config(t)
	dir := t.TempDir()
	asl := filepath.Join(dir, "greeter.asl.json")
	machine := func(greeting string) string {
		return `{"StartAt":"Greet","States":{"Greet":{"Type":"Task","Resource":"arn:${partition}:states:::events:putEvents.waitForTaskToken","HeartbeatSeconds":60,
			"Parameters":{"Entries":[{"EventBusName":"${event_bus_name}","Source":"greeter","DetailType":"greet","Detail":{"TaskToken.$":"$$.Task.Token","greeting":"` + greeting + `"}}]},"End":true}}}`
	}
	require.NoError(t, os.WriteFile(asl, []byte(machine("hello")), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "topology.json"), []byte(`{"source":"greeter","queues":[{"name":"greet","job":"greet","detailTypes":["greet"]}],
		"stateMachines":[{"name":"greeter","definition":"greeter.asl.json"}]}`), 0o644))
	topo, err := topology.Load(filepath.Join(dir, "topology.json"))
	require.NoError(t, err)
	stack := awstest.Stack(t)
	c := clients(cfg)
	ctx := context.Background()
	out, err := bootstrap.New(topo, bootstrap.Stack{Names: topology.Names{Stack: stack}}, c, awstest.Region).Apply(ctx)
	require.NoError(t, err)

	require.NoError(t, os.WriteFile(asl, []byte(machine("bonjour")), 0o644))
	again, err := bootstrap.New(topo, bootstrap.Stack{Names: topology.Names{Stack: stack}}, c, awstest.Region).Apply(ctx)
	require.NoError(t, err)
	require.Equal(t, out.StateMachines, again.StateMachines)
	got, err := c.SFN.DescribeStateMachine(ctx, &sfn.DescribeStateMachineInput{StateMachineArn: aws.String(out.StateMachines["greeter"])})
	require.NoError(t, err)
	require.Contains(t, aws.ToString(got.Definition), "bonjour", "the edited definition is the machine's")

	_, err = c.S3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(out.LandingBucket)})
	require.Error(t, err, "no landing bucket without an s3Batch queue")
	_, err = c.Glue.GetJob(ctx, &glue.GetJobInput{JobName: aws.String(out.GlueJob)})
	require.Error(t, err, "no Glue job without an s3Batch queue")
	_, err = c.S3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(out.DataBucket)})
	require.NoError(t, err, "the data bucket is made")
}

// Every rule target carries the topology's retry policy and the stack's events DLQ
// (read back with ListTargetsByRule), whose policy lets EventBridge send from the
// stack's rules; a changed retry policy is put again; deadLetter false takes the DLQ
// off the targets.
func TestTargetsCarryRetryPolicyAndEventsDLQ(t *testing.T) {
	cfg := awstest.Config(t)
	ctx := context.Background()
	stack := awstest.Stack(t)
	c := clients(cfg)
	dir := t.TempDir()
	write := func(delivery string) *topology.Topology {
		t.Helper()
		path := filepath.Join(dir, "topology.json")
		require.NoError(t, os.WriteFile(path, []byte(`{"source":"s","queues":[
			{"name":"a","job":"a","detailTypes":["a"]},{"name":"b","job":"b","detailTypes":["b"]}]`+delivery+`}`), 0o644))
		topo, err := topology.Load(path)
		require.NoError(t, err)
		return topo
	}
	apply := func(topo *topology.Topology) bootstrap.Output {
		t.Helper()
		out, err := bootstrap.New(topo, bootstrap.Stack{Names: topology.Names{Stack: stack}}, c, awstest.Region).Apply(ctx)
		require.NoError(t, err)
		return out
	}
	targetOf := func(queue string) ebtypes.Target {
		t.Helper()
		got, err := c.EventBridge.ListTargetsByRule(ctx, &eventbridge.ListTargetsByRuleInput{Rule: aws.String(stack + "-" + queue), EventBusName: aws.String(stack)})
		require.NoError(t, err)
		require.Len(t, got.Targets, 1)
		return got.Targets[0]
	}

	out := apply(write(""))
	require.NotEmpty(t, out.EventsDLQ)
	attrs, err := c.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(out.EventsDLQ), AttributeNames: []sqstypes.QueueAttributeName{"QueueArn", "Policy"}})
	require.NoError(t, err)
	dlqARN := attrs.Attributes["QueueArn"]
	require.True(t, strings.HasSuffix(dlqARN, ":"+stack+"-eventbridge-dlq"), dlqARN)
	for _, q := range []string{"a", "b"} {
		tg := targetOf(q)
		require.NotNil(t, tg.DeadLetterConfig, "target of %s has a DLQ", q)
		require.Equal(t, dlqARN, aws.ToString(tg.DeadLetterConfig.Arn))
		require.NotNil(t, tg.RetryPolicy, "target of %s has an explicit retry policy", q)
		require.Equal(t, int32(topology.DefaultRetryAttempts), aws.ToInt32(tg.RetryPolicy.MaximumRetryAttempts))
		require.Equal(t, int32(topology.DefaultMaxEventAgeSeconds), aws.ToInt32(tg.RetryPolicy.MaximumEventAgeInSeconds))
		rule, err := c.EventBridge.DescribeRule(ctx, &eventbridge.DescribeRuleInput{Name: aws.String(stack + "-" + q), EventBusName: aws.String(stack)})
		require.NoError(t, err)
		require.Contains(t, attrs.Attributes["Policy"], aws.ToString(rule.Arn), "the events DLQ lets the rule of %s send", q)
	}
	require.Contains(t, attrs.Attributes["Policy"], "events.amazonaws.com")
	resolved, err := bootstrap.New(write(""), bootstrap.Stack{Names: topology.Names{Stack: stack}}, c, awstest.Region).Resolve(ctx)
	require.NoError(t, err)
	require.Equal(t, out.EventsDLQ, resolved.EventsDLQ)

	apply(write(`,"eventDelivery":{"retryAttempts":3,"maxEventAgeSeconds":120}`))
	tg := targetOf("a")
	require.Equal(t, int32(3), aws.ToInt32(tg.RetryPolicy.MaximumRetryAttempts), "a changed policy is put again")
	require.Equal(t, int32(120), aws.ToInt32(tg.RetryPolicy.MaximumEventAgeInSeconds))

	off := apply(write(`,"eventDelivery":{"deadLetter":false}`))
	require.Empty(t, off.EventsDLQ)
	require.Nil(t, targetOf("b").DeadLetterConfig, "deadLetter false takes the DLQ off")
}

// Every queue and DLQ takes SQS's 1 MiB messages, also one made before at the old
// 256 KiB (moto's default is already 1 MiB: the old queue is what proves the update).
func TestApplyRaisesEveryQueueToSQSsLargestMessage(t *testing.T) {
	cfg := awstest.Config(t)
	topo, err := topology.Load("")
	require.NoError(t, err)
	stack := awstest.Stack(t)
	names := topology.Names{Stack: stack}
	c := clients(cfg)
	ctx := context.Background()
	for _, name := range []string{names.Queue("processSingle"), names.DLQ("processSingle")} {
		_, err := c.SQS.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: map[string]string{"MaximumMessageSize": "262144"}})
		require.NoError(t, err)
	}
	out, err := bootstrap.New(topo, bootstrap.Stack{Names: names}, c, awstest.Region).Apply(ctx)
	require.NoError(t, err)
	urls := slices.Concat(slices.Collect(maps.Values(out.Queues)), slices.Collect(maps.Values(out.DLQs)))
	require.Len(t, urls, 2*len(topo.Queues))
	for _, url := range urls {
		attrs, err := c.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{"MaximumMessageSize"}})
		require.NoError(t, err)
		require.Equal(t, strconv.Itoa(awslimit.SQSMessageBytes), attrs.Attributes["MaximumMessageSize"], url)
	}
}
