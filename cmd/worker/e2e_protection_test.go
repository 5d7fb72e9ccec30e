package main_test

import (
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/ecsagenttest"
)

// TestE2EScaleInProtectionWhileAJobRuns (issue 19 part 1): bin/worker with
// ECS_AGENT_URI at a stand-in of the ECS agent holds task scale-in protection while
// an exec job runs, and drops it once idle.
func TestE2EScaleInProtectionWhileAJobRuns(t *testing.T) {
	rig := newKindsRig(t)
	agent := ecsagenttest.New()
	srv := httptest.NewServer(agent)
	t.Cleanup(srv.Close)
	st := newStack(t, "WORKER_TOPOLOGY="+rig.topology(), "SLOW_SECONDS=8", "WORKER_ROLES=jobs")
	w := st.startWorker("ECS_AGENT_URI="+ecsagenttest.URI(srv.URL, "task-1"), "WORKER_TASK_PROTECTION_GRACE=1s")
	require.False(t, agent.Protected("task-1"), "idle: not protected")

	arn := st.start("slow", `{}`)
	eventually(t, time.Minute, "the command started", func() bool {
		_, err := os.Stat(rig.starts)
		return err == nil
	})
	// Taken at the receipt, asynchronously: by now, or within moments.
	eventually(t, 10*time.Second, "protected while the job runs", func() bool { return agent.Protected("task-1") })
	_, err := os.ReadFile(rig.starts)
	require.NoError(t, err)
	require.Equal(t, 1.0, w.metric("worker_task_protection_held"))

	d := st.waitExecution(arn, 2*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "%s: %s", aws.ToString(d.Error), aws.ToString(d.Cause))
	eventually(t, 30*time.Second, "protection dropped once idle", func() bool { return !agent.Protected("task-1") })
	updates := agent.Updates()
	require.True(t, updates[0].Enabled)
	require.Equal(t, 15, updates[0].Minutes, "WORKER_TASK_PROTECTION_MINUTES' default")
	require.False(t, updates[len(updates)-1].Enabled)
	require.Zero(t, agent.Refused(), "the worker sent nothing the agent refuses")
	require.Equal(t, 0.0, w.metric("worker_task_protection_held"))
}
