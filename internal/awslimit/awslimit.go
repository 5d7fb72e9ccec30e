// Package awslimit holds the AWS service limits the worker plans around, in one
// place, each with its source and the date it was last checked against AWS's
// documents. A limit changes here, and the packages that enforce it
// (event, callback, startjob, bootstrap, the jobs' long-run hand-over) follow.
package awslimit

import "time"

// Payload sizes, checked 2026-12-07.
const (
	// SQSMessageBytes is the largest SQS message (body and attributes): 1 MiB,
	// 1,048,576 bytes, the upper bound (and, for a queue created since, the
	// default) of the MaximumMessageSize attribute since August 2025 (AWS What's
	// New, "Amazon SQS increases maximum message payload size to 1 MiB"; SQS
	// Developer Guide, "Quotas related to messages"). A queue created earlier keeps
	// its 256 KiB until MaximumMessageSize is raised: bootstrap sets it.
	SQSMessageBytes = 1 << 20

	// EventBridgeEntryBytes bounds one PutEvents entry, measured as EventBridge
	// measures it ("Calculating PutEvents event entry size"): 1 MB since
	// 2026-01-29 (AWS Compute Blog, "More room to build: serverless services now
	// support payloads up to 1 MB"). The blog says "1 MB" without a byte count;
	// the worker takes the 1 MiB that SQS states in bytes, so an entry the bus
	// refuses is refused by PutEvents as an entry error, a permanent one. An event
	// near this size does not fit in an SQS message once EventBridge wraps it in
	// its envelope: that delivery fails into the target's DLQ.
	EventBridgeEntryBytes = 1 << 20

	// StepFunctionsPayloadBytes bounds what goes into Step Functions: an
	// execution's input, a state's input and output, a SendTaskSuccess output
	// (Step Functions Developer Guide, "Step Functions service quotas": 256 KiB of
	// UTF-8). Unchanged by the 2026-01-29 raise: the worker claim-checks anything
	// larger into the data bucket.
	StepFunctionsPayloadBytes = 256 << 10
)

// Times of SQS, checked 2026-12-07 (SQS Developer Guide, "Quotas related to
// messages"; ChangeMessageVisibility API reference).
const (
	// SQSMaxVisibility is how long a received message can stay invisible, counted
	// from its receipt: ChangeMessageVisibility cannot extend it past 12 h. A job
	// that may run longer hands its message on before then (internal/jobs).
	SQSMaxVisibility = 12 * time.Hour
	// SQSMaxDelay is the longest DelaySeconds of a sent message: 15 min.
	SQSMaxDelay = 15 * time.Minute
)

// StepFunctionsMaxExecution is how long a Standard workflow's execution may run:
// one year (Step Functions Developer Guide, "Step Functions service quotas",
// checked 2026-12-07). No task waits longer, so no job may be given longer.
const StepFunctionsMaxExecution = 365 * 24 * time.Hour
