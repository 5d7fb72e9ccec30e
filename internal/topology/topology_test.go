package topology

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
)

func TestEmbeddedTopologyIsValidAndComplete(t *testing.T) {
	t.Parallel()
	topo, err := Load("")
	require.NoError(t, err)
	jobs := []string{"getMultiple", "processSingle", "postProcessSingle", "sideEffect", "postProcessAll", "finisher"}
	require.NoError(t, topo.Check(jobs, nil))
	for _, job := range jobs {
		found := false
		for _, q := range topo.Queues {
			found = found || q.Job == job
		}
		require.True(t, found, "a queue feeds job %s", job)
	}
	for _, sm := range topo.StateMachines {
		def, err := topo.Definition(sm, Names{Stack: "x"}.DefinitionVars("aws-cn"))
		require.NoError(t, err)
		require.True(t, json.Valid(def))
		require.Contains(t, string(def), `"EventBusName": "x"`)
		require.Contains(t, string(def), `"arn:aws-cn:states:::events:putEvents.waitForTaskToken"`)
	}
	steps, err := topo.Steps(Names{Stack: "x"}.DefinitionVars("aws"))
	require.NoError(t, err)
	require.Len(t, steps, 3)
	for _, s := range steps {
		require.True(t, s.WaitsForTask && s.Heartbeat, "%+v: waits for its token and declares HeartbeatSeconds", s)
	}
	q, _ := topo.Queue("processSingle")
	require.Equal(t, []string{"taskbridge.stepfunctions", "taskbridge.worker"}, topo.Sources(q, steps))
	f, _ := topo.Queue("finisher")
	require.Nil(t, topo.Sources(f, steps), "any producer may finish a task")
}

// validate reports every problem at once, each naming its queue or state machine.
func TestCheckReportsEveryProblem(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	write("good.asl.json", `{"StartAt":"A","States":{"A":{"Type":"Task","Resource":"arn:${partition}:states:::events:putEvents.waitForTaskToken","HeartbeatSeconds":60,
		"Parameters":{"Entries":[{"EventBusName":"${event_bus_name}","Source":"my.app","DetailType":"orphan","Detail":{"TaskToken.$":"$$.Task.Token"}}]},"End":true}}}`)
	write("broken.asl.json", "{\n  \"StartAt\": \"A\",\n  \"States\": {,}\n}")
	write("topology.json", `{
	  "source": "me",
	  "queues": [
	    {"name": "a", "job": "known", "detailTypes": ["x"]},
	    {"name": "a", "job": "known", "detailTypes": ["y"]},
	    {"name": "b", "job": "nobody", "detailTypes": ["z"]},
	    {"name": "c", "job": "known"},
	    {"name": "d", "job": "known", "exec": {"command": ["true"]}, "detailTypes": ["w"]},
	    {"name": "e", "exec": {"command": ["./missing.sh"]}, "detailTypes": ["v"]},
	    {"name": "f", "http": {"url": "ftp://x"}, "detailTypes": ["u"]},
	    {"name": "g", "startExecution": {"stateMachine": "nope"}, "detailTypes": ["t"]},
	    {"name": "h", "detailTypes": ["s"]}
	  ],
	  "stateMachines": [
	    {"name": "good", "definition": "good.asl.json"},
	    {"name": "missing", "definition": "missing.asl.json"},
	    {"name": "broken", "definition": "broken.asl.json"}
	  ]
	}`)
	topo, err := Load(filepath.Join(dir, "topology.json"))
	require.NoError(t, err)
	// The kinds' own settings are their packages' (internal/cli passes each kind's
	// Config.Validate); each error of the check becomes one line under its queue.
	kinds := func(_ *Topology, q Queue) error {
		switch q.Name {
		case "e":
			return errors.Join(errors.New("command ./missing.sh: no such file"), errors.New("timeout -1s is negative"))
		case "f":
			return errors.New("url ftp://x: scheme must be http or https")
		}
		return nil
	}
	err = topo.Check([]string{"known"}, kinds)
	require.Error(t, err)
	for _, want := range []string{
		`queue "a": duplicate queue name`,
		`queue "b": job "nobody" is not registered`,
		`queue "c": nothing routes to it`,
		`queue "d": sets more than one of`,
		`queue "e": exec.command ./missing.sh: no such file`,
		`queue "e": exec.timeout -1s is negative`,
		`queue "f": http.url ftp://x: scheme must be http or https`,
		`queue "g": startExecution.stateMachine "nope" is not a state machine`,
		`queue "h": says nothing to run`,
		`state machine "good": step A puts detail type "orphan", which no queue takes`,
		`state machine "missing": read definition`,
		`state machine "broken": broken.asl.json is not valid JSON: line 3, column`,
	} {
		require.Contains(t, err.Error(), want, "want %q in:\n%s", want, err)
	}
}

func TestLoadSaysWhereTheFileIsWrong(t *testing.T) {
	t.Parallel()
	_, err := Parse([]byte("{\n  \"source\": \"x\",\n  \"queues\": [}\n"), fstest.MapFS{})
	require.ErrorContains(t, err, "line 3, column")
	_, err = Parse([]byte(`{"source":"x","queus":[]}`), fstest.MapFS{})
	require.ErrorContains(t, err, `line 1, column 15: unknown field "queus"`)
	_, err = Parse([]byte("{\n  \"source\": \"x\",\n  \"queues\": [\n    {\"name\": \"greet\", \"job\": \"greet\",\n     \"concurrancy\": 3}\n  ]\n}"), fstest.MapFS{})
	require.ErrorContains(t, err, `line 5, column 6: queue "greet": unknown field "concurrancy"`, "a typo names its queue and line")
	_, err = Parse([]byte(`{"source":"x","queues":[{"name":"a","exec":{"command":["x"],"timeout":"soon"}}]}`), fstest.MapFS{})
	require.ErrorContains(t, err, "soon")
	// A duration that does not read names its queue and line like the rest (issue 29.6).
	_, err = Parse([]byte("{\n  \"source\": \"x\",\n  \"queues\": [\n    {\"name\": \"a\", \"job\": \"a\"},\n    {\"name\": \"slow\", \"exec\": {\"command\": [\"x\"],\n      \"timeout\": \"30 minute\"}}\n  ]\n}"), fstest.MapFS{})
	require.ErrorContains(t, err, `line 6, column 18: queue "slow": "30 minute" is not a duration`)
}

func TestDefaultsApply(t *testing.T) {
	t.Parallel()
	topo, err := Parse([]byte(`{"source":"x","queues":[{"name":"a","job":"j","detailTypes":["d"]}]}`), fstest.MapFS{})
	require.NoError(t, err)
	q := topo.Queues[0]
	require.Equal(t, [3]int{DefaultConcurrency, DefaultVisibilityTimeout, DefaultMaxReceiveCount}, [3]int{q.Concurrency, q.VisibilityTimeoutSeconds, q.MaxReceiveCount})
	require.NoError(t, topo.Check([]string{"j"}, nil))
}

func TestDefinitionWithoutAValueIsAnError(t *testing.T) {
	t.Parallel()
	topo, err := Load("")
	require.NoError(t, err)
	_, err = topo.Definition(topo.StateMachines[0], map[string]string{"partition": "aws"})
	require.ErrorContains(t, err, "${event_bus_name}")
}

func TestPartition(t *testing.T) {
	t.Parallel()
	for region, want := range map[string]string{"us-east-1": "aws", "cn-north-1": "aws-cn", "us-gov-west-1": "aws-us-gov", "eu-west-1": "aws"} {
		require.Equal(t, want, Partition(region))
	}
	require.Equal(t, "arn:aws:states:us-east-1:123:stateMachine:x", StateMachineARN("aws", "us-east-1", "123", "x"))
}

// validate catches the entries EventBridge's PutEvents would refuse when the step
// runs (the tutorial's ASL once had no Source: `validate` said ok and the execution
// failed with "Source is a required argument").
func TestCheckRefusesEntriesPutEventsRefuses(t *testing.T) {
	t.Parallel()
	step := func(name, params string) string {
		return `"` + name + `":{"Type":"Task","Resource":"arn:${partition}:states:::events:putEvents.waitForTaskToken","HeartbeatSeconds":60,"Parameters":` + params + `,"End":true}`
	}
	cases := []struct {
		name, params, want string
	}{
		{"no source", `{"Entries":[{"DetailType":"greet","Detail":{"TaskToken.$":"$$.Task.Token"}}]}`, "step A: entry 1 has no Source: PutEvents refuses it"},
		{"no detail type", `{"Entries":[{"Source":"my.app","Detail":{"TaskToken.$":"$$.Task.Token"}}]}`, "entry 1 has no DetailType"},
		{"no detail", `{"Entries":[{"Source":"my.app","DetailType":"greet"}]}`, "entry 1 has no Detail"},
		{"unknown field", `{"Entries":[{"Source":"my.app","DetailType":"greet","Detail":{},"Sourse":"x"}]}`, `entry 1 has "Sourse", which PutEvents does not take`},
		{"aws source", `{"Entries":[{"Source":"aws.s3","DetailType":"greet","Detail":{}}]}`, `source "aws.s3" starts with "aws."`},
		{"no entries", `{"Entries":[]}`, "has 0 entries"},
		{"entries missing", `{"Foo":1}`, "step A: has no Entries"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			topo := topologyWith(t, `{"StartAt":"A","States":{`+step("A", tc.params)+`}}`)
			err := topo.Check([]string{"greet"}, nil)
			require.ErrorContains(t, err, `state machine "sm": `)
			require.ErrorContains(t, err, tc.want)
		})
	}
	for name, params := range map[string]string{
		"paths":         `{"Entries":[{"Source.$":"$.src","DetailType":"greet","Detail.$":"$","EventBusName":"b"}]}`,
		"computed list": `{"Entries.$":"$.entries"}`,
		"default bus":   `{"Entries":[{"Source":"my.app","DetailType":"greet","Detail":{"TaskToken.$":"$$.Task.Token"}}]}`,
	} {
		t.Run(name+" pass", func(t *testing.T) {
			t.Parallel()
			require.NoError(t, topologyWith(t, `{"StartAt":"A","States":{`+step("A", params)+`}}`).Check([]string{"greet"}, nil))
		})
	}
}

// topologyWith is a topology of one queue (job greet, detail type greet) and one
// state machine "sm" with the ASL definition def.
func topologyWith(t *testing.T, def string) *Topology {
	t.Helper()
	topo, err := Parse([]byte(`{"source":"me","queues":[{"name":"greet","job":"greet","detailTypes":["greet"]}],
		"stateMachines":[{"name":"sm","definition":"sm.asl.json"}]}`), fstest.MapFS{"sm.asl.json": {Data: []byte(def)}})
	require.NoError(t, err)
	return topo
}
