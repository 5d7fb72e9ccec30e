package main_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/stretchr/testify/require"
)

func exampleTopology(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "examples", name, "topology.json"))
	require.NoError(t, err)
	return p
}

// TestE2EExampleETLChain: files land → a batch → a Glue run → etl-success →
// startExecution of the publish state machine → its exec step (report.py) → the
// execution succeeds with the batch's figures.
func TestE2EExampleETLChain(t *testing.T) {
	st := newStack(t, "WORKER_TOPOLOGY="+exampleTopology(t, "etl-chain"), "WORKER_BATCH_WINDOW=2s", "WORKER_GLUE_POLL_INTERVAL=1s")
	require.Contains(t, st.cli("validate"), ": ok")
	st.startWorker()
	keys, _ := st.putFiles("incoming/day-1", 3)

	publish := st.out.StateMachines["publish"]
	var execs []sfntypes.ExecutionListItem
	eventually(t, 3*time.Minute, "the publish state machine ran and ended", func() bool {
		list, err := st.sfn.ListExecutions(context.Background(), &sfn.ListExecutionsInput{StateMachineArn: aws.String(publish)})
		require.NoError(t, err)
		execs = list.Executions
		return len(execs) == 1 && execs[0].Status != sfntypes.ExecutionStatusRunning
	})
	d, err := st.sfn.DescribeExecution(context.Background(), &sfn.DescribeExecutionInput{ExecutionArn: execs[0].ExecutionArn})
	require.NoError(t, err)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "%s: %s", aws.ToString(d.Error), aws.ToString(d.Cause))
	var out struct {
		BatchID   string `json:"batchId"`
		FileCount int    `json:"fileCount"`
		Report    struct {
			BatchID   string `json:"batchId"`
			FileCount int    `json:"fileCount"`
			Manifest  string `json:"manifest"`
			Published bool   `json:"published"`
		} `json:"Report"`
	}
	require.NoError(t, json.Unmarshal([]byte(aws.ToString(d.Output)), &out), aws.ToString(d.Output))
	require.Equal(t, len(keys), out.FileCount, "the execution's input is the etl-success detail")
	require.Equal(t, out.BatchID, out.Report.BatchID)
	require.Equal(t, len(keys), out.Report.FileCount)
	require.True(t, out.Report.Published)
	require.True(t, strings.HasPrefix(out.Report.Manifest, "s3://"+st.out.DataBucket+"/manifests/"))
	st.requireQueuesDrain(time.Minute)
}

// TestE2EExampleScheduledBatch: the nightly state machine's compute step is an exec
// job that runs longer than its queue's visibility timeout, with heartbeats.
func TestE2EExampleScheduledBatch(t *testing.T) {
	st := newStack(t, "WORKER_TOPOLOGY="+exampleTopology(t, "scheduled-batch"), "WORKER_HEARTBEAT_INTERVAL=5s")
	require.Contains(t, st.cli("validate"), ": ok")
	w := st.startWorker()
	// As the example's README starts it: 70 s, over the crunch queue's 60 s visibility
	// timeout; --wait fails unless the execution succeeds, and prints its output.
	printed := st.cli("start", "--state-machine", "nightly", "--input", `{"seconds": 70}`, "--wait")
	var out struct {
		Rows    int     `json:"rows"`
		Seconds float64 `json:"seconds"`
	}
	require.NoError(t, json.Unmarshal([]byte(printed), &out), printed)
	require.GreaterOrEqual(t, out.Seconds, 69.0)
	require.Positive(t, out.Rows)
	require.Equal(t, 1, strings.Count(w.Logs(), `"outcome":"success"`), "handled once, not redelivered")
}
