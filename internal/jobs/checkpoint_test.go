package jobs

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/taskbridge/taskbridge/internal/checkpoint/checkpointtest"
	"github.com/taskbridge/taskbridge/internal/consumer"
)

func TestCheckpointsLiveAsLongAsTheirTask(t *testing.T) {
	t.Parallel()
	store := checkpointtest.New()
	fail := true
	job := Job{Name: "walk", Run: func(ctx context.Context, tk *Task) (any, error) {
		last, ok, err := tk.LastCheckpoint(ctx)
		if err != nil {
			return nil, err
		}
		if !ok {
			last = []byte(`0`)
		}
		if err := tk.Checkpoint(ctx, 500); err != nil {
			return nil, err
		}
		if fail {
			fail = false
			return nil, errors.New("lost the worker") // a retry
		}
		return map[string]string{"from": string(last)}, nil
	}}
	rep := newFakeReporter()
	r, err := NewRouter(RouterConfig{Routes: map[string]Route{"q": {Job: "walk", DetailTypes: []string{"work"}}}, Checkpoints: store},
		[]Job{job}, rep, noBeats{}, nil, zaptest.NewLogger(t), NewMetrics(prometheus.NewRegistry()))
	require.NoError(t, err)
	body := envelope("work", map[string]any{"TaskToken": "tok", "executionArn": execARN})

	require.Error(t, r.Handle(context.Background(), consumer.Message{Queue: "q", ID: "m", Body: body, ReceiveCount: 1, MaxReceiveCount: 5}))
	require.Len(t, store.Objects(), 1, "a retry keeps the checkpoint")
	for key := range store.Objects() {
		require.True(t, strings.HasPrefix(key, "run-1/checkpoints/"), "under the execution's prefix: %s", key)
		require.NotContains(t, key, "tok", "the token is hashed")
	}
	require.NoError(t, r.Handle(context.Background(), consumer.Message{Queue: "q", ID: "m", Body: body, ReceiveCount: 2, MaxReceiveCount: 5}))
	require.JSONEq(t, `{"from":"500"}`, string(rep.succeeded["tok"]), "the next receive resumed from it")
	require.Empty(t, store.Objects(), "deleted once the task is done")
	require.Equal(t, 1, store.Calls().Puts, "the same checkpoint again is not stored again")
}

func TestNoCheckpointCallsForAJobThatUsesNone(t *testing.T) {
	t.Parallel()
	store := checkpointtest.New()
	r, err := NewRouter(RouterConfig{Routes: map[string]Route{"q": {Job: "job", DetailTypes: []string{"work"}}}, Checkpoints: store},
		[]Job{{Name: "job", Run: ok}}, newFakeReporter(), noBeats{}, nil, zaptest.NewLogger(t), NewMetrics(prometheus.NewRegistry()))
	require.NoError(t, err)
	body := envelope("work", map[string]any{"TaskToken": "tok", "executionArn": execARN})
	require.NoError(t, r.Handle(context.Background(), consumer.Message{Queue: "q", ID: "m", Body: body, ReceiveCount: 1, MaxReceiveCount: 5}))
	require.Zero(t, store.Calls(), "a first receive that used no checkpoint makes no call")
	require.NoError(t, r.Handle(context.Background(), consumer.Message{Queue: "q", ID: "m2", Body: body, ReceiveCount: 2, MaxReceiveCount: 5}))
	require.Equal(t, 1, store.Calls().Deletes, "a redelivery may have left one: deleted once done")
}

func TestCheckpointRefusals(t *testing.T) {
	t.Parallel()
	store := checkpointtest.New()
	tk := &Task{Token: "tok", ExecutionArn: execARN, env: &taskEnv{checkpoints: store}}
	err := tk.Checkpoint(context.Background(), strings.Repeat("x", MaxCheckpointBytes))
	kind, _, ok := KindOf(err)
	require.True(t, ok)
	require.Equal(t, "CheckpointTooLarge", kind)
	_, _, ok = KindOf(tk.Checkpoint(context.Background(), func() {}))
	require.True(t, ok, "a value JSON cannot encode is final")
	noExec := &Task{Token: "tok", env: &taskEnv{checkpoints: store}}
	require.ErrorContains(t, noExec.Checkpoint(context.Background(), 1), "not an execution ARN")
	require.ErrorContains(t, (&Task{Token: "tok", ExecutionArn: execARN}).Checkpoint(context.Background(), 1), "no data bucket")
	require.Zero(t, store.Calls().Puts)
}
