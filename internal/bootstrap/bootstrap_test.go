package bootstrap_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/glue"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

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
