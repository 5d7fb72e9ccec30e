package taskbridge_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/taskbridge/taskbridge"
	"github.com/taskbridge/taskbridge/tasktest"
)

// A job is a function registered under a name; the topology binds the name to a
// queue ({"name": "greet", "job": "greet", "detailTypes": ["greet"]}), and
// taskbridge.Main(jobs) in your main function serves it. Here tasktest runs it the
// way the worker does.
func Example() {
	jobs := taskbridge.NewRegistry()
	jobs.Handle("greet", func(ctx context.Context, t *taskbridge.Task) (any, error) {
		var in struct {
			Name string `json:"name"`
		}
		if err := t.Decode(&in); err != nil {
			return nil, err // bad input: failure callback greet.InvalidInput, then the DLQ
		}
		if in.Name == "" {
			return nil, taskbridge.Permanent("NoName", errors.New("name is empty"))
		}
		return map[string]string{"greeting": "Hello, " + in.Name}, nil
	})
	// In main: taskbridge.Main(jobs)

	run := tasktest.New(jobs)
	ok, _ := run.Run(context.Background(), "greet", map[string]string{"name": "Ada"}, tasktest.Delivery{})
	fmt.Println(ok.Succeeded, string(ok.Output))
	bad, _ := run.Run(context.Background(), "greet", map[string]int{"name": 42}, tasktest.Delivery{})
	fmt.Println(bad.Failed, bad.Error, bad.DeadLettered)
	empty, _ := run.Run(context.Background(), "greet", map[string]string{}, tasktest.Delivery{})
	fmt.Println(empty.Failed, empty.Error, empty.DeadLettered)
	// Output:
	// true {"greeting":"Hello, Ada"}
	// true greet.InvalidInput true
	// true greet.NoName false
}

// A job can hand its task's token forward with the next event: whoever handles that
// event completes the task.
func ExampleTask_HandOff() {
	jobs := taskbridge.NewRegistry()
	jobs.Handle("resize", func(ctx context.Context, t *taskbridge.Task) (any, error) {
		return nil, t.HandOff(ctx, "resized", map[string]string{"key": "img/1.png"})
	})
	res, _ := tasktest.New(jobs).Run(context.Background(), "resize", nil, tasktest.Delivery{Token: "tok-1", ExecutionArn: "arn:aws:states:us-east-1:1:execution:sm:run"})
	fmt.Println(res.Succeeded, res.Events[0].DetailType, string(res.Events[0].Detail))
	// Output:
	// false resized {"TaskToken":"tok-1","executionArn":"arn:aws:states:us-east-1:1:execution:sm:run","key":"img/1.png"}
}

// An observer reacts to an event that carries another consumer's token: it never
// sees the token, and the worker reports nothing for it.
func ExampleObserve() {
	jobs := taskbridge.NewRegistry()
	jobs.Handle("audit", func(ctx context.Context, t *taskbridge.Task) (any, error) {
		d, _ := t.Detail()
		return nil, t.Publish(ctx, "audited", map[string]any{"seen": len(d) > 0})
	}, taskbridge.Observe())
	res, _ := tasktest.New(jobs).Run(context.Background(), "audit", map[string]string{"x": "y"}, tasktest.Delivery{})
	fmt.Println(res.Succeeded, res.Failed, res.Events[0].DetailType)
	// Output:
	// false false audited
}

// Run serves the worker beside a program's own work (its HTTP server, another
// worker on another stack) and returns instead of exiting: when ctx ends it stops
// as at a SIGTERM and returns nil. Each run reads its own settings (Env, over the
// process environment) and writes its own logs. Here the settings are wrong, and
// the program gets the error rather than an exit.
func ExampleRun() {
	jobs := taskbridge.NewRegistry()
	jobs.Handle("greet", func(ctx context.Context, t *taskbridge.Task) (any, error) {
		return map[string]string{"greeting": "Hello"}, nil
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Typically in an errgroup beside the program's server: g.Go(func() error {
	// return taskbridge.Run(ctx, jobs, opts) }).
	err := taskbridge.Run(ctx, jobs, taskbridge.Options{
		Env: []string{
			"WORKER_STACK=Greeter", // stacks are lowercase: refused
			"WORKER_TOPOLOGY=greeter/topology.json",
			"WORKER_METRICS_ADDR=127.0.0.1:9191", // not the other worker's port
		},
		Logs: io.Discard,
	})
	fmt.Println(err)
	// Output:
	// configuration:
	// WORKER_STACK: must be 2-31 lowercase letters, digits or dashes, starting with a letter or digit, got "Greeter"
}

// A job whose task closes while it runs (the execution was stopped or timed out) is
// cancelled: its context ends with ErrTaskClosed as the cause, nothing is reported
// and the message is deleted. Here tasktest closes the task after 50 ms.
func ExampleErrTaskClosed() {
	jobs := taskbridge.NewRegistry()
	jobs.Handle("render", func(ctx context.Context, t *taskbridge.Task) (any, error) {
		<-ctx.Done() // a long computation that watches its context
		if errors.Is(context.Cause(ctx), taskbridge.ErrTaskClosed) {
			fmt.Println("stopped: the task is closed")
		}
		return nil, ctx.Err()
	})
	res, _ := tasktest.New(jobs).Run(context.Background(), "render", nil, tasktest.Delivery{CloseAfter: 50 * time.Millisecond})
	fmt.Println(res.Cancelled, res.Succeeded, res.Failed, res.Retried)
	// Output:
	// stopped: the task is closed
	// true false false false
}

// A long job stores its progress with Checkpoint; the next receive of the same task
// (after a crash or a stop) resumes from LastCheckpoint. The checkpoint is deleted
// once the task is done.
func ExampleTask_Checkpoint() {
	jobs := taskbridge.NewRegistry()
	crash := true
	jobs.Handle("count", func(ctx context.Context, t *taskbridge.Task) (any, error) {
		var next int
		if _, err := t.LastCheckpoint(&next); err != nil {
			return nil, err
		}
		fmt.Println("starting at", next)
		for i := next; i < 1000; i++ {
			if i%100 == 0 {
				if err := t.Checkpoint(ctx, i); err != nil {
					return nil, err
				}
			}
			if i == 550 && crash {
				crash = false
				return nil, errors.New("worker lost") // a retry: the message comes back
			}
		}
		return map[string]int{"done": 1000}, nil
	})
	run := tasktest.New(jobs)
	task := tasktest.Delivery{Token: "tok-count", ExecutionArn: "arn:aws:states:us-east-1:1:execution:sm:nightly"}
	first, _ := run.Run(context.Background(), "count", nil, task)
	fmt.Println(first.Retried, len(run.Checkpoints()))
	task.ReceiveCount = 2 // the same task, delivered again
	second, _ := run.Run(context.Background(), "count", nil, task)
	fmt.Println(second.Succeeded, string(second.Output), len(run.Checkpoints()))
	// Output:
	// starting at 0
	// true 1
	// starting at 500
	// true {"done":1000} 0
}
