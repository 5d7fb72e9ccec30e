// Package callback reports the outcome of Step Functions callback tasks:
// SendTaskSuccess, SendTaskFailure and SendTaskHeartbeat, cut to the API's limits,
// with outputs over the size limit stored in S3 (a claim check). A task that is
// already closed is a finished outcome (TaskClosedError), not an error to retry. It
// imports no sibling package but leaf helpers (awsjson, telemetry, throttle);
// internal/jobs declares the interface it satisfies.
package callback

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/smithy-go"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/taskbridge/taskbridge/internal/awsjson"
	"github.com/taskbridge/taskbridge/internal/awslimit"
	"github.com/taskbridge/taskbridge/internal/telemetry"
	"github.com/taskbridge/taskbridge/internal/throttle"
	"github.com/taskbridge/taskbridge/internal/tracing"
)

// Limits of the Step Functions API.
const (
	MaxOutputBytes = awslimit.StepFunctionsPayloadBytes // SendTaskSuccess output: 256 KiB
	MaxErrorLen    = 256                                // SendTaskFailure error
	MaxCauseLen    = 32768                              // SendTaskFailure cause
)

type sfnAPI interface {
	SendTaskSuccess(ctx context.Context, in *sfn.SendTaskSuccessInput, optFns ...func(*sfn.Options)) (*sfn.SendTaskSuccessOutput, error)
	SendTaskFailure(ctx context.Context, in *sfn.SendTaskFailureInput, optFns ...func(*sfn.Options)) (*sfn.SendTaskFailureOutput, error)
	SendTaskHeartbeat(ctx context.Context, in *sfn.SendTaskHeartbeatInput, optFns ...func(*sfn.Options)) (*sfn.SendTaskHeartbeatOutput, error)
	DescribeExecution(ctx context.Context, in *sfn.DescribeExecutionInput, optFns ...func(*sfn.Options)) (*sfn.DescribeExecutionOutput, error)
}

type s3API interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// Config of the reporter.
type Config struct {
	// DataBucket is where outputs over MaxOutputBytes are stored (claim checks).
	// Without it such an output cannot be reported and Succeed returns an error.
	DataBucket string
	// ClaimCheckPrefix is the key prefix of claim-checked outputs (default "claim-checks/").
	ClaimCheckPrefix string
	// Limits holds a client-side rate limiter per API, shared by the process, named
	// by the API (SendTaskSuccess, SendTaskFailure, SendTaskHeartbeat); nil or a
	// missing API: no limit. A throttle answer is waited out (backoff, a lower
	// rate) and tried again for as long as the call's context lives; the sfn client
	// should then not retry throttles itself (throttle.LeaveThrottles).
	Limits *throttle.Set
	// AttemptTimeout bounds one attempt of a call (default 10 s); the call's context
	// bounds all of them, throttle waits included.
	AttemptTimeout time.Duration
}

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.DataBucket == "" {
		errs = append(errs, errors.New("callback: no data bucket for claim checks"))
	}
	if strings.HasPrefix(c.ClaimCheckPrefix, "/") {
		errs = append(errs, fmt.Errorf("callback: claim check prefix %q starts with /", c.ClaimCheckPrefix))
	}
	return errors.Join(errs...)
}

// StepFunctions reports task outcomes. Safe for concurrent use.
type StepFunctions struct {
	cfg     Config
	sfn     sfnAPI
	s3      s3API
	log     *zap.Logger
	metrics *Metrics
}

// New returns a reporter.
func New(cfg Config, sfnClient sfnAPI, s3Client s3API, log *zap.Logger, m *Metrics) *StepFunctions {
	if cfg.ClaimCheckPrefix == "" {
		cfg.ClaimCheckPrefix = "claim-checks/"
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = 10 * time.Second
	}
	return &StepFunctions{cfg: cfg, sfn: sfnClient, s3: s3Client, log: log.With(zap.String("component", "callback")), metrics: m}
}

// Succeed sends SendTaskSuccess with output, a JSON document. HTML escapes in it
// (\u003c, \u003e, \u0026, as json.Marshal writes them) are sent as the characters
// they stand for: the same JSON, up to six times smaller. An output still over the
// 256 KiB limit is stored in the data bucket and {"claimCheck": "s3://…", "size": N}
// is sent instead.
//
// An output that is not JSON is a bug of the caller: it is refused with an error
// before any call, as is an empty token. Every refusal counts as outcome "error".
func (s *StepFunctions) Succeed(ctx context.Context, token string, output []byte) error {
	const api = throttle.SendTaskSuccess
	if !json.Valid(output) {
		return s.refuse(api, fmt.Errorf("%s: output of %d bytes is not valid JSON", api, len(output)))
	}
	if token == "" {
		return s.refuse(api, fmt.Errorf("%s: empty task token", api))
	}
	output, err := s.Fit(ctx, awsjson.UnescapeHTML(output))
	if err != nil {
		return s.refuse(api, fmt.Errorf("%s: %w", api, err))
	}
	return s.call(ctx, api, token, func(ctx context.Context) error {
		_, err := s.sfn.SendTaskSuccess(ctx, &sfn.SendTaskSuccessInput{TaskToken: aws.String(token), Output: aws.String(string(output))})
		return err
	})
}

// Fail sends SendTaskFailure; code and cause are cut to the API limits on a UTF-8
// boundary.
func (s *StepFunctions) Fail(ctx context.Context, token, code, cause string) error {
	return s.call(ctx, throttle.SendTaskFailure, token, func(ctx context.Context) error {
		_, err := s.sfn.SendTaskFailure(ctx, &sfn.SendTaskFailureInput{
			TaskToken: aws.String(token), Error: aws.String(cut(code, MaxErrorLen)), Cause: aws.String(cut(cause, MaxCauseLen)),
		})
		return err
	})
}

// Heartbeat sends SendTaskHeartbeat.
func (s *StepFunctions) Heartbeat(ctx context.Context, token string) error {
	return s.call(ctx, throttle.SendTaskHeartbeat, token, func(ctx context.Context) error {
		_, err := s.sfn.SendTaskHeartbeat(ctx, &sfn.SendTaskHeartbeatInput{TaskToken: aws.String(token)})
		return err
	})
}

// call sends one callback: after a token of api's limiter, each attempt within
// AttemptTimeout, throttle answers waited out until ctx ends.
func (s *StepFunctions) call(ctx context.Context, limited throttle.API, token string, send func(context.Context) error) error {
	api := string(limited)
	if token == "" {
		return s.refuse(limited, fmt.Errorf("%s: empty task token", api))
	}
	ctx, span := tracing.Start(ctx, "callback", api, trace.SpanKindInternal) // throttle waits included
	began := time.Now()
	err := classify(api, throttle.Do(ctx, s.cfg.Limits.Get(limited), s.cfg.AttemptTimeout, send))
	tracing.Observe(ctx, s.metrics.duration.WithLabelValues(api), time.Since(began).Seconds())
	tracing.End(span, err)
	s.metrics.calls.WithLabelValues(api, outcome(ctx, err)).Inc()
	if IsTaskClosed(err) {
		s.log.Info("task already closed", zap.String("api", api), telemetry.Token(token), zap.Error(err))
	}
	return err
}

// refuse counts a call that was never sent and returns its error.
func (s *StepFunctions) refuse(api throttle.API, err error) error {
	s.metrics.calls.WithLabelValues(string(api), "error").Inc()
	return err
}

// Fit returns a JSON document that fits what Step Functions takes (MaxOutputBytes):
// doc itself when it fits, else the claim check {"claimCheck": "s3://…", "size": N}
// of doc stored in the data bucket. The key is content-addressed, so a retry
// writes the same object. For every payload that goes into Step Functions: task
// outputs, and execution inputs (startjob).
func (s *StepFunctions) Fit(ctx context.Context, doc []byte) ([]byte, error) {
	if len(doc) <= MaxOutputBytes {
		return doc, nil
	}
	return s.claimCheck(ctx, doc)
}

// claimCheck stores an oversized output under a content-addressed key (a retry
// writes the same object) and returns the pointer to send instead.
func (s *StepFunctions) claimCheck(ctx context.Context, output []byte) ([]byte, error) {
	if s.cfg.DataBucket == "" {
		return nil, fmt.Errorf("output of %d bytes is over the %d byte limit and no data bucket is set for a claim check", len(output), MaxOutputBytes)
	}
	sum := sha256.Sum256(output)
	key := s.cfg.ClaimCheckPrefix + hex.EncodeToString(sum[:]) + ".json"
	if _, err := s.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.cfg.DataBucket), Key: aws.String(key), Body: bytes.NewReader(output), ContentType: aws.String("application/json"),
	}); err != nil {
		return nil, fmt.Errorf("store claim check %s: %w", key, err)
	}
	s.metrics.claimChecks.Inc()
	return awsjson.Marshal(map[string]any{"claimCheck": "s3://" + s.cfg.DataBucket + "/" + key, "size": len(output)})
}

// KeepAlive sends a heartbeat for token every interval, the first one interval from
// now, until the returned stop is called or ctx is done, and returns the context the
// job runs under: ctx, cancelled when the task is found closed. stop waits for the
// heartbeat goroutine to end and may be called more than once; it cancels the
// returned context too (call it once the job has returned). An interval of 0 (or an
// empty token) sends none and returns ctx itself.
//
// A task found closed for sure ends the heartbeats and cancels the returned context
// with the cause closedCause(err) (err itself when closedCause is nil), err being
// the *TaskClosedError. TaskTimedOut and TaskDoesNotExist are closed for sure.
// InvalidToken is not: AWS says it of a malformed token, and moto says it of a live
// task whose step has no HeartbeatSeconds (and, for a moment, of a very young
// task). So an InvalidToken is checked against the execution (executionArn,
// DescribeExecution): RUNNING means the task may be live, and the heartbeats go on;
// any other status closes it. Without an executionArn an InvalidToken ends the
// heartbeats and closes nothing. Other errors (throttling, network, 5xx, a failed
// DescribeExecution) never close the task: they are logged at warn and the next
// tick tries again. A heartbeat in flight when stop is called or ctx is cancelled
// (the job ended) is abandoned, not failed: it counts as outcome "cancelled" and
// logs nothing.
func (s *StepFunctions) KeepAlive(ctx context.Context, token, executionArn string, every time.Duration, closedCause func(error) error) (jobCtx context.Context, stop func()) {
	if every <= 0 || token == "" {
		return ctx, func() {}
	}
	// One context for the heartbeats and the job: what ends one ends the other, and
	// a message with heartbeats costs no more than one context for both.
	ctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if ctx.Err() != nil { // the tick and the stop came together
					return
				}
				err := s.Heartbeat(ctx, token)
				if IsTaskClosed(err) {
					err = s.confirmClosed(ctx, err, executionArn)
				}
				var c *TaskClosedError
				switch {
				case errors.As(err, &c) && c.Confirmed():
					if closedCause == nil {
						cancel(c)
					} else {
						cancel(closedCause(c))
					}
					return
				case errors.As(err, &c): // InvalidToken with nothing to check it against
					return
				case err != nil && ctx.Err() == nil:
					s.log.Warn("heartbeat failed", telemetry.Token(token), zap.Error(err))
				}
			}
		}
	})
	return ctx, func() { cancel(nil); wg.Wait() }
}

// confirmClosed tells a closed task from moto's InvalidToken for a live one (see
// KeepAlive): it returns err itself when the code is sure, err with the execution's
// status when that is not RUNNING, nil when it is RUNNING (live: beat on), and a
// plain error when the execution could not be read (a transient doubt).
func (s *StepFunctions) confirmClosed(ctx context.Context, err error, executionArn string) error {
	var c *TaskClosedError
	if !errors.As(err, &c) || c.Code != "InvalidToken" || executionArn == "" {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, s.cfg.AttemptTimeout)
	defer cancel()
	out, derr := s.sfn.DescribeExecution(actx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(executionArn)})
	switch {
	case derr != nil:
		var apiErr smithy.APIError
		if errors.As(derr, &apiErr) && apiErr.ErrorCode() == "ExecutionDoesNotExist" {
			return &TaskClosedError{API: c.API, Code: c.Code, ExecutionStatus: "DOES_NOT_EXIST", err: c.err}
		}
		return fmt.Errorf("heartbeat answered %s; describe execution: %w", c.Code, derr)
	case out.Status == sfntypes.ExecutionStatusRunning:
		s.log.Debug("heartbeat answered InvalidToken but the execution runs: the task is taken as live")
		return nil
	}
	return &TaskClosedError{API: c.API, Code: c.Code, ExecutionStatus: string(out.Status), err: c.err}
}

// cut shortens s to at most n bytes without splitting a UTF-8 sequence.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) { // s[n] is the first byte left out
		n--
	}
	return s[:n]
}
