package main_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awslimit"
)

// bigMain is a user's program whose jobs move payloads that only fit since AWS's
// 1 MB raise (2026-01-29): grow hands on an event of the asked size, relay takes it
// in and puts it back out as another event, shrink takes that in and returns an
// output of the same size, which Step Functions (256 KiB) gets as a claim check.
const bigMain = `package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/taskbridge/taskbridge"
)

type blob struct {
	Size int    ` + "`json:\"size\"`" + `
	Blob string ` + "`json:\"blob\"`" + `
}

func main() {
	jobs := taskbridge.NewRegistry()
	jobs.Handle("grow", func(ctx context.Context, t *taskbridge.Task) (any, error) {
		var in blob
		if err := t.Decode(&in); err != nil {
			return nil, err
		}
		return nil, t.HandOff(ctx, "big", blob{Size: in.Size, Blob: strings.Repeat("x", in.Size)})
	})
	jobs.Handle("relay", func(ctx context.Context, t *taskbridge.Task) (any, error) {
		var in blob
		if err := t.Decode(&in); err != nil {
			return nil, err
		}
		return nil, t.HandOff(ctx, "big2", in)
	})
	jobs.Handle("shrink", func(ctx context.Context, t *taskbridge.Task) (any, error) {
		var in blob
		if err := t.Decode(&in); err != nil {
			return nil, err
		}
		if len(in.Blob) != in.Size {
			return nil, fmt.Errorf("got %d bytes of %d", len(in.Blob), in.Size)
		}
		return map[string]any{"received": len(in.Blob), "blob": in.Blob}, nil
	})
	taskbridge.Main(jobs)
}
`

const bigTopology = `{
  "source": "big.worker",
  "queues": [
    {"name": "grow", "job": "grow", "detailTypes": ["grow"]},
    {"name": "relay", "job": "relay", "detailTypes": ["big"]},
    {"name": "shrink", "job": "shrink", "detailTypes": ["big2"]}
  ],
  "stateMachines": [{"name": "big", "definition": "asl/big.asl.json"}]
}`

const bigASL = `{
  "StartAt": "Grow",
  "States": {
    "Grow": {
      "Type": "Task",
      "Resource": "arn:${partition}:states:::events:putEvents.waitForTaskToken",
      "Parameters": {"Entries": [{"EventBusName": "${event_bus_name}", "Source": "big.app", "DetailType": "grow",
        "Detail": {"TaskToken.$": "$$.Task.Token", "executionArn.$": "$$.Execution.Id", "size.$": "$.size"}}]},
      "TimeoutSeconds": 300,
      "End": true
    }
  }
}`

// TestE2EOneMegabytePayloads: on moto, an event of 900 KiB goes out of one job,
// through EventBridge and SQS into another job and back out as an event, into a
// third whose 900 KiB output reaches Step Functions as a claim check; an event of
// 1 MiB + 1 byte fails its task at once with EventTooLarge and is never retried.
func TestE2EOneMegabytePayloads(t *testing.T) {
	dir, bin := buildProgram(t, "example.com/big", map[string]string{
		"main.go": bigMain, "topology.json": bigTopology, "asl/big.asl.json": bigASL,
	})
	st := newStackWith(t, bin, "WORKER_TOPOLOGY="+filepath.Join(dir, "topology.json"))
	w := st.startWorker()
	start := func(size int) string {
		return strings.TrimSpace(st.cli("start", "--state-machine", "big", "--input", `{"size": `+strconv.Itoa(size)+`}`))
	}
	const size = 900 << 10
	fits := start(size)
	// The detail of "big" is {"size":N,"blob":"…"} plus the token and the execution
	// ARN that HandOff adds: 1 MiB of blob alone is over EventBridge's limit.
	tooBig := start(awslimit.EventBridgeEntryBytes + 1)

	d := st.waitExecution(fits, 3*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "%s: %s", aws.ToString(d.Error), aws.ToString(d.Cause))
	output := aws.ToString(d.Output)
	require.LessOrEqual(t, len(output), awslimit.StepFunctionsPayloadBytes)
	var pointer struct {
		ClaimCheck string `json:"claimCheck"`
		Size       int    `json:"size"`
	}
	require.NoError(t, json.Unmarshal([]byte(output), &pointer), output)
	bucket, key, ok := strings.Cut(strings.TrimPrefix(pointer.ClaimCheck, "s3://"), "/")
	require.True(t, ok, output)
	require.Equal(t, st.out.DataBucket, bucket)
	obj, err := st.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	require.NoError(t, err)
	var got struct {
		Received int    `json:"received"`
		Blob     string `json:"blob"`
	}
	require.NoError(t, json.NewDecoder(obj.Body).Decode(&got))
	obj.Body.Close()
	require.Equal(t, size, got.Received, "shrink got the whole 900 KiB event")
	require.Len(t, got.Blob, size)
	t.Logf("a %d byte event went through relay and out again; the %d byte output went to Step Functions as %s", size, pointer.Size, output)

	d = st.waitExecution(tooBig, 2*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusFailed, d.Status)
	require.Equal(t, "grow.EventTooLarge", aws.ToString(d.Error))
	require.Contains(t, w.Logs(), "over the 1048576 byte limit", "the log says why")
	st.requireQueuesDrain(time.Minute)
	require.NotContains(t, w.Logs(), `"outcome":"retry"`, "nothing was retried")
}
