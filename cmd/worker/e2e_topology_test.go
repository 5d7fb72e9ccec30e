package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awstest"
)

// cookiesTopology writes the cookies topology (deploy/topology.json) as edit
// changes it, decoded as JSON, into a file of its own and returns the file's path;
// the cookies state machine keeps its ASL (deploy/asl/cookies.asl.json).
func cookiesTopology(t *testing.T, edit func(topo map[string]any)) string {
	t.Helper()
	deploy := filepath.Join(awstest.ModuleRoot(t), "deploy")
	b, err := os.ReadFile(filepath.Join(deploy, "topology.json"))
	require.NoError(t, err)
	var topo map[string]any
	require.NoError(t, json.Unmarshal(b, &topo))
	edit(topo)
	topo["stateMachines"] = []any{map[string]any{"name": "cookies", "definition": filepath.Join(deploy, "asl", "cookies.asl.json")}}
	out, err := json.Marshal(topo)
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "topology.json")
	require.NoError(t, os.WriteFile(p, out, 0o644))
	return p
}
