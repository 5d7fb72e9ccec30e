// Package jobs says what a message means: it decodes the EventBridge envelope and the
// job's detail, runs the job bound to the message's queue, and reports the outcome of
// the Step Functions task through a Reporter. It holds no receipt handles and no SQS
// types; the Router returns to the consumer a result that decides the message's fate.
//
// Fates, decided in Router.Handle:
//
//   - success: the job's output completes the token (SendTaskSuccess), or the job
//     handed the token forward in an event it emitted, or it had none → delete.
//   - final failure (Permanent): SendTaskFailure "<job>.<Kind>" → delete.
//   - bad input (Invalid; also not JSON, not an envelope, no detail, a detail type the
//     queue does not take, a missing token, a URL outside the data bucket):
//     logged at warn with the reason; SendTaskFailure when a token can be read;
//     then the DLQ (consumer.DeadLetter).
//   - transient error: left for redelivery; on the message's last allowed receive,
//     SendTaskFailure "<job>.RetriesExhausted" first, then the DLQ, so no state
//     machine waits for a timeout the worker already knows about.
//   - panic: recovered; SendTaskFailure "<job>.Panic", then the DLQ.
//   - a task that is already closed (timed out, answered by an earlier delivery) is a
//     finished outcome: counted task_closed, deleted.
//   - a Reporter error otherwise: left for redelivery (the outcome is not durable).
package jobs
