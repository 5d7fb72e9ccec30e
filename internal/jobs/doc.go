// Package jobs says what a message means: it decodes the EventBridge envelope, runs
// the job bound to the message's queue, and reports the outcome of the Step Functions
// task through a Reporter. It holds no receipt handles and no SQS types; the Router
// returns to the consumer a result that decides the message's fate.
//
// A job's Mode says whether the token of its messages is its own: Complete (every
// message must carry one; the job's result completes it) or Observe (the job never
// sees or reports a token: a fan-out consumer).
//
// A Poller's message runs its job on the handler's own goroutine; a job still
// running 100 ms after its context ended is left to it, and its message is judged
// (a timeout), finished and settled by the job's watch (jobWatch, consumer.Detach).
//
// Fates, decided in Router.Handle:
//
//   - success: a Complete job's output completes the token (SendTaskSuccess), or the
//     job handed the token forward (Task.HandOff); an Observe job reports nothing →
//     delete.
//   - final failure (Permanent; also an event that can never fit on the bus):
//     SendTaskFailure "<job>.<Kind>" → delete.
//   - bad input (Invalid; also not JSON, not an envelope, no detail, a detail type the
//     queue does not take, a Complete job's message without a token): logged at warn
//     with the reason; SendTaskFailure when the job owns a token that can be read
//     (event.FindTaskToken reads it even from a body too deep to parse); then the DLQ
//     (consumer.DeadLetter).
//   - transient error: left for redelivery; on the message's last allowed receive,
//     SendTaskFailure "<job>.RetriesExhausted" ("<job>.Timeout" past the job's
//     deadline) first, then the DLQ, so no state machine waits for a timeout the
//     worker already knows about. Reports run on a context detached from the job's.
//   - released: the consumer took the message back (shutdown, lost visibility): no
//     report, left for redelivery.
//   - panic: recovered; SendTaskFailure "<job>.Panic", then the DLQ.
//   - a task that is already closed (timed out, answered by an earlier delivery) is a
//     finished outcome: counted task_closed, deleted.
//   - a token the job could not prove live (Task.Heartbeat: forged or closed):
//     token_refused, logged at warn, deleted, nothing reported.
//   - a Reporter error otherwise: left for redelivery (the outcome is not durable).
package jobs
