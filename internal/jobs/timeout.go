package jobs

import (
	"fmt"
	"time"

	"github.com/taskbridge/taskbridge/internal/awslimit"
)

// MaxTimeout is the longest one run of a job may be given. A run longer than SQS's
// 12 h visibility cap is handed on under a lease (internal/consumer, handover.go),
// so SQS sets no bound; Step Functions does: a Standard execution runs at most a
// year, and its task closes with it.
const MaxTimeout = awslimit.StepFunctionsMaxExecution

// CheckTimeout refuses a job timeout the worker cannot honour, with the reason.
func CheckTimeout(d time.Duration) error {
	if d > MaxTimeout {
		return fmt.Errorf("timeout %s cannot be honoured: a Step Functions Standard execution runs at most a year (8760h), and its task closes with it", d)
	}
	return nil
}
