package console

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/taskbridge/taskbridge/internal/awstest"
	"github.com/taskbridge/taskbridge/internal/dlq"
)

// The stack's size: BENCHMARKS.md's figures are of
// -console.executions=1000 -console.dead-letters=10000, whose setup takes moto about
// 15 minutes (its sends slow down as a queue grows); the defaults keep make bench
// within go test's timeout.
var (
	benchExecutions  = flag.Int("console.executions", 100, "executions of the benchmark's state machine")
	benchDeadLetters = flag.Int("console.dead-letters", 1000, "messages in the benchmark's DLQ")
)

// BenchmarkConsolePages times each page read from AWS (fresh=1: no cache) on the
// emulator, on a stack of -console.executions executions and -console.dead-letters
// dead letters (-short: 20 and 100, so bench-smoke stays quick). The DLQ pages read
// at most DLQReadLimit (200) of them, dlq-queue-read-1000 up to 1,000.
func BenchmarkConsolePages(b *testing.B) {
	executions, deadLetters := *benchExecutions, *benchDeadLetters
	if testing.Short() {
		executions, deadLetters = 20, 100
	}
	srv, one := benchStack(b, executions, deadLetters)
	h := srv.Handler()
	get := func(b *testing.B, path string) string {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		require.Equal(b, http.StatusOK, w.Code, "%s: %s", path, w.Body.String())
		return w.Body.String()
	}
	began := time.Now()
	m := regexp.MustCompile(`/dlq/work/message\?read=200&amp;id=([^"]+)"`).FindStringSubmatch(get(b, "/dlq/work?fresh=1"))
	b.Logf("first read of the DLQ page: %s", time.Since(began).Round(time.Millisecond))
	require.Len(b, m, 2)
	for _, p := range []struct{ name, path string }{
		{"stack", "/?fresh=1"},
		{"stack-cached", "/"},
		{"executions", "/executions?fresh=1"},
		{"executions-failed", "/executions?fresh=1&status=FAILED"},
		{"execution", "/execution?fresh=1&arn=" + one},
		{"dlq-overview", "/dlq?fresh=1"},
		{"dlq-queue", "/dlq/work?fresh=1"},
		{"dlq-queue-cached", "/dlq/work?reason=maxReceiveCount+exceeded&page=1"},
		{"dlq-message", "/dlq/work/message?fresh=1&read=200&id=" + m[1]},
		{"dlq-queue-read-1000", "/dlq/work?fresh=1&read=1000"},
	} {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				get(b, p.path)
			}
			b.ReportMetric(time.Since(start).Seconds()*1000/float64(b.N), "ms/page")
		})
	}
}

// benchStack makes a state machine with executions (a Map of Pass states, so a
// timeline has steps), a queue whose DLQ holds deadLetters messages (events with a
// task token; half with the worker's reason), and a data bucket. It returns a
// console over them and one execution's ARN.
func benchStack(b *testing.B, executions, deadLetters int) (*Server, string) {
	b.Helper()
	cfg := awstest.Config(b)
	ctx := context.Background()
	name := awstest.Stack(b)
	sqsc, sfnc := sqs.NewFromConfig(cfg), sfn.NewFromConfig(cfg)
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	_, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name + "-data")})
	require.NoError(b, err)
	dlqOut, err := sqsc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-work-dlq")})
	require.NoError(b, err)
	qOut, err := sqsc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-work")})
	require.NoError(b, err)
	sm, err := sfnc.CreateStateMachine(ctx, &sfn.CreateStateMachineInput{
		Name: aws.String(name + "-flow"), RoleArn: aws.String(awstest.RoleARN(b, "console-bench")),
		Definition: aws.String(`{"StartAt": "Each", "States": {"Each": {"Type": "Map", "ItemsPath": "$.items",
		  "ItemProcessor": {"StartAt": "One", "States": {"One": {"Type": "Pass", "End": true}}}, "Next": "Done"},
		  "Done": {"Type": "Pass", "End": true}}}`),
	})
	require.NoError(b, err)

	began := time.Now()
	var mu sync.Mutex
	var one string
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range executions {
		g.Go(func() error {
			out, err := sfnc.StartExecution(gctx, &sfn.StartExecutionInput{StateMachineArn: sm.StateMachineArn,
				Name: aws.String(fmt.Sprintf("run-%05d", i)), Input: aws.String(`{"items": [1, 2, 3, 4, 5]}`)})
			if err == nil && i == 0 {
				mu.Lock()
				one = aws.ToString(out.ExecutionArn)
				mu.Unlock()
			}
			return err
		})
	}
	token := "AQB8AAAAKgAAAAMAAAAAAAAAAb" + strings.Repeat("Zm9vYmFy", 60)
	for batch := 0; batch < deadLetters; batch += 10 {
		g.Go(func() error {
			var entries []sqstypes.SendMessageBatchRequestEntry
			for i := batch; i < min(batch+10, deadLetters); i++ {
				body := fmt.Sprintf(`{"version":"0","id":"ev-%d","detail-type":"work","source":"bench","time":"2026-12-07T10:00:00Z","detail":{"TaskToken":"%s-%d","executionArn":"arn:aws:states:us-east-1:123456789012:execution:%s-flow:run-%05d","input":{"n":%d}}}`,
					i, token, i, name, i%executions, i)
				e := sqstypes.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i - batch)), MessageBody: aws.String(body)}
				if i%2 == 0 {
					e.MessageAttributes = map[string]sqstypes.MessageAttributeValue{"taskbridge-error": {DataType: aws.String("String"), StringValue: aws.String("bad input: field n is odd")}}
				}
				entries = append(entries, e)
			}
			out, err := sqsc.SendMessageBatch(gctx, &sqs.SendMessageBatchInput{QueueUrl: dlqOut.QueueUrl, Entries: entries})
			if err == nil && len(out.Failed) > 0 {
				err = fmt.Errorf("send batch: %d failed", len(out.Failed))
			}
			return err
		})
	}
	require.NoError(b, g.Wait())
	b.Logf("stack of %d executions and %d dead letters made in %s", executions, deadLetters, time.Since(began).Round(time.Second))

	stack := Stack{Name: name, DataBucket: name + "-data",
		Queues:        []Queue{{Name: "work", Kind: "exec", Job: "cat", DetailTypes: []string{"work"}, URL: aws.ToString(qOut.QueueUrl), DLQURL: aws.ToString(dlqOut.QueueUrl)}},
		StateMachines: []StateMachine{{Name: "flow", ARN: aws.ToString(sm.StateMachineArn)}}}
	srv, err := New(Config{Addr: "127.0.0.1:0", CacheTTL: time.Hour}, stack, Deps{SFN: sfnc, S3: s3c, DeadLetters: dlq.New(sqsc, sfnc)}, zap.NewNop())
	require.NoError(b, err)
	return srv, one
}
