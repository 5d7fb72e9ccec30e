package topology

import (
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/deploy"
)

func TestWarningsFlagWaitsThatCanHang(t *testing.T) {
	t.Parallel()
	asl := `{"StartAt":"A","States":{
		"A":{"Type":"Task","Resource":"arn:aws:states:::events:putEvents.waitForTaskToken","Parameters":{"Entries":[{"DetailType":"d","Source":"s","Detail":{"TaskToken.$":"$$.Task.Token"}}]},"Next":"B"},
		"B":{"Type":"Task","Resource":"arn:aws:states:::events:putEvents.waitForTaskToken","TimeoutSeconds":60,"Parameters":{"Entries":[{"DetailType":"d","Source":"s"}]},"Next":"C"},
		"C":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage.waitForTaskToken","HeartbeatSecondsPath":"$.hb","Next":"M"},
		"M":{"Type":"Map","ItemProcessor":{"StartAt":"I","States":{"I":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage.waitForTaskToken","End":true}}},"Next":"D"},
		"D":{"Type":"Task","Resource":"arn:aws:states:::events:putEvents","Parameters":{"Entries":[{"DetailType":"d","Source":"s"}]},"End":true}}}`
	topo, err := Parse([]byte(`{"source":"s","queues":[{"name":"q","job":"j","detailTypes":["d"]}],"stateMachines":[{"name":"sm","definition":"sm.json"}]}`),
		fstest.MapFS{"sm.json": {Data: []byte(asl)}})
	require.NoError(t, err)
	w := topo.Warnings(nil)
	require.Len(t, w, 2, "%q", w)
	require.Contains(t, w[0], "step A waits for a task token")
	require.Contains(t, w[1], "step M/I waits for a task token")
}

func TestWarningsFlagQueuesNoPanelShows(t *testing.T) {
	t.Parallel()
	topo, err := Parse([]byte(`{"source":"s","queues":[{"name":"orders","job":"j"},{"name":"billing","job":"j"},{"name":"mail","job":"j"}]}`), fstest.MapFS{})
	require.NoError(t, err)
	dash := `{"panels":[
		{"type":"row","panels":[{"targets":[{"expr":"sum by (queue) (rate(worker_messages_received_total{queue=~\"orders|bill.*\"}[5m]))"}]}]},
		{"targets":[{"expr":"sum by (job) (rate(worker_jobs_total[5m]))"}]},
		{"targets":[{"expr":"max by (queue) (worker_dlq_messages{queue!=\"mail\"})"}]}]}`
	w := topo.Warnings(map[string][]byte{"d.json": []byte(dash)})
	require.Equal(t, []string{`queue "mail": no panel of dashboard d.json shows it (no query groups by queue with matchers that let it through)`}, w)

	// The shipped dashboard draws every queue, whatever its name.
	shipped, err := deploy.Files.ReadFile("observability/grafana/dashboards/taskbridge.json")
	require.NoError(t, err)
	require.Empty(t, topo.Warnings(map[string][]byte{"taskbridge.json": shipped}))
	require.NotEmpty(t, topo.Warnings(map[string][]byte{"x.json": []byte(`{"panels":[]}`)}))
}
