//go:build chaos

package main_test

import (
	"fmt"
	"testing"
)

// TestChaosBatchExactlyOnce1000Files is issue 19's full proof (the normal suite runs
// 200 files): 1,000 files, 10 % of their events twice, two batchers, one SIGKILLed
// and restarted midway, as soon as it made its first claim (mid-flush: its claims
// are taken over, or its run found, by the others); every file in exactly one
// started run, none lost.
func TestChaosBatchExactlyOnce1000Files(t *testing.T) {
	r := runBatchExactlyOnce(t, 1000, true)
	record(t, chaosRow{fmt.Sprintf("1,000 S3 files + %d duplicate events, 2 batchers, one SIGKILLed mid-flush (%d runs, %d in two, %.0f claims taken over)", r.duplicates, r.runs, r.twice, r.takenOver),
		r.files + r.duplicates, r.files - r.lost, r.duplicates, 0, r.lost, r.took})
}
