package taskbridge

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/taskbridge/taskbridge/internal/cli"
	"github.com/taskbridge/taskbridge/internal/jobs"
	"github.com/taskbridge/taskbridge/internal/registry"
)

// HandlerFunc is a job: it does the work of one task and returns its output.
type HandlerFunc func(ctx context.Context, t *Task) (any, error)

// Registry holds a program's jobs by name. Register every job before Main or Run; a
// Registry is not safe for concurrent registration. Its zero value is empty and
// ready, like NewRegistry's.
// (Its state is an internal type that the worker and package tasktest read; a
// Registry exports nothing of it.)
type Registry registry.Registry

// NewRegistry returns an empty Registry. The built-in "finisher" job (complete a
// task from a taskFinished event) is always available unless you register your own
// job of that name.
func NewRegistry() *Registry { return &Registry{} }

// state is r as the worker's mechanisms read it.
func (r *Registry) state() *registry.Registry { return (*registry.Registry)(r) }

// Option changes how a job is run; Observe makes one.
type Option struct{ apply func(*jobs.Job) }

// Observe registers a job that reacts to events without owning a task: its events
// may carry another consumer's token (a fan-out), which the job never sees and the
// worker never reports on. Its errors are retried and its bad input dead-lettered
// like any job's. Without Observe, every message of the job must carry a TaskToken
// (one without is dead-lettered at once) and the job's result completes it.
func Observe() Option { return Option{apply: func(j *jobs.Job) { j.Mode = jobs.Observe }} }

// Handle registers fn as the job name, the name a topology queue gives in "job".
// It panics when name is empty or already registered, or fn is nil: a program
// error, found on its first start.
func (r *Registry) Handle(name string, fn HandlerFunc, opts ...Option) {
	switch {
	case name == "":
		panic("taskbridge: Handle with an empty job name")
	case fn == nil:
		panic(fmt.Sprintf("taskbridge: Handle(%q) with a nil function", name))
	case r.state().Has(name):
		panic(fmt.Sprintf("taskbridge: job %q registered twice", name))
	}
	j := jobs.Job{Name: name, Mode: jobs.Complete, Run: func(ctx context.Context, t *jobs.Task) (any, error) {
		return fn(ctx, &Task{t: t, ctx: ctx})
	}}
	for _, o := range opts {
		if o.apply != nil {
			o.apply(&j)
		}
	}
	r.state().Add(j)
}

// Stack is what a worker runs against, given to OnStart functions: for jobs that
// call AWS themselves.
type Stack struct {
	// AWS is the SDK configuration the worker loaded (AWS_REGION, AWS_ENDPOINT_URL,
	// the credential chain). The connections its clients open while the worker
	// runs are closed when Run returns.
	AWS aws.Config
	// S3PathStyle: S3 clients must use path-style URLs (local emulators; set by
	// WORKER_S3_PATH_STYLE, default true when AWS_ENDPOINT_URL is set).
	S3PathStyle bool
	// Name is WORKER_STACK, the prefix of every resource name.
	Name       string
	EventBus   string
	DataBucket string
}

// OnStart adds fn to what `worker run` calls once in a process that runs jobs
// (WORKER_ROLES has "jobs"), after it found the stack and before it polls any
// queue: build your clients there. An error stops the worker.
func (r *Registry) OnStart(fn func(ctx context.Context, s Stack) error) {
	r.state().AddOnStart(func(ctx context.Context, env registry.Env) error {
		return fn(ctx, Stack{AWS: env.AWS, S3PathStyle: env.S3PathStyle, Name: env.Stack, EventBus: env.EventBus, DataBucket: env.DataBucket})
	})
}

// cliJobs is r's jobs with the invocation's settings of with.
func (r *Registry) cliJobs(with cli.Jobs) cli.Jobs {
	with.Jobs, with.OnStart = r.state().Jobs(), r.state().OnStart()
	return with
}
