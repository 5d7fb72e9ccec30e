package ecsprotect

import (
	"time"

	"github.com/taskbridge/taskbridge/internal/consumer"
)

// state is where protection stands, read afresh from the machine and the work in
// hand on every turn of Run (machine.observe).
type state int

const (
	// idle: no work, nothing held (nor maybe held): nothing to do until work comes.
	idle state = iota
	// unprotected: work in hand, no protection confirmed (none yet, or it expired
	// while renewals failed): enable now.
	unprotected
	// protected: work in hand, protection confirmed: renew at half its length.
	protected
	// lingering: no work, protection held or maybe held (an enable whose answer
	// failed): drop once the process has been idle for the grace.
	lingering
	// disabled: ECS refused protection for good (TASK_NOT_VALID): no more calls.
	disabled
)

// Actions, as the metrics' action label names them.
const (
	actionEnable = "enable"
	actionRenew  = "renew"
	actionDrop   = "drop"
)

// step is what a state asks for: one call to the agent, due at a time read from
// the machine. A step without an action waits for a change of work only.
type step struct {
	action string
	due    func(m *machine) time.Time // zero: at once
}

// steps is the one table of state → action and its next wake-up.
var steps = [...]step{
	idle:        {},
	unprotected: {action: actionEnable, due: func(*machine) time.Time { return time.Time{} }},
	protected:   {action: actionRenew, due: func(m *machine) time.Time { return m.until.Add(-m.length / 2) }},
	lingering:   {action: actionDrop, due: func(m *machine) time.Time { return m.idleSince.Add(m.grace) }},
	disabled:    {},
}

// machine is what Run knows between its turns; only Run's goroutine touches it.
type machine struct {
	length time.Duration // of one enable or renewal (Config.Minutes)
	grace  time.Duration // idle time before a drop (Config.Grace)

	until     time.Time // end of the protection the agent confirmed; zero: none
	maybeHeld bool      // an enable was tried since the last confirmed drop
	idleSince time.Time // zero while busy
	retryAt   time.Time // after a failed call: no call before it
	failures  int       // failed calls in a row
	refusals  int       // permanent refusals in a row
	disabled  bool      // maxPermanentRefusals reached
}

// observe brings the machine to now with busy (work in hand) and says its state.
func (m *machine) observe(now time.Time, busy bool) state {
	if !m.until.IsZero() && !now.Before(m.until) {
		m.until = time.Time{} // expired: renewals failed for its whole length
	}
	switch {
	case busy:
		m.idleSince = time.Time{}
	case m.idleSince.IsZero():
		m.idleSince = now
	}
	switch {
	case m.disabled:
		return disabled
	case busy && m.until.IsZero():
		return unprotected
	case busy:
		return protected
	case m.maybeHeld:
		return lingering
	default:
		return idle
	}
}

// held reports whether the agent confirmed a protection that has not expired.
func (m *machine) held() bool { return !m.until.IsZero() }

// due is when s's action may be made: when the state asks for it, and not before
// the retry time of a failed call.
func (m *machine) due(s step) time.Time {
	if s.action == "" {
		return time.Time{}
	}
	at := s.due(m)
	if m.retryAt.After(at) {
		return m.retryAt
	}
	return at
}

// succeeded settles a confirmed call made at asked: an enable or renewal protects
// from then for length, a drop leaves nothing held.
func (m *machine) succeeded(asked time.Time, enable bool) {
	m.failures, m.refusals, m.retryAt = 0, 0, time.Time{}
	if enable {
		m.until = asked.Add(m.length)
		return
	}
	m.until, m.maybeHeld = time.Time{}, false
}

// failed settles a failed call at now: retry after a backoff; permanent refusals
// in a row, maxPermanentRefusals of them, disable the machine.
func (m *machine) failed(now time.Time, permanent bool) {
	m.failures++
	m.retryAt = now.Add(consumer.Backoff(m.failures-1, retryBase, retryMax))
	m.refusals++
	if !permanent {
		m.refusals = 0
	}
	if m.refusals >= maxPermanentRefusals {
		m.disabled, m.until = true, time.Time{}
	}
}
