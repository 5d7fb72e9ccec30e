// Package loadtest is what the benchmarks, the soak and the chaos runs measure with:
// a naive SQS consumer to compare the worker against, a count of the HTTP requests a
// client makes, the CPU time and memory of a process, and callback latencies read
// from Step Functions execution histories. The worker itself never imports it.
package loadtest
