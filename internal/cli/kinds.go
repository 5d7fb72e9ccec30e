package cli

import (
	"fmt"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/taskbridge/taskbridge/internal/execjob"
	"github.com/taskbridge/taskbridge/internal/jobs"
	"github.com/taskbridge/taskbridge/internal/topology"
)

// kindBuilder turns a queue's configured kind (exec, http, startExecution) into a
// job named after the queue. Each kind's metrics are registered once, on first use.
type kindBuilder struct {
	w           wiring
	execMetrics *execjob.Metrics
}

func newKindBuilder(w wiring) *kindBuilder { return &kindBuilder{w: w} }

// build returns the queue's job and the deadline of one run of it.
func (k *kindBuilder) build(q topology.Queue) (jobs.Job, time.Duration, error) {
	log := k.w.log.With(zap.String("queue", q.Name))
	switch {
	case q.Exec != nil:
		if k.execMetrics == nil {
			k.execMetrics = execjob.NewMetrics(k.w.reg)
		}
		cfg := execjob.Config{Command: q.Exec.Command, Dir: k.w.topo.Dir, Timeout: q.Exec.Timeout.Duration, Env: envList(q.Exec.Env)}
		j, err := execjob.New(q.Name, cfg, log, k.execMetrics)
		if err != nil {
			return jobs.Job{}, 0, err
		}
		return jobs.Job{Name: q.Name, Mode: jobs.Complete, Run: j.Run}, cfg.HandlerTimeout(), nil
	default:
		return jobs.Job{}, 0, fmt.Errorf("queue %s: %s jobs: %w", q.Name, q.Kind(), errKindNotBuilt)
	}
}

func envList(env map[string]string) []string {
	list := make([]string, 0, len(env))
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	sort.Strings(list)
	return list
}
