// Package execjob runs a command per message: the "exec" job kind of a topology.
//
// The command runs without a shell, in its own process group, with the event's
// detail (minus its task token) on stdin and the task's facts in TASKBRIDGE_*
// variables. Exit 0: stdout is the task output (JSON; empty means {}). Exit 75
// (EX_TEMPFAIL): a retry. Any other exit: a final failure "<job>.Exit<N>" whose
// cause is the tail of stderr. At the timeout, or when the job's context ends
// (shutdown, lost visibility), the whole group gets SIGTERM, then SIGKILL after a
// grace period, and Run returns only once the command's process has been reaped. The
// same happens when the task closes while the command runs (the router cancels the
// context with jobs.ErrTaskClosed). With Config.Checkpoint the command reads and
// writes its checkpoint through a file (checkpoint.go).
//
// Whatever the outcome, the group is killed once its leader has exited: a command
// may not leave processes behind (they would hold its pipes and outlive the task).
//
// When the worker is PID 1 of its container, orphaned grandchildren are reparented
// to it and nobody reaps them; run the worker under an init (ECS
// initProcessEnabled, tini) if commands start children.
package execjob

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/taskbridge/taskbridge/internal/jobs"
)

// Defaults of Config.
const (
	DefaultTimeout   = 30 * time.Minute
	DefaultGrace     = 2 * time.Second
	DefaultMaxStdout = 1 << 20  // 1 MiB
	DefaultMaxStderr = 16 << 10 // 16 KiB: it becomes a failure cause (at most 32 KiB)
)

// ExitTempFail is EX_TEMPFAIL of sysexits.h: the command asks for a retry.
const ExitTempFail = 75

// Config of one exec queue. Zero values take the defaults.
type Config struct {
	// Command is the program and its arguments, run without a shell. A program with
	// a slash ("./job.sh", "scripts/x.py") is a path, relative ones resolved from
	// Dir; a bare name ("python3") is looked up in PATH when the job is made.
	Command []string
	// Dir is the topology file's folder: relative program paths resolve from it and
	// the command runs in it. Default: the worker's working directory.
	Dir string
	// Timeout of one run (default 30 min). At the timeout the group is stopped and
	// the run is a retry ("timed out after …"); on the last receive, a failure.
	Timeout time.Duration
	// Grace between SIGTERM and SIGKILL of the group (default 2 s).
	Grace time.Duration
	// Env holds extra KEY=VALUE variables, added to the worker's environment. The
	// TASKBRIDGE_* variables of the task are set after them and win.
	Env []string
	// MaxStdout caps stdout in bytes (default 1 MiB): more is a final failure
	// "OutputTooLarge".
	MaxStdout int
	// MaxStderr is how many trailing bytes of stderr are kept (default 16 KiB) for
	// the failure cause.
	MaxStderr int
	// Checkpoint gives the command a checkpoint file, its path in
	// TASKBRIDGE_CHECKPOINT_FILE: it holds the task's last checkpoint at the start
	// (no file: none), and what the command writes there (a JSON document, at most
	// 256 KiB; write a temporary file and rename it) is stored when it changes,
	// checked every CheckpointPoll, and once more when the command ends or is
	// stopped.
	Checkpoint bool
	// CheckpointPoll is how often the checkpoint file is looked at (default 1 s).
	CheckpointPoll time.Duration
}

func (c Config) withDefaults() Config {
	c.Timeout = cmp.Or(c.Timeout, DefaultTimeout)
	c.Grace = cmp.Or(c.Grace, DefaultGrace)
	c.MaxStdout = cmp.Or(c.MaxStdout, DefaultMaxStdout)
	c.MaxStderr = cmp.Or(c.MaxStderr, DefaultMaxStderr)
	c.CheckpointPoll = cmp.Or(c.CheckpointPoll, DefaultCheckpointPoll)
	return c
}

// HandlerTimeout is the deadline the consumer should give one message of this
// queue: the command's timeout plus the time to stop its group (SIGTERM, grace,
// SIGKILL, reaping), and jobs.HandlerMargin.
func (c Config) HandlerTimeout() time.Duration {
	c = c.withDefaults()
	return c.Timeout + 3*c.Grace + jobs.HandlerMargin
}

// StopTime is the longest Run takes to return once its context ends: SIGTERM, the
// grace, SIGKILL, the wait for the group to go and for its pipes to drain (up to a
// grace each), and a second for the last checkpoint and the reaping.
func (c Config) StopTime() time.Duration {
	return 3*c.withDefaults().Grace + time.Second
}

// Validate reports every problem of the config at once: the one check of an exec
// queue, made by `worker validate` (through the topology check) and by New alike. The
// program must be found as New will run it: a path an executable file (relative
// ones under Dir), a bare name in PATH.
func (c Config) Validate() error {
	var errs []error
	switch {
	case len(c.Command) == 0:
		errs = append(errs, errors.New("command is empty"))
	case c.Command[0] == "":
		errs = append(errs, errors.New("command: program name is empty"))
	default:
		if _, err := c.program(); err != nil {
			errs = append(errs, fmt.Errorf("command %s: %w", c.Command[0], err))
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %s is negative", c.Timeout))
	}
	if err := jobs.CheckTimeout(c.Timeout); err != nil {
		errs = append(errs, err)
	}
	if c.Grace < 0 {
		errs = append(errs, fmt.Errorf("grace %s is negative", c.Grace))
	}
	if c.MaxStdout < 0 {
		errs = append(errs, fmt.Errorf("maxStdout %d is negative", c.MaxStdout))
	}
	if c.MaxStderr < 0 {
		errs = append(errs, fmt.Errorf("maxStderr %d is negative", c.MaxStderr))
	}
	if c.CheckpointPoll < 0 {
		errs = append(errs, fmt.Errorf("checkpoint poll %s is negative", c.CheckpointPoll))
	}
	for _, kv := range c.Env {
		k, _, ok := strings.Cut(kv, "=")
		switch {
		case !ok || k == "":
			errs = append(errs, fmt.Errorf("env %q is not KEY=VALUE", kv))
		case strings.HasPrefix(k, "TASKBRIDGE_"):
			errs = append(errs, fmt.Errorf("env %s: TASKBRIDGE_* variables are the worker's", k))
		}
	}
	return errors.Join(errs...)
}

// program is the absolute path of the command's program: a path (with a slash) from
// Dir, which must name an executable file; a bare name looked up in PATH.
func (c Config) program() (string, error) {
	path := c.Command[0]
	if !strings.ContainsRune(path, '/') {
		return exec.LookPath(path)
	}
	if !filepath.IsAbs(path) {
		abs, err := filepath.Abs(filepath.Join(c.Dir, path))
		if err != nil {
			return "", err
		}
		path = abs
	}
	return path, checkExecutable(path)
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errors.New("no such file")
		}
		return err
	}
	if fi.IsDir() {
		return errors.New("is a directory")
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return errors.New("not executable")
	}
	return nil
}

// Job runs one exec queue's command. Run may be called concurrently.
type Job struct {
	name string
	cfg  Config
	path string // the program, resolved
	dir  string
	log  *zap.Logger
	m    *Metrics
}

// New checks cfg and resolves the program. m may be shared by every exec queue; nil
// keeps the metrics unregistered.
func New(job string, cfg Config, log *zap.Logger, m *Metrics) (*Job, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("exec job %s: %w", job, err)
	}
	cfg = cfg.withDefaults()
	path, err := cfg.program() // found by Validate: only a change of the disk since fails
	if err != nil {
		return nil, fmt.Errorf("exec job %s: command: %w", job, err)
	}
	dir := cfg.Dir
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, fmt.Errorf("exec job %s: dir: %w", job, err)
		}
		dir = abs
	}
	if m == nil {
		m = newMetrics()
	}
	m.init(job)
	return &Job{name: job, cfg: cfg, path: path, dir: dir, log: log.With(zap.String("job", job)), m: m}, nil
}

// Run runs the command once for t. See the package doc for the outcomes.
func (j *Job) Run(ctx context.Context, t *jobs.Task) (any, error) {
	input, err := t.DetailWithoutToken()
	if err != nil {
		return nil, err
	}
	started := time.Now()
	res, err := j.run(ctx, t, input)
	if err != nil {
		return nil, err // could not start
	}
	j.m.duration.WithLabelValues(j.name).Observe(time.Since(started).Seconds())
	j.m.exits.WithLabelValues(j.name, res.code()).Inc()
	if res.stopped != "" {
		j.m.killed.WithLabelValues(j.name, res.stopped).Inc()
	}
	return j.outcome(ctx, res)
}

// result is what one run of the command left.
type result struct {
	state    *os.ProcessState
	stopped  string // "timeout", "shutdown" or "task_closed" when we stopped the group, else ""
	stdout   []byte
	overflow bool // stdout went over MaxStdout
	stderr   string
}

func (r *result) code() string {
	switch {
	case r.stopped == "timeout":
		return "timeout"
	case r.state.Exited():
		return strconv.Itoa(r.state.ExitCode())
	default:
		return "signal"
	}
}

func (j *Job) outcome(ctx context.Context, r *result) (any, error) {
	switch {
	case r.stopped != "" && ctx.Err() != nil:
		return nil, fmt.Errorf("%s stopped: %w", j.cfg.Command[0], ctx.Err())
	case r.stopped == "timeout":
		return nil, fmt.Errorf("%s timed out after %s", j.cfg.Command[0], j.cfg.Timeout)
	case !r.state.Exited():
		return nil, fmt.Errorf("%s killed by %s", j.cfg.Command[0], r.state.String())
	}
	switch code := r.state.ExitCode(); code {
	case 0:
	case ExitTempFail:
		return nil, fmt.Errorf("%s exited %d (retry): %s", j.cfg.Command[0], code, orNone(r.stderr))
	default:
		return nil, jobs.Permanent(fmt.Sprintf("Exit%d", code), errors.New(orNone(r.stderr)))
	}
	if r.overflow {
		return nil, jobs.Permanent("OutputTooLarge", fmt.Errorf("stdout is over %d bytes", j.cfg.MaxStdout))
	}
	out := bytes.TrimSpace(r.stdout)
	if len(out) == 0 {
		return json.RawMessage(`{}`), nil
	}
	if !json.Valid(out) {
		var v any
		err := json.Unmarshal(out, &v)
		return nil, jobs.Permanent("InvalidOutput", fmt.Errorf("stdout is not JSON (%d bytes): %w", len(out), err))
	}
	return json.RawMessage(out), nil
}

func orNone(stderr string) string {
	if strings.TrimSpace(stderr) == "" {
		return "(no stderr)"
	}
	return stderr
}

// run starts the command, waits for it under the timeout and ctx, and reaps it. Its
// error is only for a command that could not start.
func (j *Job) run(ctx context.Context, t *jobs.Task, input []byte) (*result, error) {
	// Our own pipes rather than exec's copying goroutines: Wait then returns when
	// the leader exits, and a grandchild that keeps a pipe open cannot hold Run.
	p, err := newPipes()
	if err != nil {
		return nil, err
	}
	defer p.closeOurEnds()
	var cp *checkpointFile
	if j.cfg.Checkpoint {
		if cp, err = openCheckpoint(ctx, t, j.log); err != nil {
			return nil, fmt.Errorf("checkpoint file: %w", err)
		}
		defer cp.finish(ctx)
	}
	cmd, err := j.start(t, p, cp)
	if err != nil {
		return nil, err
	}
	if cp != nil {
		cp.watch(ctx, j.cfg.CheckpointPoll)
	}
	pgid := cmd.Process.Pid
	log := j.log.With(zap.String("message_id", t.MessageID), zap.Int("pid", pgid))
	log.Debug("command started")
	s := j.pump(p, input)
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()

	res := &result{stopped: j.wait(ctx, pgid, exited, log)}
	// The leader is reaped; what is left of its group must not outlive the task.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	j.waitGroupGone(pgid, log)
	j.drainPipes(s, p, log)
	res.state = cmd.ProcessState
	res.stdout, res.overflow = s.out.buf.Bytes(), s.out.over
	res.stderr = s.errTail.String()
	log.Debug("command ended", zap.String("state", res.state.String()))
	return res, nil
}

// pipes are the command's stdin, stdout and stderr: the child's ends (R, W, W) and
// ours (W, R, R).
type pipes struct {
	stdinR, stdinW, stdoutR, stdoutW, stderrR, stderrW *os.File
}

func newPipes() (*pipes, error) {
	var p pipes
	var err error
	if p.stdinR, p.stdinW, err = os.Pipe(); err != nil {
		return nil, fmt.Errorf("stdin pipe: %w", err)
	}
	if p.stdoutR, p.stdoutW, err = os.Pipe(); err != nil {
		closeAll(p.stdinR, p.stdinW)
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	if p.stderrR, p.stderrW, err = os.Pipe(); err != nil {
		closeAll(p.stdinR, p.stdinW, p.stdoutR, p.stdoutW)
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	return &p, nil
}

func (p *pipes) closeChildEnds() { closeAll(p.stdinR, p.stdoutW, p.stderrW) }
func (p *pipes) closeOurEnds()   { closeAll(p.stdinW, p.stdoutR, p.stderrR) }

// start starts the command on the child's ends of p, then closes them (the child has
// its copies). A program that cannot be run at all is a final failure.
func (j *Job) start(t *jobs.Task, p *pipes, cp *checkpointFile) (*exec.Cmd, error) {
	var cmd *exec.Cmd
	var err error
	for attempt := 0; ; attempt++ {
		cmd = &exec.Cmd{
			Path:        j.path,
			Args:        append([]string{j.path}, j.cfg.Command[1:]...),
			Dir:         j.dir,
			Env:         j.env(t, cp),
			Stdin:       p.stdinR,
			Stdout:      p.stdoutW,
			Stderr:      p.stderrW,
			SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
		}
		err = cmd.Start()
		// A script written a moment ago may still be open for writing in a process
		// forked meanwhile (until that child execs): "text file busy" passes.
		if !errors.Is(err, syscall.ETXTBSY) || attempt == 4 {
			break
		}
		time.Sleep(20 * time.Millisecond << attempt)
	}
	p.closeChildEnds()
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ENOEXEC) {
			return nil, jobs.Permanent("StartFailed", fmt.Errorf("start %s: %w", j.cfg.Command[0], err))
		}
		return nil, fmt.Errorf("start %s: %w", j.cfg.Command[0], err)
	}
	return cmd, nil
}

// streams are the copies between the command's pipes and the worker: input to
// stdin, stdout and the tail of stderr into capped buffers, one goroutine each.
type streams struct {
	done    sync.WaitGroup
	out     *capped
	errTail *tail
}

func (j *Job) pump(p *pipes, input []byte) *streams {
	s := &streams{out: &capped{max: j.cfg.MaxStdout}, errTail: &tail{max: j.cfg.MaxStderr}}
	s.done.Add(3)
	go func() {
		defer s.done.Done()
		_, _ = p.stdinW.Write(input) // EPIPE when the command does not read it all: fine
		_ = p.stdinW.Close()
	}()
	go func() { defer s.done.Done(); drain(p.stdoutR, s.out) }()
	go func() { defer s.done.Done(); drain(p.stderrR, s.errTail) }()
	return s
}

// wait waits until the leader exits, the timeout passes or ctx ends, and stops the
// group in the last two cases. It returns why it stopped it ("timeout",
// "shutdown"), or "" when the command ended on its own.
func (j *Job) wait(ctx context.Context, pgid int, exited <-chan struct{}, log *zap.Logger) string {
	timer := time.NewTimer(j.cfg.Timeout)
	defer timer.Stop()
	var stopped string
	select {
	case <-exited:
		return ""
	case <-timer.C:
		stopped = "timeout"
	case <-ctx.Done():
		stopped = "shutdown"
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			stopped = "timeout" // the handler's deadline: a timeout too
		case errors.Is(context.Cause(ctx), jobs.ErrTaskClosed):
			stopped = "task_closed"
		}
	}
	select {
	case <-exited: // it ended at the same moment: keep its own outcome
		return ""
	default:
		log.Warn("stopping command", zap.String("reason", stopped), zap.Duration("grace", j.cfg.Grace))
		j.stop(pgid, exited)
		return stopped
	}
}

// drainPipes waits for the copies to end. The pipes reach EOF once every holder is
// dead; a process that left the group (setsid) may still hold one: our ends are
// closed after the grace.
func (j *Job) drainPipes(s *streams, p *pipes, log *zap.Logger) {
	ioDone := make(chan struct{})
	go func() { s.done.Wait(); close(ioDone) }()
	select {
	case <-ioDone:
	case <-time.After(j.cfg.Grace):
		log.Warn("a process outside the command's group holds its pipes; closing them")
		p.closeOurEnds()
		<-ioDone
	}
}

// stop sends SIGTERM to the group, then SIGKILL after the grace, and waits for the
// leader to be reaped.
func (j *Job) stop(pgid int, exited <-chan struct{}) {
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	grace := time.NewTimer(j.cfg.Grace)
	defer grace.Stop()
	select {
	case <-exited:
		// Give the rest of the group the same grace before the SIGKILL that follows.
		j.waitGroupGoneWithin(pgid, grace.C)
	case <-grace.C:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-exited
	}
}

func (j *Job) waitGroupGoneWithin(pgid int, deadline <-chan time.Time) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for groupAlive(pgid) {
		select {
		case <-deadline:
			return
		case <-tick.C:
		}
	}
}

// waitGroupGone waits (up to the grace) until no process of the group is left, so
// that a killed group is gone when Run returns.
func (j *Job) waitGroupGone(pgid int, log *zap.Logger) {
	deadline := time.NewTimer(j.cfg.Grace)
	defer deadline.Stop()
	j.waitGroupGoneWithin(pgid, deadline.C)
	if groupAlive(pgid) {
		log.Warn("processes of the command's group are still running after SIGKILL")
	}
}

func groupSignalable(pgid int) bool { return syscall.Kill(-pgid, 0) == nil }

// env is the worker's environment, Config.Env, then the task's facts (never the
// token). Later entries win.
func (j *Job) env(t *jobs.Task, cp *checkpointFile) []string {
	env := append(os.Environ(), j.cfg.Env...)
	if cp != nil {
		env = append(env, CheckpointEnv+"="+cp.path)
	}
	return append(env,
		"TASKBRIDGE_JOB="+j.name,
		"TASKBRIDGE_QUEUE="+t.Queue,
		"TASKBRIDGE_DETAIL_TYPE="+t.DetailType,
		"TASKBRIDGE_EXECUTION_ARN="+t.ExecutionArn,
		"TASKBRIDGE_RECEIVE_COUNT="+strconv.Itoa(t.ReceiveCount),
		"TASKBRIDGE_MESSAGE_ID="+t.MessageID,
		"TASKBRIDGE_EVENT_ID="+t.EventID,
	)
}

func closeAll(fs ...*os.File) {
	for _, f := range fs {
		_ = f.Close()
	}
}

// drain reads r to its end (or until it is closed) into w.
func drain(r io.Reader, w io.Writer) {
	_, _ = io.Copy(w, r)
}

// capped keeps the first max bytes and notes whether more came; it never fails a
// write, so the command is never blocked on a full pipe.
type capped struct {
	max  int
	buf  bytes.Buffer
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room < len(p) {
		c.over = true
		c.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	c.buf.Write(p)
	return len(p), nil
}

// tail keeps the last max bytes written.
type tail struct {
	max  int
	buf  []byte
	lost bool
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.lost = true
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// String is the kept tail as valid UTF-8, starting at a whole rune, trimmed.
func (t *tail) String() string {
	b := t.buf
	if t.lost {
		for len(b) > 0 && !utf8.RuneStart(b[0]) {
			b = b[1:]
		}
	}
	s := strings.TrimSpace(strings.ToValidUTF8(string(b), "\uFFFD"))
	if t.lost {
		s = "…" + s
	}
	return s
}
