package config

import (
	"reflect"
	"time"
)

// The figures of a stop that are not settings: StopBudget derives every duration
// of a stop from WORKER_SHUTDOWN_TIMEOUT and these, and nothing else holds one.
const (
	// flushReserve is kept from the shutdown timeout for what runs after the drain:
	// settling what is left (the pollers' Flush, three quarters of it), then the
	// components' return and the HTTP server's stop before the last guard.
	flushReserve = 4 * time.Second
	// tracingFlush bounds the flush of the spans still buffered, after the
	// components stopped (or the last guard gave up on them).
	tracingFlush = 2 * time.Second
	// protectionDrop bounds the call that drops task scale-in protection at the
	// stop; it runs beside the drain, inside the shutdown timeout.
	protectionDrop = 2 * time.Second
	// serverStop bounds the HTTP server's shutdown (/metrics, /healthz, /readyz),
	// which starts with the stop, beside the drain.
	serverStop = 3 * time.Second
	// secondSignalGrace is what a second signal adds to the flush for the pollers
	// to return, still within the last guard.
	secondSignalGrace = time.Second
	// ECSStopMargin is what ECS's stopTimeout adds to the shutdown timeout: the
	// tracing flush and the process's exit fit in it, so ECS never SIGKILLs a
	// stop. deploy/terraform/ecs.tf sets stopTimeout with the same figure
	// (deploy's TestTerraformStopTimeoutIsTheBudgets checks it).
	ECSStopMargin = 5 * time.Second
	// ECSStopTimeoutMax is Fargate's ceiling of a container's stopTimeout.
	ECSStopTimeoutMax = 120 * time.Second
)

// StopBudget is how a stop spends its time, from the first SIGTERM to the exit;
// the one owner of every duration of a stop.
//
//	0 ─ Drain ─┬─ Flush ─┬── (rest of the reserve) ──┤ Shutdown: last guard
//	           │         │                           ├─ TracingFlush ─┤ Exit
//	           └ pollers settle what is left          └ ECS stopTimeout = Shutdown + ECSStopMargin
//
// A second signal ends the drain at once; the pollers then get Flush plus a
// second, never past the last guard.
type StopBudget struct {
	// Shutdown is WORKER_SHUTDOWN_TIMEOUT: from the signal to the last guard, the
	// whole of the components' stop; past it, the process exits without them.
	Shutdown time.Duration
	// Drain is how long the pollers wait for the receives in flight and the
	// running jobs to finish.
	Drain time.Duration
	// Flush is how long the pollers then take to settle what is left (releases,
	// the last deletes).
	Flush time.Duration
	// SecondSignal is what the components get after a second signal, at most up
	// to the last guard.
	SecondSignal time.Duration
	// ProtectionDrop bounds the drop of task scale-in protection, beside the drain.
	ProtectionDrop time.Duration
	// BatchFlush bounds what the batcher's stop spends flushing its closed and open
	// batches: three quarters of the drain, so that the landing messages it settles
	// are deleted or released before the poller's drain gives up on them.
	BatchFlush time.Duration
	// ServerStop bounds the HTTP server's shutdown, beside the drain.
	ServerStop time.Duration
	// TracingFlush bounds the flush of the buffered spans, after the last guard
	// at the latest.
	TracingFlush time.Duration
}

// Stop is the budget of this configuration's stop.
func (c Config) Stop() StopBudget { return NewStopBudget(c.ShutdownTimeout) }

// NewStopBudget spends shutdown: the drain gets all but flushReserve (at least
// half of it), the flush three quarters of what remains.
func NewStopBudget(shutdown time.Duration) StopBudget {
	drain := max(shutdown-flushReserve, shutdown/2)
	flush := (shutdown - drain) * 3 / 4
	return StopBudget{
		Shutdown:       shutdown,
		Drain:          drain,
		Flush:          flush,
		SecondSignal:   flush + secondSignalGrace,
		ProtectionDrop: min(protectionDrop, shutdown),
		BatchFlush:     drain * 3 / 4,
		ServerStop:     min(serverStop, shutdown),
		TracingFlush:   tracingFlush,
	}
}

// Exit is the longest a stop takes, from the signal to the process's exit: the
// last guard, then the tracing flush.
func (b StopBudget) Exit() time.Duration { return b.Shutdown + b.TracingFlush }

// ECSStopTimeout is the container's stopTimeout this budget needs: Exit fits in
// it with room for the runtime's own exit.
func (b StopBudget) ECSStopTimeout() time.Duration { return b.Shutdown + ECSStopMargin }

// DefaultShutdownTimeout is WORKER_SHUTDOWN_TIMEOUT's default, as `worker config`
// prints it.
func DefaultShutdownTimeout() time.Duration {
	f, _ := reflect.TypeFor[Config]().FieldByName("ShutdownTimeout")
	d, err := time.ParseDuration(f.Tag.Get("default"))
	if err != nil {
		panic("config: WORKER_SHUTDOWN_TIMEOUT's default does not read: " + err.Error())
	}
	return d
}
