// Package consumer is the SQS intake of the worker. It knows nothing about jobs: it
// receives messages from one queue per Poller and hands each to a Handler.
//
// Delivery semantics (at-least-once):
//
//   - A Poller takes capacity first, then asks ReceiveMessage for at most
//     min(10, free slots) with a long poll. Config.ReceiveMode shapes the rest. With
//     ReceiveAhead (the default), its slots are Concurrency, plus up to 10 more
//     while its handlers are quick (a mean under 50 ms): it then receives ahead, so
//     the next receive is in flight while the last one's messages run, and a
//     receive waits up to 25 ms after a slot frees for more to free. A message
//     received ahead waits for a handler about as long as one takes; with slower
//     handlers, or with ReceiveOnDemand, the Poller holds no message it cannot
//     start at once, which would only keep it from another worker.
//     One receive loop always runs (an idle queue costs one call per long poll);
//     while receives come back full, more loops start, up to MaxPollers, and each
//     extra loop ends at its first empty receive.
//   - Concurrency handler goroutines live as long as the Poller runs and take the
//     received messages in turn, one each at a time. A handler's context ends at
//     its deadline (HandlerTimeout from its start) or when the Poller cancels it;
//     one timer per Poller keeps every handler's deadline (watch.go). A handler
//     whose goroutine is held by what it called (a job that ignores its context)
//     may Detach its message: it is settled from another goroutine, and a new
//     handler goroutine takes the held one's place. WatchHandler has the Poller
//     call a Rescuer, to do that, when a handler is still running StuckAfter past
//     its context's end.
//   - From its receipt to its fate (waiting for a handler, then running), the extender
//     keeps a message invisible by renewing its visibility timeout in batches. If
//     renewal fails and the timeout passes, the job's context is cancelled (a message
//     still waiting is never started) and the message is not deleted: someone else
//     may own it.
//   - SQS keeps a received message invisible 12 h at most from its receipt. With
//     Config.HandOver, a handler that runs toward that cap has its message handed
//     on under a lease (handover.go): a delayed continuation on the same queue,
//     the received message deleted, the handler running on; the lease, not a
//     receipt, then carries the job's fate, and a worker that receives the
//     continuation hides it while the lease lives and takes the job over once it
//     is dead. Without HandOver the handler is cancelled when the cap ends its
//     visibility.
//   - The Handler's result decides the message's fate, in this one place:
//     nil → deleted (batched DeleteMessageBatch, up to 10 a call and a few calls
//     at once, sent when 10 are pending or a second after the first; failed
//     entries retried);
//     an error wrapped with DeadLetter → copied to the queue's DLQ with the reason in
//     message attributes, then deleted (bad input does not wait for maxReceiveCount);
//     any other error → left for redelivery after a short backoff (visibility set to
//     a delay that grows with the receive count); the queue's redrive policy moves it
//     to the DLQ after maxReceiveCount receives.
//   - Config.Activity, when set, counts the messages in hand (from receipt to fate,
//     one End per Begin on every path): ECS task scale-in protection holds while
//     it is above zero.
//   - Handlers must tolerate redelivery: a crash between a durable outcome and the
//     delete redelivers the message.
//   - Lifecycle: Work(receiveCtx, workCtx) takes two contexts of the caller's (Run(ctx)
//     is Work(ctx, context.WithoutCancel(ctx))), and a stop goes through these
//     steps, in order:
//     1. The end of receiveCtx is the stop: no new receive starts. A long poll
//     already in flight is not cancelled: SQS (and moto, LocalStack) can still
//     hand it messages on the server side, which would then stay invisible for a
//     visibility timeout. It runs to its end within the drain (the Poller caps
//     PollWait to PollWaitWithin(DrainTimeout) so that it can), and what it brings
//     is made visible again at once (ChangeMessageVisibilityBatch 0), unstarted.
//     Each release is logged with the message's receive count: an interrupted
//     run counts as a receive towards the redrive's maxReceiveCount.
//     2. The drain: running handlers, and the messages received ahead that wait for
//     one, get DrainTimeout to finish, with the fates above.
//     3. The end of the drain (DrainTimeout passed, or workCtx ended): receives
//     still in flight are cut, running handlers' contexts cancelled, and their
//     messages and those still waiting released (visibility 0), the waiting ones
//     unstarted.
//     4. The flush: every SQS call after the stop (releases, the last deletes,
//     sent together) runs within one stop budget, DrainTimeout + FlushTimeout
//     from the stop, so a stop takes at most that however slow SQS is; a call cut
//     by it, or a handler that returns after it, leaves its message to come back
//     after its visibility timeout.
//     The end of workCtx alone stops the Poller too, with no drain.
//     A receive cut in flight (by the end of workCtx before its wait ended: a
//     second signal) goes on on the server until its wait ends; messages released
//     meanwhile get a visibility that outlasts it (at most PollWait + 1 s) instead
//     of 0, so that it cannot take them and strand them for a visibility timeout.
package consumer
