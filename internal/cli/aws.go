package cli

import (
	"context"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/glue"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskbridge/taskbridge/internal/bootstrap"
	"github.com/taskbridge/taskbridge/internal/config"
	"github.com/taskbridge/taskbridge/internal/throttle"
	"github.com/taskbridge/taskbridge/internal/topology"
	"github.com/taskbridge/taskbridge/internal/tracing"
)

// loadAWS loads the SDK's configuration the SDK's way: AWS_REGION, AWS_ENDPOINT_URL,
// and the default credential chain. No endpoint plumbing of our own. Its clients'
// connections are dialed through conns.
func loadAWS(ctx context.Context, conns *connTracker) (aws.Config, error) {
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) { tr.DialContext = conns.dial(tr.DialContext) })
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithHTTPClient(httpClient))
	if err != nil {
		return aws.Config{}, fmt.Errorf("load aws config: %w", err)
	}
	if cfg.Region == "" {
		return aws.Config{}, fmt.Errorf("load aws config: no region (set AWS_REGION)")
	}
	tracing.InstrumentAWS(&cfg) // a span per call made under a span; none while tracing is off
	return cfg, nil
}

// newClients builds every client once. S3 uses path-style URLs against a custom
// endpoint (emulators serve buckets by path), unless WORKER_S3_PATH_STYLE says
// otherwise.
func newClients(awsCfg aws.Config, cfg config.Config) bootstrap.Clients {
	pathStyle := s3PathStyle(awsCfg, cfg)
	return bootstrap.Clients{
		SQS:         sqs.NewFromConfig(awsCfg),
		EventBridge: eventbridge.NewFromConfig(awsCfg),
		S3:          s3.NewFromConfig(awsCfg, s3Options(pathStyle)),
		SFN:         sfn.NewFromConfig(awsCfg),
		Glue:        glue.NewFromConfig(awsCfg),
		STS:         sts.NewFromConfig(awsCfg),
	}
}

// s3PathStyle: path-style URLs against a custom endpoint (emulators serve buckets
// by path), unless WORKER_S3_PATH_STYLE says otherwise.
// limitedSFN is the Step Functions client of the calls that wait on a
// throttle.Limiter (SendTask*, StartExecution): its retryer leaves throttle answers
// to throttle.Do, so they never draw on the SDK's retry quota.
func limitedSFN(awsCfg aws.Config) *sfn.Client {
	return sfn.NewFromConfig(awsCfg, func(o *sfn.Options) { o.Retryer = throttle.LeaveThrottles(o.Retryer) })
}

// sfnLimits is one limiter per Step Functions API the worker calls per message,
// for the whole process (rates: see config).
func sfnLimits(cfg config.Config, reg prometheus.Registerer) *throttle.Set {
	return throttle.NewSet("sfn", reg, throttle.Rates{Callback: cfg.SFNCallbackRate, Start: cfg.SFNStartRate})
}

func s3PathStyle(awsCfg aws.Config, cfg config.Config) bool {
	if cfg.S3PathStyle != nil {
		return *cfg.S3PathStyle
	}
	return awsCfg.BaseEndpoint != nil
}

func (s setup) pathStyle() bool { return s3PathStyle(s.aws, s.cfg) }

// proveBeforeAnswer is jobs.RouterConfig.ProveBeforeAnswer: asked for, or on when an
// endpoint is set (a local emulator), like the S3 path style.
func (s setup) proveBeforeAnswer() bool {
	if s.cfg.ProveBeforeAnswer != nil {
		return *s.cfg.ProveBeforeAnswer
	}
	return s.aws.BaseEndpoint != nil
}

func s3Options(pathStyle bool) func(*s3.Options) {
	return func(o *s3.Options) {
		o.UsePathStyle = pathStyle
		// Objects written without a checksum (by emulators, older clients) are fine
		// to read; the SDK's note about each is a plain-text line on stderr, among
		// the JSON logs.
		o.DisableLogOutputChecksumValidationSkipped = true
	}
}

// stackOf names the stack the configuration points at.
func stackOf(cfg config.Config) bootstrap.Stack {
	return bootstrap.Stack{
		Names:    topology.Names{Stack: cfg.Stack},
		EventBus: cfg.EventBus, DataBucket: cfg.DataBucket, LandingBucket: cfg.LandingBucket, GlueJob: cfg.GlueJob,
	}
}

// setup is what every AWS-facing subcommand starts with.
type setup struct {
	cfg     config.Config
	aws     aws.Config
	clients bootstrap.Clients
	topo    *topology.Topology
	conns   *connTracker // the clients' connections; a Run closes them as it returns
}

func newSetup(ctx context.Context, registered Jobs) (setup, error) {
	cfg, err := config.LoadFrom(registered.lookup())
	if err != nil {
		return setup{}, fmt.Errorf("configuration:\n%w", err)
	}
	topo, err := loadTopology(cfg.Topology, registered)
	if err != nil {
		return setup{}, err
	}
	conns := newConnTracker()
	awsCfg, err := loadAWS(ctx, conns)
	if err != nil {
		return setup{}, err
	}
	return setup{cfg: cfg, aws: awsCfg, clients: newClients(awsCfg, cfg), topo: topo, conns: conns}, nil
}

func (s setup) bootstrapper() *bootstrap.Bootstrapper {
	return bootstrap.New(s.topo, stackOf(s.cfg), s.clients, s.aws.Region)
}
