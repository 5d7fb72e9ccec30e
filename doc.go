// Package taskbridge runs your jobs for Step Functions callback tasks that reach you
// through EventBridge and SQS.
//
// A state machine step `arn:aws:states:::events:putEvents.waitForTaskToken` puts an
// event with its task token on a bus; a rule routes the event's detail-type to a
// queue; the worker long-polls the queue, runs the job bound to it, and reports the
// outcome to Step Functions. You write the job and register it under a name; the
// topology file (WORKER_TOPOLOGY) binds the name to a queue:
//
//	{"name": "greet", "job": "greet", "detailTypes": ["greet"]}
//
// and taskbridge.Main gives your program the worker's whole command line (its
// commands are listed at Main). A program that serves the worker beside its own
// server calls taskbridge.Run, which returns when its context ends.
//
// What a job's result means:
//
//   - an output (any value that encodes to JSON) completes the task with
//     SendTaskSuccess; an output over Step Functions' 256 KiB goes to S3 and the task gets a
//     claim check ({"claimCheck": "s3://...", "size": N});
//   - an error made with Permanent fails the task as "<job>.<kind>" at once;
//   - an error made with Invalid, or a detail that Task.Decode cannot decode, fails
//     the task as "<job>.<kind>" and moves the message to its dead-letter queue;
//   - any other error is retried (the message comes back after a backoff); on its
//     last allowed receive the task fails as "<job>.RetriesExhausted" (or
//     "<job>.Timeout" when the job outlived WORKER_JOB_TIMEOUT);
//   - a panic is recovered: the task fails as "<job>.Panic", the message goes to the
//     dead-letter queue and the worker keeps running.
//
// Delivery is at least once: a job must tolerate running twice for one event.
package taskbridge
