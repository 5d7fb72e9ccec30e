package execjob_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/execjob"
	"github.com/taskbridge/taskbridge/internal/jobs"
)

// memStore is the data bucket's checkpoints, as S3 answers: a missing key is ok
// false on Get and no error on Delete.
type memStore struct {
	mu   sync.Mutex
	objs map[string][]byte
	puts []string
}

func (m *memStore) Put(_ context.Context, key string, body []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objs[key] = append([]byte(nil), body...)
	m.puts = append(m.puts, string(body))
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

var _ jobs.CheckpointStore = (*memStore)(nil)

// Issue 30: the command reads the last checkpoint from TASKBRIDGE_CHECKPOINT_FILE,
// and what it writes there is stored while it runs and when it ends; a file being
// written (not JSON yet) is not stored.
func TestCheckpointFileRoundTrip(t *testing.T) {
	b := setup(t)
	store := &memStore{objs: map[string][]byte{}}
	tk := task()
	tk.UseCheckpoints(store)
	key, err := tk.CheckpointKey()
	require.NoError(t, err)
	store.objs[key] = []byte(`{"next":500}`)

	name := b.script(t, "count.sh", `cat > /dev/null
f="$TASKBRIDGE_CHECKPOINT_FILE"
first=$(cat "$f")
printf '{"next":' > "$f"  # half a document: not stored
sleep 0.3
echo '{"next":600}' > "$f.tmp" && mv "$f.tmp" "$f"
sleep 0.3
echo '{"next":700}' > "$f"
echo "{\"first\": $first}"`)
	j := b.job(t, execjob.Config{Command: []string{"./" + name}, Checkpoint: true, CheckpointPoll: 50 * time.Millisecond})
	out, err := j.Run(context.Background(), tk)
	require.NoError(t, err)
	require.JSONEq(t, `{"first":{"next":500}}`, string(out.(json.RawMessage)))
	require.JSONEq(t, `{"next":700}`, string(store.objs[key]), "the last write is stored when the command ends")
	require.Equal(t, []string{`{"next":600}`, `{"next":700}`}, store.puts)
}

func TestNoCheckpointFileWithoutTheSetting(t *testing.T) {
	b := setup(t)
	name := b.script(t, "env.sh", `cat > /dev/null; echo "{\"file\": \"$TASKBRIDGE_CHECKPOINT_FILE\"}"`)
	out, err := b.job(t, execjob.Config{Command: []string{"./" + name}}).Run(context.Background(), task())
	require.NoError(t, err)
	require.JSONEq(t, `{"file":""}`, string(out.(json.RawMessage)))
}
