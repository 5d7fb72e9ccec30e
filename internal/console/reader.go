package console

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sfn"

	"github.com/taskbridge/taskbridge/internal/dlq"
)

// sfnAPI is what the console reads of Step Functions; *sfn.Client satisfies it.
// Calls may come from many goroutines (one per request).
type sfnAPI interface {
	ListExecutions(ctx context.Context, in *sfn.ListExecutionsInput, opts ...func(*sfn.Options)) (*sfn.ListExecutionsOutput, error)
	DescribeExecution(ctx context.Context, in *sfn.DescribeExecutionInput, opts ...func(*sfn.Options)) (*sfn.DescribeExecutionOutput, error)
	GetExecutionHistory(ctx context.Context, in *sfn.GetExecutionHistoryInput, opts ...func(*sfn.Options)) (*sfn.GetExecutionHistoryOutput, error)
}

// s3API is what the console reads of the data bucket; *s3.Client satisfies it.
type s3API interface {
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// deadLetters is what the console does with queues and their DLQs: internal/dlq's
// Inspector, the same reads and moves as `worker status` and `worker dlq`. Reading
// a DLQ receives its messages (hidden for a while, then released: see dlq).
type deadLetters interface {
	Attributes(ctx context.Context, url string) (dlq.Attributes, error)
	List(ctx context.Context, q dlq.Queue, limit int) (dlq.Listing, error)
	Show(ctx context.Context, q dlq.Queue, limit int) ([]dlq.Message, error)
	Redrive(ctx context.Context, q dlq.Queue, opt dlq.RedriveOptions) (dlq.Summary, error)
	Purge(ctx context.Context, q dlq.Queue) error
}

var _ deadLetters = (*dlq.Inspector)(nil)

// Stack is the resolved stack the console shows: the topology's queues and state
// machines with their AWS names.
type Stack struct {
	Name          string
	DataBucket    string
	Queues        []Queue        // in the topology's order
	StateMachines []StateMachine // in the topology's order
}

// Queue is one topology queue.
type Queue struct {
	Name        string
	Kind        string // job, exec, http, startExecution, s3Batch
	Job         string // the Go job, the command, the URL or the state machine it runs
	DetailTypes []string
	URL         string
	DLQURL      string
}

func (q Queue) dlq() dlq.Queue { return dlq.Queue{Name: q.Name, URL: q.URL, DLQURL: q.DLQURL} }

// StateMachine is one topology state machine.
type StateMachine struct {
	Name string
	ARN  string
}

// Deps are the clients the console reads with.
type Deps struct {
	SFN         sfnAPI
	S3          s3API
	DeadLetters deadLetters
}

func (s Stack) queue(name string) (Queue, bool) {
	for _, q := range s.Queues {
		if q.Name == name {
			return q, true
		}
	}
	return Queue{}, false
}

func (s Stack) machine(name string) (StateMachine, bool) {
	for _, m := range s.StateMachines {
		if m.Name == name {
			return m, true
		}
	}
	return StateMachine{}, false
}

// queuesFor are the queues a detail-type is routed to (the jobs a callback step's
// event runs).
func (s Stack) queuesFor(detailType string) []Queue {
	var out []Queue
	for _, q := range s.Queues {
		for _, d := range q.DetailTypes {
			if d == detailType {
				out = append(out, q)
			}
		}
	}
	return out
}
