package cli

import (
	"fmt"
	"time"

	"github.com/taskbridge/taskbridge/internal/jobs"
	"github.com/taskbridge/taskbridge/internal/topology"
)

// kindBuilder turns a queue's configured kind (exec, http, startExecution) into a
// job named after the queue.
type kindBuilder struct {
	w wiring
}

func newKindBuilder(w wiring) *kindBuilder { return &kindBuilder{w: w} }

// build returns the queue's job and the deadline of one run of it.
func (k *kindBuilder) build(q topology.Queue) (jobs.Job, time.Duration, error) {
	return jobs.Job{}, 0, fmt.Errorf("queue %s: %s jobs: %w", q.Name, q.Kind(), errKindNotBuilt)
}
