package cli

import (
	"context"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/taskbridge/taskbridge/internal/batch"
	"github.com/taskbridge/taskbridge/internal/execjob"
	"github.com/taskbridge/taskbridge/internal/httpjob"
	"github.com/taskbridge/taskbridge/internal/jobs"
	"github.com/taskbridge/taskbridge/internal/startjob"
	"github.com/taskbridge/taskbridge/internal/throttle"
	"github.com/taskbridge/taskbridge/internal/topology"
)

// checkKind is the topology.KindCheck of `validate`, `run` and the other commands:
// each kind's own Config.Validate, on the Config its constructor gets in `run` (the
// same functions below make both), so a topology `validate` passes is one `run`
// builds. Only the stack's facts (a state machine's ARN, the buckets) are left to
// the constructors.
func checkKind(t *topology.Topology, q topology.Queue) error {
	switch {
	case q.Exec != nil:
		return execConfig(t, q).Validate()
	case q.HTTP != nil:
		return httpConfig(q).Validate()
	case q.StartExecution != nil:
		return startConfig(q).Validate()
	case q.S3Batch != nil:
		return batch.CheckOverrides(q.S3Batch.MaxFiles, q.S3Batch.Window.Duration)
	}
	return nil
}

var _ topology.KindCheck = checkKind

func execConfig(t *topology.Topology, q topology.Queue) execjob.Config {
	return execjob.Config{Command: q.Exec.Command, Dir: t.Dir, Timeout: q.Exec.Timeout.Duration, Env: envList(q.Exec.Env), Checkpoint: q.Exec.Checkpoint}
}

func httpConfig(q topology.Queue) httpjob.Config {
	return httpjob.Config{URL: q.HTTP.URL, Timeout: q.HTTP.Timeout.Duration, Headers: q.HTTP.Headers, Checkpoint: q.HTTP.Checkpoint}
}

// startConfig leaves the ARN, the limiter and the throttle timeout to the wiring.
func startConfig(q topology.Queue) startjob.Config {
	return startjob.Config{StateMachine: q.StartExecution.StateMachine}
}

// kindBuilder turns a queue's configured kind (exec, http, startExecution) into a
// job named after the queue. Each kind's metrics are registered once, on first use.
type kindBuilder struct {
	w           wiring
	execMetrics *execjob.Metrics
	httpMetrics *httpjob.Metrics
	sfnMetrics  *startjob.Metrics
	// fit claim-checks an execution input over Step Functions' limit (the
	// reporter's StepFunctions.Fit, on the data bucket).
	fit func(ctx context.Context, input []byte) ([]byte, error)
}

func newKindBuilder(w wiring, fit func(ctx context.Context, input []byte) ([]byte, error)) *kindBuilder {
	return &kindBuilder{w: w, fit: fit}
}

// build returns the queue's job and the deadline of one run of it.
func (k *kindBuilder) build(q topology.Queue) (jobs.Job, time.Duration, error) {
	log := k.w.log.With(zap.String("queue", q.Name))
	switch {
	case q.Exec != nil:
		if k.execMetrics == nil {
			k.execMetrics = execjob.NewMetrics(k.w.reg)
		}
		cfg := execConfig(k.w.topo, q)
		j, err := execjob.New(q.Name, cfg, log, k.execMetrics)
		if err != nil {
			return jobs.Job{}, 0, err
		}
		return jobs.Job{Name: q.Name, Mode: jobs.Complete, Run: j.Run, StopGrace: cfg.StopTime()}, cfg.HandlerTimeout(), nil
	case q.HTTP != nil:
		if k.httpMetrics == nil {
			k.httpMetrics = httpjob.NewMetrics(k.w.reg)
		}
		cfg := httpConfig(q)
		j, err := httpjob.New(q.Name, cfg, log, k.httpMetrics)
		if err != nil {
			return jobs.Job{}, 0, err
		}
		return jobs.Job{Name: q.Name, Mode: jobs.Complete, Run: j.Run}, cfg.HandlerTimeout(), nil
	default: // startExecution; Check allows no other kind here
		if k.sfnMetrics == nil {
			k.sfnMetrics = startjob.NewMetrics(k.w.reg)
		}
		cfg := startConfig(q)
		cfg.StateMachineARN = k.w.stack.StateMachines[cfg.StateMachine]
		cfg.Limiter, cfg.ThrottleTimeout = k.w.sfnLimits.Get(throttle.StartExecution), k.w.cfg.ReportTimeout
		cfg.FitFunc = k.fit
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
