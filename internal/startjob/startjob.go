// Package startjob starts a state machine per event: the "startExecution" job kind
// of a topology, the way seed flows chain (etl-success starts the next workflow).
//
// The execution's input is the event's detail (minus a TaskToken, if it carries
// one). Its name is derived from the EventBridge event id, so a duplicated or
// redelivered event starts one execution: ExecutionAlreadyExists counts as done.
// (A plain EventBridge rule → Step Functions target cannot promise this.)
//
// Step Functions answers a repeated StartExecution with the same name and input
// while that execution still runs with success and the same ARN; after it closed,
// or with another input, with ExecutionAlreadyExists. Both are "done" here.
package startjob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/smithy-go"
	"go.uber.org/zap"

	"github.com/taskbridge/taskbridge/internal/awslimit"
	"github.com/taskbridge/taskbridge/internal/jobs"
	"github.com/taskbridge/taskbridge/internal/throttle"
)

// sfnAPI is what the job calls of Step Functions; *sfn.Client satisfies it. It must
// be safe for concurrent use; its retryer retries 5xx already, and throttling
// unless a Limiter is configured (then throttle.Do waits it out).
type sfnAPI interface {
	StartExecution(ctx context.Context, in *sfn.StartExecutionInput, optFns ...func(*sfn.Options)) (*sfn.StartExecutionOutput, error)
}

// Config of one startExecution queue.
type Config struct {
	// StateMachine is the topology's name of the state machine to start.
	StateMachine string
	// StateMachineARN is its ARN, filled by the wiring from the topology's stack.
	StateMachineARN string
	// Limiter, filled by the wiring, is the process's StartExecution limiter; nil:
	// no limit, the SDK's retryer deals with throttles.
	Limiter *throttle.Limiter
	// ThrottleTimeout, with a Limiter, is how long one message may wait Step
	// Functions' throttling out (default 15 min) while the consumer keeps it
	// invisible; each attempt has its own 10 s.
	ThrottleTimeout time.Duration
	// FitFunc, filled by the wiring, turns an input over Step Functions' 256 KiB
	// (awslimit.StepFunctionsPayloadBytes) into a claim check in the data bucket
	// (callback's StepFunctions.Fit); an input that fits is returned as it is. nil:
	// such an input fails the task at once, no retry makes it fit. Events carry up
	// to 1 MB since 2026-01-29, so an event can be larger than an execution takes.
	FitFunc func(ctx context.Context, input []byte) ([]byte, error)
}

// attemptTimeout bounds one StartExecution attempt, the SDK's retries included.
const attemptTimeout = 10 * time.Second

// HandlerTimeout is the deadline the consumer should give one message: one
// StartExecution call with the SDK's retries, or with a Limiter the time it may
// wait throttling out.
func (c Config) HandlerTimeout() time.Duration {
	switch {
	case c.Limiter == nil:
		return 30 * time.Second
	case c.ThrottleTimeout > 0:
		return c.ThrottleTimeout
	default:
		return 15 * time.Minute
	}
}

var stateMachineARN = regexp.MustCompile(`^arn:[a-z0-9-]+:states:[a-z0-9-]*:[0-9]*:stateMachine:[A-Za-z0-9_-]{1,80}$`)

// Validate reports every problem of the config at once. An empty StateMachineARN
// is allowed here (the topology is validated before its stack is known); New
// refuses it.
func (c Config) Validate() error {
	var errs []error
	if c.StateMachine == "" {
		errs = append(errs, errors.New("stateMachine is empty"))
	}
	if c.StateMachineARN != "" && !stateMachineARN.MatchString(c.StateMachineARN) {
		errs = append(errs, fmt.Errorf("stateMachineArn %q is not a state machine ARN", c.StateMachineARN))
	}
	return errors.Join(errs...)
}

// Job starts one queue's executions. Run may be called concurrently.
type Job struct {
	name string
	cfg  Config
	sfn  sfnAPI
	log  *zap.Logger
	m    *Metrics
}

// New checks cfg. client is *sfn.Client in the worker; m may be shared by every
// startExecution queue, nil keeps the metrics unregistered.
func New(job string, cfg Config, client sfnAPI, log *zap.Logger, m *Metrics) (*Job, error) {
	err := cfg.Validate()
	if cfg.StateMachineARN == "" {
		err = errors.Join(err, fmt.Errorf("stateMachineArn of %q is not resolved", cfg.StateMachine))
	}
	if err != nil {
		return nil, fmt.Errorf("startExecution job %s: %w", job, err)
	}
	if client == nil {
		panic("startjob.New: nil Step Functions client")
	}
	if m == nil {
		m = newMetrics()
	}
	m.init(job)
	return &Job{name: job, cfg: cfg, sfn: client, log: log.With(zap.String("job", job)), m: m}, nil
}

// Output is the task output of a started (or already started) execution.
type Output struct {
	ExecutionArn string `json:"executionArn"`
	Started      bool   `json:"started"` // false: an earlier delivery started it
}

// Run starts the execution of t's event, once.
func (j *Job) Run(ctx context.Context, t *jobs.Task) (any, error) {
	input, err := t.DetailWithoutToken()
	if err != nil {
		return nil, err
	}
	if len(input) == 0 {
		input = json.RawMessage(`{}`)
	}
	if !json.Valid(input) {
		return nil, jobs.Invalid("InvalidInput", fmt.Errorf("detail of %s is not JSON", t.DetailType))
	}
	if len(input) > awslimit.StepFunctionsPayloadBytes {
		if j.cfg.FitFunc == nil {
			return nil, jobs.Permanent("InputTooLarge", fmt.Errorf("input of %d bytes is over Step Functions' %d byte limit and no data bucket is set for a claim check", len(input), awslimit.StepFunctionsPayloadBytes))
		}
		// Content-addressed: every delivery of the event makes the same pointer, so
		// the execution name and its input stay one pair (see the package doc).
		if input, err = j.cfg.FitFunc(ctx, input); err != nil {
			return nil, fmt.Errorf("claim-check the input of %s: %w", j.cfg.StateMachine, err)
		}
	}
	id := t.EventID
	if id == "" {
		id = t.MessageID // not from EventBridge: SQS keeps a message's id across receives
	}
	name := ExecutionName(id)
	var out *sfn.StartExecutionOutput
	err = throttle.Do(ctx, j.cfg.Limiter, attemptTimeout, func(ctx context.Context) error {
		var err error
		out, err = j.sfn.StartExecution(ctx, &sfn.StartExecutionInput{
			StateMachineArn: aws.String(j.cfg.StateMachineARN),
			Name:            aws.String(name),
			Input:           aws.String(string(input)),
		})
		return err
	})
	switch code := errorCode(err); {
	case err == nil:
		j.m.starts.WithLabelValues(j.name, "started").Inc()
		j.log.Debug("execution started", zap.String("execution_arn", aws.ToString(out.ExecutionArn)))
		return Output{ExecutionArn: aws.ToString(out.ExecutionArn), Started: true}, nil
	case code == "ExecutionAlreadyExists":
		j.m.starts.WithLabelValues(j.name, "already_started").Inc()
		arn := executionARN(j.cfg.StateMachineARN, name)
		j.log.Debug("execution already started", zap.String("execution_arn", arn))
		return Output{ExecutionArn: arn, Started: false}, nil
	case permanent[code]:
		j.m.starts.WithLabelValues(j.name, "error").Inc()
		return nil, jobs.Permanent(code, fmt.Errorf("start %s as %s: %w", j.cfg.StateMachine, name, err))
	default:
		j.m.starts.WithLabelValues(j.name, "error").Inc()
		return nil, fmt.Errorf("start %s as %s: %w", j.cfg.StateMachine, name, err)
	}
}

// permanent are the StartExecution error codes no retry can fix.
var permanent = map[string]bool{
	"InvalidExecutionInput":    true,
	"InvalidName":              true,
	"InvalidArn":               true,
	"StateMachineDoesNotExist": true,
	"StateMachineDeleting":     true,
	"ValidationException":      true,
	"AccessDeniedException":    true,
}

// errorCode is the API error code of err, "" for nil or a non-API error (a
// connection failure: a retry).
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// maxName is Step Functions' limit on execution names.
const maxName = 80

var safeID = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// ExecutionName is the execution name for an event id: "ev-" and the id when the
// id is made of [A-Za-z0-9_-] and fits, else "eh-" and the SHA-256 of the id in hex
// (no two ids share a name; the prefixes keep the two forms apart).
func ExecutionName(eventID string) string {
	if eventID != "" && len("ev-")+len(eventID) <= maxName && safeID.MatchString(eventID) {
		return "ev-" + eventID
	}
	sum := sha256.Sum256([]byte(eventID))
	return "eh-" + hex.EncodeToString(sum[:])
}

// executionARN is the ARN of execution name of the state machine arn.
func executionARN(stateMachine, name string) string {
	return strings.Replace(stateMachine, ":stateMachine:", ":execution:", 1) + ":" + name
}
