package ecsprotect

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Config of a Protector.
type Config struct {
	// AgentURI is $ECS_AGENT_URI, set by ECS in every container of a task. Empty:
	// New returns a nil Protector, which does nothing.
	AgentURI string
	// Minutes is how long one enable or renewal protects the task, in the agent's
	// range 1..2880 (default 15), which the worker's configuration checks
	// (WORKER_TASK_PROTECTION_MINUTES); a value outside it is the agent's to refuse. It is renewed at half of it while work remains,
	// so a longer job stays protected; it bounds how long a process that froze
	// (it cannot renew, nor drop) keeps scale-in and deployments waiting.
	Minutes int
	// Grace is how long the process must have been idle before protection is
	// dropped (default 5 s): a stream of short jobs does not toggle it per message.
	Grace time.Duration
	// DropTimeout bounds the drop at a stop, which must not hold up the shutdown
	// (default 2 s; the stop's budget gives it: config.StopBudget).
	DropTimeout time.Duration
	// Client calls the agent (default: a client of the Protector's own, with a
	// timeout of callTimeout); every call is bounded by callTimeout besides.
	Client *http.Client
}

const (
	defaultMinutes = 15
	defaultGrace   = 5 * time.Second
	// callTimeout bounds one call to the agent, which is local to the task.
	callTimeout        = 5 * time.Second
	defaultDropTimeout = 2 * time.Second
	// Retries of a failed call back off from retryBase to retryMax, with jitter
	// (consumer.Backoff).
	retryBase = time.Second
	retryMax  = 30 * time.Second
	// maxPermanentRefusals is how many refusals that no retry changes
	// (TASK_NOT_VALID), in a row, turn protection off for the process: a few, in
	// case the agent says so only while the task settles.
	maxPermanentRefusals = 3
)

// Protector holds task scale-in protection while work is in hand. Begin and End
// may be called from any goroutine; Run owns every call to the agent. The methods
// of a nil *Protector do nothing.
type Protector struct {
	cfg     Config
	agent   agent
	log     *zap.Logger
	metrics *Metrics

	busy atomic.Int64 // work in hand: Begins minus Ends
	// wake tells Run that busy went from 0 to more or back to 0.
	wake chan struct{}
}

// New returns a Protector for cfg, or nil (a valid, inert Protector) when
// cfg.AgentURI is empty.
func New(cfg Config, log *zap.Logger, m *Metrics) (*Protector, error) {
	if cfg.AgentURI == "" {
		return nil, nil
	}
	if cfg.Minutes == 0 {
		cfg.Minutes = defaultMinutes
	}
	if cfg.Grace == 0 {
		cfg.Grace = defaultGrace
	}
	if cfg.DropTimeout == 0 {
		cfg.DropTimeout = defaultDropTimeout
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: callTimeout}
	}
	var errs []error
	if cfg.Grace < 0 {
		errs = append(errs, fmt.Errorf("ecsprotect: Grace must not be negative, got %s", cfg.Grace))
	}
	if !strings.HasPrefix(cfg.AgentURI, "http://") && !strings.HasPrefix(cfg.AgentURI, "https://") {
		errs = append(errs, fmt.Errorf("ecsprotect: agent URI must be an http URL, got %q", cfg.AgentURI))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Protector{
		cfg:     cfg,
		agent:   agent{url: strings.TrimSuffix(cfg.AgentURI, "/") + statePath, client: cfg.Client},
		log:     log.With(zap.String("component", "task_protection")),
		metrics: m,
		wake:    make(chan struct{}, 1),
	}, nil
}

// Begin counts n more pieces of work in hand (n >= 1). It never blocks.
func (p *Protector) Begin(n int) {
	if p == nil {
		return
	}
	if p.busy.Add(int64(n)) == int64(n) {
		p.signal() // from idle to busy
	}
}

// End counts n pieces of work settled, one End for each Begin. It never blocks.
func (p *Protector) End(n int) {
	if p == nil {
		return
	}
	if p.busy.Add(-int64(n)) == 0 {
		p.signal() // idle now
	}
}

func (p *Protector) signal() {
	select {
	case p.wake <- struct{}{}:
	default: // Run has a wake pending already
	}
}

// Run enables, renews and drops protection as work comes and goes, until ctx is
// cancelled; then it drops protection (bounded by Config.DropTimeout) and returns nil.
// Each turn reads the state (machine.observe), makes the call the state's step
// asks for once it is due, or sleeps until it is due or the work changes.
func (p *Protector) Run(ctx context.Context) error {
	if p == nil {
		return nil
	}
	p.log.Info("task scale-in protection on", zap.Int("minutes", p.cfg.Minutes), zap.Duration("grace", p.cfg.Grace))
	m := machine{length: time.Duration(p.cfg.Minutes) * time.Minute, grace: p.cfg.Grace}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for ctx.Err() == nil {
		now := time.Now()
		st := m.observe(now, p.busy.Load() > 0)
		p.metrics.held.Set(boolFloat(m.held()))
		s := steps[st]
		at := m.due(s)
		if s.action != "" && !now.Before(at) {
			if !p.call(ctx, &m, s.action, now) {
				break // stopping: the drop below settles it
			}
			continue // look again: work may have come or gone during the call
		}
		var fire <-chan time.Time
		if s.action != "" {
			timer.Reset(time.Until(at))
			fire = timer.C
		}
		select {
		case <-ctx.Done():
		case <-p.wake:
		case <-fire:
		}
		timer.Stop()
	}
	if m.maybeHeld && !m.disabled {
		p.drop(ctx)
	}
	p.log.Info("task scale-in protection stopped")
	return nil
}

// call makes one call to the agent for action and settles its outcome on m; false
// when ctx ended during it (the stop's drop settles it then).
func (p *Protector) call(ctx context.Context, m *machine, action string, now time.Time) bool {
	enable := action != actionDrop
	m.maybeHeld = m.maybeHeld || enable
	callCtx, cancel := context.WithTimeout(ctx, callTimeout)
	err := p.agent.put(callCtx, enable, p.cfg.Minutes)
	cancel()
	if ctx.Err() != nil {
		return false
	}
	if err != nil {
		p.metrics.updates.WithLabelValues(action, "error").Inc()
		m.failed(time.Now(), isPermanent(err))
		if m.disabled {
			p.giveUp(err, m.refusals)
			return true
		}
		if m.failures == 1 || m.failures%10 == 0 {
			p.log.Warn("task protection update failed; retrying", zap.String("action", action), zap.Error(err),
				zap.Int("consecutive_failures", m.failures), zap.Time("retry_at", m.retryAt))
		}
		return true
	}
	if m.failures > 0 {
		p.log.Info("task protection update recovered", zap.String("action", action), zap.Int("after_failures", m.failures))
	}
	m.succeeded(now, enable)
	p.metrics.updates.WithLabelValues(action, "ok").Inc()
	if ce := p.log.Check(zap.DebugLevel, "task protection updated"); ce != nil {
		ce.Write(zap.String("action", action))
	}
	return true
}

// giveUp turns protection off for the rest of the process after ECS refused it
// for good: one error line; the machine, disabled, makes no more calls.
func (p *Protector) giveUp(err error, refusals int) {
	p.metrics.disabled.Set(1)
	p.log.Error("ECS refuses task scale-in protection for this task; no more attempts until the process restarts (a task outside a service cannot be protected; set WORKER_TASK_PROTECTION_MINUTES=0 to turn it off)",
		zap.Error(err), zap.Int("refusals", refusals))
}

// drop removes protection at a stop, on a context detached from the cancelled one
// and bounded by Config.DropTimeout.
func (p *Protector) drop(ctx context.Context) {
	dropCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.DropTimeout)
	defer cancel()
	if err := p.agent.put(dropCtx, false, 0); err != nil {
		p.metrics.updates.WithLabelValues("drop", "error").Inc()
		p.log.Warn("drop task protection at stop failed; it expires by itself", zap.Error(err))
		return
	}
	p.metrics.updates.WithLabelValues("drop", "ok").Inc()
	p.metrics.held.Set(0)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
