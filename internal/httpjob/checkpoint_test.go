package httpjob_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/checkpoint/checkpointtest"
	"github.com/taskbridge/taskbridge/internal/httpjob"
)

// Issue 30: the last checkpoint goes out in Taskbridge-Checkpoint; the one of the
// response is stored, from a retry's 503 too, and not JSON is not stored.
func TestCheckpointHeaders(t *testing.T) {
	b := setup(t)
	var got []string
	answers := []struct {
		status     int
		checkpoint string
	}{{503, `{"next":300}`}, {503, `{"next":`}, {200, `{"next":1000}`}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get(httpjob.CheckpointHeader))
		a := answers[len(got)-1]
		w.Header().Set(httpjob.CheckpointHeader, a.checkpoint)
		w.WriteHeader(a.status)
		_, _ = w.Write([]byte(`{}`))
	}))
	t.Cleanup(srv.Close)
	j := b.job(t, httpjob.Config{URL: srv.URL, Checkpoint: true})
	store := checkpointtest.New()
	for range answers {
		tk := task() // a new receive of the same task
		tk.UseCheckpoints(store)
		_, _ = j.Run(context.Background(), tk)
	}
	require.Equal(t, []string{"", `{"next":300}`, `{"next":300}`}, got)
	key, err := task().CheckpointKey()
	require.NoError(t, err)
	stored, _ := store.Object(key)
	require.JSONEq(t, `{"next":1000}`, string(stored))
}

func TestCheckpointHeaderIsTheWorkers(t *testing.T) {
	t.Parallel()
	err := httpjob.Config{URL: "http://127.0.0.1:1", Headers: map[string]string{"taskbridge-checkpoint": "x"}}.Validate()
	require.ErrorContains(t, err, "Taskbridge-Checkpoint is the worker's")
}
