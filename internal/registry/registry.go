// Package registry holds what a program registers with taskbridge: its Go jobs and
// the functions to run before they do.
//
// Registry is the state behind the public taskbridge.Registry, which is a defined
// type over it (type Registry registry.Registry): the public package converts to
// this type to add jobs, and so do the packages of this module that run a
// registry's jobs (tasktest, the worker's benchmarks), to read them. Outside the
// module no one can name this package, so the public type needs no exported
// accessor and no hook set at init; its fields are unexported, so that the public
// type, which shares them, shows none.
package registry

import (
	"context"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/taskbridge/taskbridge/internal/jobs"
)

// Registry is a program's jobs by name and its start functions. The zero value is
// empty and ready; it is not safe for concurrent registration.
type Registry struct {
	jobs    []jobs.Job
	onStart []func(ctx context.Context, env Env) error
}

// Env is the stack a worker runs against, for jobs that call AWS themselves.
type Env struct {
	AWS           aws.Config // region, endpoint and credentials as the worker loaded them
	S3PathStyle   bool       // S3 clients must use path-style URLs (local emulators)
	Stack         string
	EventBus      string
	DataBucket    string
	LandingBucket string
}

// Has reports whether a job of that name is registered.
func (r *Registry) Has(name string) bool {
	return slices.ContainsFunc(r.jobs, func(j jobs.Job) bool { return j.Name == name })
}

// Add registers j; the caller checks its name is new (Has).
func (r *Registry) Add(j jobs.Job) { r.jobs = append(r.jobs, j) }

// AddOnStart adds fn to what `worker run` calls once before it polls.
func (r *Registry) AddOnStart(fn func(ctx context.Context, env Env) error) {
	r.onStart = append(r.onStart, fn)
}

// Jobs returns the registered jobs, in the order of registration; the slice is the
// caller's.
func (r *Registry) Jobs() []jobs.Job { return slices.Clone(r.jobs) }

// OnStart returns the start functions, in the order they were added; the slice is
// the caller's.
func (r *Registry) OnStart() []func(ctx context.Context, env Env) error {
	return slices.Clone(r.onStart)
}
