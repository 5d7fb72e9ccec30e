package httpjob_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/httpjob"
)

// memStore is the data bucket's checkpoints, as S3 answers.
type memStore struct {
	mu   sync.Mutex
	objs map[string][]byte
}

func (m *memStore) Put(_ context.Context, key string, body []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objs[key] = append([]byte(nil), body...)
	return nil
}

func (m *memStore) Get(_ context.Context, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objs[key]
	return b, ok, nil
}

func (m *memStore) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objs, key)
	return nil
}

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
	store := &memStore{objs: map[string][]byte{}}
	for range answers {
		tk := task() // a new receive of the same task
		tk.UseCheckpoints(store)
		_, _ = j.Run(context.Background(), tk)
	}
	require.Equal(t, []string{"", `{"next":300}`, `{"next":300}`}, got)
	key, err := task().CheckpointKey()
	require.NoError(t, err)
	require.JSONEq(t, `{"next":1000}`, string(store.objs[key]))
}

func TestCheckpointHeaderIsTheWorkers(t *testing.T) {
	t.Parallel()
	err := httpjob.Config{URL: "http://127.0.0.1:1", Headers: map[string]string{"taskbridge-checkpoint": "x"}}.Validate()
	require.ErrorContains(t, err, "Taskbridge-Checkpoint is the worker's")
}
