package topology

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEmbeddedTopologyIsValidAndComplete(t *testing.T) {
	t.Parallel()
	topo, err := Load()
	require.NoError(t, err)
	for _, job := range []string{"getMultiple", "processSingle", "postProcessSingle", "sideEffect", "postProcessAll", "finisher", "batch"} {
		found := false
		for _, q := range topo.Queues {
			found = found || q.Job == job
		}
		require.True(t, found, "a queue feeds job %s", job)
	}
	for _, sm := range topo.StateMachines {
		def, err := topo.Definition(sm, Names{Stack: "x"}.DefinitionVars())
		require.NoError(t, err)
		require.True(t, json.Valid(def))
		require.Contains(t, string(def), `"EventBusName": "x"`)
	}
}

// Every detail type the ASL files put on the bus has a queue in the topology.
func TestEveryDetailTypeOfTheStateMachinesIsRouted(t *testing.T) {
	t.Parallel()
	topo, err := Load()
	require.NoError(t, err)
	routed := map[string]bool{}
	for _, q := range topo.Queues {
		for _, dt := range q.DetailTypes {
			routed[dt] = true
		}
	}
	for _, sm := range topo.StateMachines {
		def, err := topo.Definition(sm, Names{Stack: "x"}.DefinitionVars())
		require.NoError(t, err)
		for _, part := range strings.Split(string(def), `"DetailType": "`)[1:] {
			dt := part[:strings.IndexByte(part, '"')]
			require.True(t, routed[dt], "detail type %s of %s reaches a queue", dt, sm.Name)
		}
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := Parse([]byte(`{"queues":[{"name":"a"},{"name":"a","job":"j","detailTypes":["x"],"concurrency":1,"visibilityTimeoutSeconds":0,"maxReceiveCount":1}]}`))
	require.Error(t, err)
	for _, want := range []string{"source is empty", "job is empty", "routes nothing", "duplicate name", "visibilityTimeoutSeconds"} {
		require.Contains(t, err.Error(), want)
	}
	_, err = Parse([]byte(`not json`))
	require.ErrorContains(t, err, "parse topology")
}

func TestDefinitionWithoutAValueIsAnError(t *testing.T) {
	t.Parallel()
	topo, err := Load()
	require.NoError(t, err)
	_, err = topo.Definition(topo.StateMachines[0], nil)
	require.ErrorContains(t, err, "${event_bus_name}")
}
