package cli

import (
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/taskbridge/taskbridge/internal/execjob"
	"github.com/taskbridge/taskbridge/internal/httpjob"
	"github.com/taskbridge/taskbridge/internal/jobs"
	"github.com/taskbridge/taskbridge/internal/startjob"
	"github.com/taskbridge/taskbridge/internal/topology"
)

// kindBuilder turns a queue's configured kind (exec, http, startExecution) into a
// job named after the queue. Each kind's metrics are registered once, on first use.
type kindBuilder struct {
	w           wiring
	execMetrics *execjob.Metrics
	httpMetrics *httpjob.Metrics
	sfnMetrics  *startjob.Metrics
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
	case q.HTTP != nil:
		if k.httpMetrics == nil {
			k.httpMetrics = httpjob.NewMetrics(k.w.reg)
		}
		cfg := httpjob.Config{URL: q.HTTP.URL, Timeout: q.HTTP.Timeout.Duration, Headers: q.HTTP.Headers}
		j, err := httpjob.New(q.Name, cfg, log, k.httpMetrics)
		if err != nil {
			return jobs.Job{}, 0, err
		}
		return jobs.Job{Name: q.Name, Mode: jobs.Complete, Run: j.Run}, cfg.HandlerTimeout(), nil
	default: // startExecution; Check allows no other kind here
		if k.sfnMetrics == nil {
			k.sfnMetrics = startjob.NewMetrics(k.w.reg)
		}
		name := q.StartExecution.StateMachine
		cfg := startjob.Config{StateMachine: name, StateMachineARN: k.w.stack.StateMachines[name],
			Limiter: k.w.sfnLimits.Get("StartExecution"), ThrottleTimeout: k.w.cfg.ReportTimeout}
		j, err := startjob.New(q.Name, cfg, k.w.sfn, log, k.sfnMetrics)
		if err != nil {
			return jobs.Job{}, 0, err
		}
		// The event's token, if any, is not this job's: it starts an execution and
		// reports on no task.
		return jobs.Job{Name: q.Name, Mode: jobs.Observe, Run: j.Run}, cfg.HandlerTimeout(), nil
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
