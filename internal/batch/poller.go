package batch

import "time"

// StartTimeoutDefault bounds StartJobRun's retries when Config.StartTimeout is 0.
const StartTimeoutDefault = 5 * time.Minute

// PollerConcurrency is how many messages the landing queue's poller must be able to
// hold: a batch keeps each of its files' messages in flight (invisible, not deleted)
// until its Glue run starts, so fewer slots than a full batch would never flush by
// count. configured is the topology's concurrency; the larger of the two wins.
func (c Config) PollerConcurrency(configured int) int {
	return max(configured, c.MaxFiles+10) // +10: the next batch's first files
}

// HandlerTimeout is how long one landing message may stay in hand. A batch waits
// out Glue's ConcurrentRunsExceeded however long it lasts (a run of the job may take
// hours), so this is what SQS allows: a message's visibility can be extended up to
// 12 h after its receive; 11 h 30 m leaves room for the extender's last renewal.
// A message released then comes back and finds its file's claim (claim.go).
func (c Config) HandlerTimeout() time.Duration {
	return maxHold
}

// maxHold is the longest a landing message is held (see HandlerTimeout).
const maxHold = 11*time.Hour + 30*time.Minute
