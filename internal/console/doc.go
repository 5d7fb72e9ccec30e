// Package console is `worker console`: a small web site, rendered on the server from
// html/template and embedded assets, where an operator looks at one stack of a
// topology: its queues and state machines (Stack), the executions of a state machine
// and one execution's steps (Executions), and the dead letters of each queue (Dead
// letters), with redrive and purge when actions are turned on.
//
// It reads only AWS APIs (SQS, Step Functions, S3) and the workers' /readyz, so it
// works against AWS, LocalStack and moto alike. The reads of dead letters and queue
// counts are internal/dlq's; the console never copies them. Every page reads at most
// one page of each list (no call per row beyond the rows shown) and keeps what it
// read for a short while (Config.CacheTTL), showing the age of what it shows.
//
// Reading needs no JavaScript. Actions change state, so they are off unless
// Config.Actions; each is a POST from a confirmation page, protected against
// cross-site requests (Go's CrossOriginProtection and a double-submit token), and
// logged. A console listening on an address other than loopback must have an auth
// setting (a bearer token or basic auth), or it refuses to start.
package console
