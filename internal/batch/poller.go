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

// HandlerTimeout is how long one landing message may stay in hand: a whole window,
// then the start of the run, with a minute to spare.
func (c Config) HandlerTimeout() time.Duration {
	start := c.StartTimeout
	if start == 0 {
		start = StartTimeoutDefault
	}
	return c.Window + start + time.Minute
}
