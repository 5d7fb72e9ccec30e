// Package ecsprotect holds ECS task scale-in protection while a worker has work in
// hand, so that a scale-in or a deployment waits for running jobs instead of
// stopping the task under them.
//
// The consumer counts work with Begin and End (an atomic add each; a message counts
// from its receipt to its settled fate). A Protector's Run goroutine, and only it,
// talks to the ECS container agent ($ECS_AGENT_URI/task-protection/v1/state): when
// work goes from none to some it enables protection for a number of minutes, renews
// it at half of that while work remains, and drops it once the process has been
// idle for a short grace (a steady stream of short jobs so does not toggle it per
// message). Agent errors are logged, counted and retried with a jittered backoff;
// they never block or fail a job: a job whose protection could not be taken runs
// unprotected, as before this package. Without ECS_AGENT_URI (not on ECS) a nil
// Protector does nothing.
//
// On stop (Run's context cancelled, SIGTERM) the Protector stops renewing and drops
// protection with a short bounded call. ECS sends SIGTERM to a protected task only
// when it must (a stop it was told to do, protection expired); the consumer then
// drains and releases as it always did.
package ecsprotect
