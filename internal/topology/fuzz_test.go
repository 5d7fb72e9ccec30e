package topology

import (
	"testing"
	"testing/fstest"
)

// FuzzParseAndCheck: a topology file is outside input; any bytes either fail to
// parse with an error or parse into something Check can judge, never a panic.
func FuzzParseAndCheck(f *testing.F) {
	f.Add([]byte(`{"source":"x","queues":[{"name":"a","job":"j","detailTypes":["d"]}],"stateMachines":[{"name":"s","definition":"s.json"}]}`))
	f.Add([]byte(`{"source":"x","queues":[{"name":"a","exec":{"command":["./x"],"timeout":"1m"},"http":{"url":"http://h"}}]}`))
	f.Add([]byte(`{"source":"x","queues":[{"name":"l","s3Batch":{"maxFiles":-1,"window":"-1s"}}]}`))
	f.Add([]byte(`{"queues":[{"name":"` + "\x00" + `"}]}`))
	f.Add([]byte(`[]`))
	f.Add([]byte("{\"queues\":[{\"name\":\"a\",\"exec\":{\"command\":[\"x\"],\"timeout\":\"30 minute\"}},{\"name\":\"b\",\"s3Batch\":{\"window\":\"30 minute\"}}]}")) // a duration that does not read, twice
	fsys := fstest.MapFS{"s.json": {Data: []byte(`{"StartAt":"A","States":{"A":{"Type":"Task","Resource":"arn:aws:states:::events:putEvents","Parameters":{"Entries":[{"DetailType":"d","Source":"s"}]},"End":true}}}`)}}
	f.Fuzz(func(t *testing.T, b []byte) {
		topo, err := Parse(b, fsys)
		if err != nil {
			return
		}
		_ = topo.Check([]string{"j"}, nil)
		steps, err := topo.Steps(map[string]string{"event_bus_name": "b", "partition": "aws"})
		if err != nil {
			return
		}
		for _, q := range topo.Queues {
			_ = topo.Sources(q, steps)
		}
	})
}

// FuzzASLSteps: ASL documents of any shape yield steps or an error, never a panic.
func FuzzASLSteps(f *testing.F) {
	f.Add([]byte(`{"StartAt":"M","States":{"M":{"Type":"Map","ItemProcessor":{"States":{"T":{"Type":"Task","Resource":"arn:aws:states:::events:putEvents.waitForTaskToken","Parameters":{"Entries":[{"DetailType":"x","Source":"y"}]}}}}}}}`))
	f.Add([]byte(`{"States":{"P":{"Type":"Parallel","Branches":[{"States":{}},{"States":{"T":{"Type":"Task","Resource":"arn:aws:states:::events:putEvents","Arguments":{"Entries":[{"DetailType":1}]}}}}]}}}`))
	f.Add([]byte(`{"States":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		steps, err := aslSteps("fuzz", b)
		if err == nil {
			for _, s := range steps {
				if s.StateMachine != "fuzz" {
					t.Fatalf("step of another state machine: %+v", s)
				}
			}
		}
	})
}
