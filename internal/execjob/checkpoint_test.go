package execjob_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/checkpoint/checkpointtest"
	"github.com/taskbridge/taskbridge/internal/execjob"
)

// Issue 30: the command reads the last checkpoint from TASKBRIDGE_CHECKPOINT_FILE,
// and what it writes there is stored while it runs and when it ends; a file being
// written (not JSON yet) is not stored.
func TestCheckpointFileRoundTrip(t *testing.T) {
	b := setup(t)
	store := checkpointtest.New()
	tk := task()
	tk.UseCheckpoints(store)
	key, err := tk.CheckpointKey()
	require.NoError(t, err)
	store.Seed(key, []byte(`{"next":500}`))

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
	stored, _ := store.Object(key)
	require.JSONEq(t, `{"next":700}`, string(stored), "the last write is stored when the command ends")
	require.Equal(t, []string{`{"next":600}`, `{"next":700}`}, store.Puts())
}

func TestNoCheckpointFileWithoutTheSetting(t *testing.T) {
	b := setup(t)
	name := b.script(t, "env.sh", `cat > /dev/null; echo "{\"file\": \"$TASKBRIDGE_CHECKPOINT_FILE\"}"`)
	out, err := b.job(t, execjob.Config{Command: []string{"./" + name}}).Run(context.Background(), task())
	require.NoError(t, err)
	require.JSONEq(t, `{"file":""}`, string(out.(json.RawMessage)))
}
