package taskbridge_test

import (
	"context"
	"errors"
	"fmt"

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
