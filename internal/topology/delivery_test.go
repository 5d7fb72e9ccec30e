package topology

import (
	"cmp"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
)

func TestEventDelivery(t *testing.T) {
	t.Parallel()
	parse := func(t *testing.T, extra, queue string) *Topology {
		t.Helper()
		topo, err := Parse([]byte(`{"source":"s","queues":[{"name":"`+queue+`","job":"j","detailTypes":["d"]}]`+extra+`}`), fstest.MapFS{})
		require.NoError(t, err)
		return topo
	}
	for _, tc := range []struct {
		name, extra, queue string
		attempts, age      int
		deadLetters        bool
		problems           []string
		warns              bool
	}{
		{name: "defaults", attempts: 185, age: 3600, deadLetters: true},
		{name: "set", extra: `,"eventDelivery":{"retryAttempts":0,"maxEventAgeSeconds":60}`, attempts: 0, age: 60, deadLetters: true},
		{name: "no dead letters", extra: `,"eventDelivery":{"deadLetter":false}`, attempts: 185, age: 3600, warns: true},
		{name: "out of range", extra: `,"eventDelivery":{"retryAttempts":186,"maxEventAgeSeconds":86401}`, attempts: 186, age: 86401, deadLetters: true,
			problems: []string{"retryAttempts must be 0..185", "maxEventAgeSeconds must be 60..86400"}},
		{name: "reserved queue name", queue: EventsDLQName, attempts: 185, age: 3600, deadLetters: true,
			problems: []string{`queue "eventbridge": the name is reserved`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			topo := parse(t, tc.extra, cmp.Or(tc.queue, "q"))
			attempts, age := topo.Retry()
			require.Equal(t, tc.attempts, attempts)
			require.Equal(t, tc.age, age)
			require.Equal(t, tc.deadLetters, topo.DeadLetters())
			err := topo.Check([]string{"j"}, nil)
			if len(tc.problems) == 0 {
				require.NoError(t, err)
			}
			for _, p := range tc.problems {
				require.ErrorContains(t, err, p)
			}
			w := topo.Warnings(nil)
			if tc.warns {
				require.Len(t, w, 1)
				require.Contains(t, w[0], "deadLetter is false")
			} else {
				require.Empty(t, w)
			}
		})
	}
	require.Equal(t, "x-eventbridge-dlq", Names{Stack: "x"}.EventsDLQ())
}
