// Command worker is the taskbridge worker with the cookies reference jobs
// registered: `taskbridge.Main` with examples/cookies, like any user's program.
//
//	worker [run]        serve the topology's queues until SIGTERM (the default)
//	worker bootstrap    create the stack on AWS_ENDPOINT_URL (idempotent)
//	worker start        start an execution (cookies by default)
//	worker validate     report every problem of the topology and its ASL files
//	worker config       print every WORKER_* variable, its default and meaning
//	worker healthcheck  exit 0 when /healthz answers, 1 otherwise
package main

import (
	"github.com/taskbridge/taskbridge"
	"github.com/taskbridge/taskbridge/examples/cookies"
)

func main() {
	jobs := taskbridge.NewRegistry()
	cookies.Register(jobs)
	taskbridge.Main(jobs)
}
