package taskbridge

import "github.com/taskbridge/taskbridge/internal/jobs"

func init() {
	// tasktest runs a Registry's jobs through the worker's own router.
	jobs.RegistryJobs = func(registry any) []jobs.Job {
		r, ok := registry.(*Registry)
		if !ok {
			return nil
		}
		return r.cliJobs().Jobs
	}
}
