// Command greeter is the tutorial (docs/tutorial.md): one Go job, greet,
// served by taskbridge for the greeter state machine. Copy this folder to start a
// worker of your own.
package main

import (
	"context"

	"github.com/taskbridge/taskbridge"
)

func main() {
	jobs := taskbridge.NewRegistry()
	jobs.Handle("greet", func(ctx context.Context, t *taskbridge.Task) (any, error) {
		var in struct {
			Name string `json:"name"`
		}
		if err := t.Decode(&in); err != nil {
			return nil, err // bad input: failure callback greet.InvalidInput, then the DLQ
		}
		return map[string]string{"greeting": "Hello, " + in.Name}, nil
	})
	taskbridge.Main(jobs)
}
