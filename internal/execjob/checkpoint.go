package execjob

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/taskbridge/taskbridge/internal/jobs"
)

// CheckpointEnv names the variable that holds the checkpoint file's path.
const CheckpointEnv = "TASKBRIDGE_CHECKPOINT_FILE"

// DefaultCheckpointPoll is how often the checkpoint file is looked at while the
// command runs.
const DefaultCheckpointPoll = time.Second

// checkpointSaveTimeout bounds the last store of the file, made after the command
// ended, on a context detached from the job's (it may have ended: a stop).
const checkpointSaveTimeout = 10 * time.Second

// checkpointFile is the file through which a command reads its last checkpoint and
// writes new ones. The watcher goroutine and, after it stopped, Run's goroutine
// store it; saved is theirs in turn.
type checkpointFile struct {
	dir, path string
	t         *jobs.Task
	log       *zap.Logger
	saved     []byte // what the store holds of it
	stopWatch func()
}

// openCheckpoint makes the file in a directory of its own, holding the task's last
// checkpoint if there is one (else there is no file). An error reading the store
// is a retry.
func openCheckpoint(ctx context.Context, t *jobs.Task, log *zap.Logger) (*checkpointFile, error) {
	last, ok, err := t.LastCheckpoint(ctx)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "taskbridge-checkpoint-")
	if err != nil {
		return nil, err
	}
	c := &checkpointFile{dir: dir, path: filepath.Join(dir, "checkpoint.json"), t: t, log: log}
	if ok {
		if err := os.WriteFile(c.path, last, 0o600); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		c.saved = last
	}
	return c, nil
}

// watch stores the file whenever it changes, every poll, until stop.
func (c *checkpointFile) watch(ctx context.Context, poll time.Duration) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(poll)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				c.save(ctx)
			}
		}
	})
	c.stopWatch = func() { cancel(); wg.Wait() }
}

// finish stops the watcher, stores the file's last state (the command has ended:
// it was stopped, or it wrote its last checkpoint before it exited) and removes
// the directory.
func (c *checkpointFile) finish(ctx context.Context) {
	if c.stopWatch != nil {
		c.stopWatch()
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), checkpointSaveTimeout)
	defer cancel()
	c.save(sctx)
	_ = os.RemoveAll(c.dir)
}

// save stores the file when it holds a new JSON document. A file being written
// (not JSON yet) is left for the next look: commands should write a temporary file
// and rename it.
func (c *checkpointFile) save(ctx context.Context) {
	fi, err := os.Stat(c.path)
	if err != nil || fi.Size() == 0 {
		return
	}
	if fi.Size() > jobs.MaxCheckpointBytes {
		c.log.Warn("checkpoint file over the limit; not stored", zap.Int64("size", fi.Size()), zap.Int("limit", jobs.MaxCheckpointBytes))
		return
	}
	b, err := os.ReadFile(c.path)
	if err != nil {
		return
	}
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, c.saved) || !json.Valid(b) {
		return
	}
	if err := c.t.SaveCheckpoint(ctx, b); err != nil {
		if ctx.Err() == nil {
			c.log.Warn("checkpoint not stored; tried again at the next change", zap.Error(err))
		}
		return
	}
	c.saved = b
}
