package promtest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func write(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

func TestQueriesReadsPanelsRowsAndRules(t *testing.T) {
	t.Parallel()
	dash := write(t, "d.json", `{"panels": [
	  {"type": "row", "title": "collapsed", "panels": [
	    {"type": "timeseries", "title": "inner", "targets": [{"refId": "A", "expr": "rate(x_total[$__rate_interval])"}]}]},
	  {"type": "text", "title": "notes"},
	  {"type": "stat", "title": "outer", "targets": [{"refId": "A", "expr": "up"}, {"refId": "B", "expr": "sum(y)"}]}]}`)
	rules := write(t, "r.yml", "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n      - record: job:up:sum\n        expr: sum by (job) (up)\n")
	qs, err := Queries(dash, rules)
	require.NoError(t, err)
	require.Equal(t, []Query{
		{Source: `dashboard "inner" A`, Dashboard: true, Expr: "rate(x_total[1m])"},
		{Source: `dashboard "outer" A`, Dashboard: true, Expr: "up"},
		{Source: `dashboard "outer" B`, Dashboard: true, Expr: "sum(y)"},
		{Source: "rule A", Expr: "up == 0"},
		{Source: "rule job:up:sum", Expr: "sum by (job) (up)"},
	}, qs)
}

func TestQueriesRejectsFilesThatAreNotWhatTheyClaim(t *testing.T) {
	t.Parallel()
	okDash := write(t, "ok.json", `{"panels": [{"type": "timeseries", "title": "p", "targets": [{"refId": "A", "expr": "up"}]}]}`)
	okRules := write(t, "ok.yml", "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n")
	for _, tc := range []struct {
		name, dash, rules, wantErr string
	}{
		{name: "missing dashboard", dash: filepath.Join(t.TempDir(), "none.json"), wantErr: "read dashboard"},
		{name: "dashboard not JSON", dash: write(t, "bad.json", "{"), wantErr: "dashboard"},
		{name: "dashboard without queries", dash: write(t, "empty.json", `{"panels": []}`), wantErr: "has no queries"},
		{name: "panel without targets", dash: write(t, "nt.json", `{"panels": [{"type": "timeseries", "title": "lonely"}]}`), wantErr: `panel "lonely" has no query`},
		{name: "target without expr", dash: write(t, "ne.json", `{"panels": [{"type": "timeseries", "title": "p", "targets": [{"refId": "A"}]}]}`), wantErr: "target A has no expr"},
		{name: "missing rules", dash: okDash, rules: filepath.Join(t.TempDir(), "none.yml"), wantErr: "read rules"},
		{name: "rules not YAML", dash: okDash, rules: write(t, "bad.yml", "groups: [\n"), wantErr: "rules"},
		{name: "no rules", rules: write(t, "none.yml", "groups: []\n"), wantErr: "has no rules"},
		{name: "rule without expr", rules: write(t, "ne.yml", "groups:\n  - name: g\n    rules:\n      - alert: Silent\n"), wantErr: "rule Silent has no expr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Queries(tc.dash, tc.rules)
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
	qs, err := Queries(okDash, okRules)
	require.NoError(t, err)
	require.Len(t, qs, 2)
}
