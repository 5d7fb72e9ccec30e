// Package consumer is the SQS intake of the worker. It knows nothing about jobs: it
// receives messages from one queue per Poller and hands each to a Handler.
//
// Delivery semantics (at-least-once):
//
//   - A Poller takes capacity first, then asks ReceiveMessage for at most
//     min(10, free slots) with a long poll: it never holds a message it cannot start.
//     One receive loop always runs (an idle queue costs one call per long poll);
//     while receives come back full, more loops start, up to MaxPollers, and each
//     extra loop ends at its first empty receive.
//   - While a handler runs, the Extender keeps the message invisible by renewing its
//     visibility timeout in batches. If renewal fails and the timeout passes, the job's
//     context is cancelled and the message is not deleted: someone else may own it.
//   - The Handler's result decides the message's fate, in this one place:
//     nil → deleted (batched DeleteMessageBatch, failed entries retried);
//     an error wrapped with DeadLetter → copied to the queue's DLQ with the reason in
//     message attributes, then deleted (bad input does not wait for maxReceiveCount);
//     any other error → left for redelivery after a short backoff (visibility set to
//     a delay that grows with the receive count); the queue's redrive policy moves it
//     to the DLQ after maxReceiveCount receives.
//   - Handlers must tolerate redelivery: a crash between a durable outcome and the
//     delete redelivers the message.
//   - On stop (ctx cancelled): polling stops; running handlers get DrainTimeout to
//     finish; then their contexts are cancelled and their messages left for
//     redelivery; messages received but not started are made visible again at once
//     (ChangeMessageVisibility 0); pending deletes are flushed on a bounded context.
package consumer
