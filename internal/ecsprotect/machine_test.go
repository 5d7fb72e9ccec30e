package ecsprotect

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestTransitions drives the machine through each transition of its table: from a
// state, an event (a change of work, a call's outcome, time passing), to the state
// it lands in, the action that state asks for and when it is due.
func TestTransitions(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	const length, grace = 10 * time.Minute, 5 * time.Second
	fresh := func() *machine { return &machine{length: length, grace: grace} }
	// at brings a fresh machine into from, at t0.
	at := func(from state) *machine {
		m := fresh()
		switch from {
		case idle:
			m.observe(t0, false)
		case unprotected:
			m.observe(t0, true)
		case protected:
			m.observe(t0, true)
			m.maybeHeld = true
			m.succeeded(t0, true)
		case lingering:
			m.observe(t0, true)
			m.maybeHeld = true
			m.succeeded(t0, true)
			m.observe(t0, false)
		case disabled:
			for range maxPermanentRefusals {
				m.failed(t0, true)
			}
		}
		require.Equal(t, from, m.observe(t0, from == unprotected || from == protected || from == disabled))
		return m
	}
	for _, tc := range []struct {
		name   string
		from   state
		event  func(m *machine) state
		want   state
		action string
		due    time.Time // zero: at once, or no action
	}{
		{"idle, work begins: enable at once", idle,
			func(m *machine) state { return m.observe(t0.Add(time.Second), true) }, unprotected, actionEnable, time.Time{}},
		{"idle, time passes: nothing", idle,
			func(m *machine) state { return m.observe(t0.Add(time.Hour), false) }, idle, "", time.Time{}},
		{"unprotected, enable confirmed: renew at half its length", unprotected,
			func(m *machine) state { m.maybeHeld = true; m.succeeded(t0, true); return m.observe(t0, true) }, protected, actionRenew, t0.Add(length / 2)},
		{"unprotected, enable fails: retried after the backoff", unprotected,
			func(m *machine) state { m.maybeHeld = true; m.failed(t0, false); return m.observe(t0, true) }, unprotected, actionEnable, time.Time{} /* retryAt, checked below */},
		{"unprotected, work ends after a tried enable: drop after the grace", unprotected,
			func(m *machine) state { m.maybeHeld = true; m.failed(t0, false); return m.observe(t0, false) }, lingering, actionDrop, t0.Add(grace)},
		{"unprotected, work ends before any call: idle", unprotected,
			func(m *machine) state { return m.observe(t0, false) }, idle, "", time.Time{}},
		{"protected, renewal confirmed: the next renewal later", protected,
			func(m *machine) state { m.succeeded(t0.Add(length/2), true); return m.observe(t0.Add(length/2), true) }, protected, actionRenew, t0.Add(length)},
		{"protected, renewals fail past the end: enable again", protected,
			func(m *machine) state { m.failed(t0.Add(length/2), false); return m.observe(t0.Add(length), true) }, unprotected, actionEnable, time.Time{}},
		{"protected, work ends: drop after the grace", protected,
			func(m *machine) state { return m.observe(t0.Add(time.Minute), false) }, lingering, actionDrop, t0.Add(time.Minute + grace)},
		{"lingering, work comes back within the grace: still protected, no call", lingering,
			func(m *machine) state { return m.observe(t0.Add(grace/2), true) }, protected, actionRenew, t0.Add(length / 2)},
		{"lingering, drop confirmed: idle", lingering,
			func(m *machine) state { m.succeeded(t0.Add(grace), false); return m.observe(t0.Add(grace), false) }, idle, "", time.Time{}},
		{"lingering, drop fails: retried after the backoff", lingering,
			func(m *machine) state { m.failed(t0.Add(grace), false); return m.observe(t0.Add(grace), false) }, lingering, actionDrop, time.Time{} /* retryAt */},
		{"unprotected, permanent refusals in a row: disabled", unprotected,
			func(m *machine) state {
				for range maxPermanentRefusals {
					m.failed(t0, true)
				}
				return m.observe(t0, true)
			}, disabled, "", time.Time{}},
		{"unprotected, a fault between refusals: the count starts again", unprotected,
			func(m *machine) state {
				for range maxPermanentRefusals - 1 {
					m.failed(t0, true)
				}
				m.failed(t0, false)
				m.failed(t0, true)
				return m.observe(t0, true)
			}, unprotected, actionEnable, time.Time{} /* retryAt */},
		{"disabled, work begins: nothing", disabled,
			func(m *machine) state { return m.observe(t0.Add(time.Hour), true) }, disabled, "", time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := at(tc.from)
			got := tc.event(m)
			require.Equal(t, tc.want, got)
			s := steps[got]
			require.Equal(t, tc.action, s.action)
			due := m.due(s)
			want := tc.due
			if s.action != "" && m.retryAt.After(want) {
				// After a failure the call waits for the backoff too (consumer.Backoff).
				want = m.retryAt
			}
			require.Equal(t, want, due)
			if got != lingering { // lingering holds protection or maybe holds it
				require.Equal(t, got == protected, m.held(), "held only while confirmed and not expired")
			}
		})
	}
}

// TestEveryStateHasAStep: the table covers every state, and a step with an action
// has a due time.
func TestEveryStateHasAStep(t *testing.T) {
	t.Parallel()
	require.Len(t, steps, int(disabled)+1)
	for st, s := range steps {
		require.Equal(t, s.action != "", s.due != nil, "state %d", st)
	}
}
