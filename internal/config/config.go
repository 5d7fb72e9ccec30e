// Package config is the worker's environment configuration: the WORKER_* variables,
// their defaults, validation that reports every wrong value at once, and the usage
// text of `worker config`. AWS settings (AWS_REGION, AWS_ENDPOINT_URL, credentials)
// are left to the AWS SDK's own loading.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/taskbridge/taskbridge/internal/topology"
)

// Prefix of every worker variable.
const Prefix = "WORKER"

// DefaultConsoleAddr is where `worker console` listens unless told: loopback only.
const DefaultConsoleAddr = "127.0.0.1:8080"

// Roles a process can run.
const (
	RoleJobs  = "jobs"
	RoleBatch = "batch"
)

// Config is filled from WORKER_* variables. The desc tags are what `worker config`
// prints; keep them the contract for each field.
type Config struct {
	Stack         string `envconfig:"STACK" default:"taskbridge" desc:"name prefix of every AWS resource of the stack (bus, queues, buckets, state machines, Glue job); 2-31 lowercase letters, digits or dashes"`
	EventBus      string `envconfig:"EVENT_BUS" desc:"event bus name (default: <stack>)"`
	DataBucket    string `envconfig:"DATA_BUCKET" desc:"bucket for profiles, reports, manifests and claim checks (default: <stack>-data)"`
	LandingBucket string `envconfig:"LANDING_BUCKET" desc:"bucket whose Object Created events feed the batcher (default: <stack>-landing)"`
	GlueJob       string `envconfig:"GLUE_JOB" desc:"Glue job the batcher starts (default: <stack>-etl)"`

	Topology string `envconfig:"TOPOLOGY" desc:"topology file: queues, what each runs, routing, state machines (default: the embedded cookies topology); ASL paths and relative commands resolve from its folder"`

	Roles       []string `envconfig:"ROLES" default:"jobs,batch" desc:"what this process runs: jobs, batch, or both (comma-separated)"`
	Concurrency *int     `envconfig:"CONCURRENCY" desc:"jobs in flight per queue per process, >= 1 (default: each queue's concurrency in the topology)"`

	MaxPollers       int           `envconfig:"MAX_POLLERS" default:"4" desc:"receive loops per queue while it is busy, >= 1 (an idle queue uses one: a long poll per POLL_WAIT)"`
	PollWait         time.Duration `envconfig:"POLL_WAIT" default:"20s" desc:"SQS long-poll wait per ReceiveMessage, 1s..20s"`
	JobTimeout       time.Duration `envconfig:"JOB_TIMEOUT" default:"5m" desc:"deadline of one job run; its context is cancelled after it"`
	HeartbeatEvery   time.Duration `envconfig:"HEARTBEAT_INTERVAL" default:"60s" desc:"SendTaskHeartbeat period while a callback job runs; 0 turns heartbeats off"`
	ShutdownTimeout  time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"25s" desc:"on SIGTERM, how long in-flight jobs may finish before they are released (keep below ECS stopTimeout, 30s by default)"`
	S3PathStyle      *bool         `envconfig:"S3_PATH_STYLE" desc:"path-style S3 URLs (default: true when AWS_ENDPOINT_URL is set, for local emulators)"`
	BatchMaxFiles    int           `envconfig:"BATCH_MAX_FILES" default:"100" desc:"files that flush a batch, 1..10000"`
	BatchWindow      time.Duration `envconfig:"BATCH_WINDOW" default:"15m" desc:"time after a batch's first file that flushes it, 1s..12h"`
	BatchKeyPrefix   string        `envconfig:"BATCH_KEY_PREFIX" desc:"only landing keys with this prefix are batched (empty: all)"`
	GluePollInterval time.Duration `envconfig:"GLUE_POLL_INTERVAL" default:"10s" desc:"how often a started Glue run is checked (GetJobRun)"`
	// Step Functions' API quotas are token buckets per account and region: in
	// us-east-1, us-west-2 and eu-west-1 SendTaskSuccess/Failure/Heartbeat each
	// refill 500/s into a bucket of 3,000 and StartExecution 300/s into 1,300;
	// elsewhere 300/s into 1,500 and 150/s into 800
	// (https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html).
	// Each process holds its own limiter per API; it adapts down on throttling.
	SFNCallbackRate float64       `envconfig:"SFN_CALLBACK_RATE" default:"500" desc:"most SendTaskSuccess, SendTaskFailure and SendTaskHeartbeat calls per second each, per process (burst: 6 s of it); lowered at run time while Step Functions throttles"`
	SFNStartRate    float64       `envconfig:"SFN_START_RATE" default:"300" desc:"most StartExecution calls per second per process (burst: 13/3 s of it); lowered at run time while Step Functions throttles"`
	ReportTimeout   time.Duration `envconfig:"REPORT_TIMEOUT" default:"15m" desc:"how long a job's outcome report (SendTask*) or a StartExecution may wait out Step Functions throttling while the message stays invisible; a stop still ends it"`

	TaskProtectionMinutes int           `envconfig:"TASK_PROTECTION_MINUTES" default:"15" desc:"on ECS (ECS_AGENT_URI set): task scale-in protection per enable or renewal while messages are in hand, in minutes, renewed at half; 1..2880, 0 turns protection off"`
	TaskProtectionGrace   time.Duration `envconfig:"TASK_PROTECTION_GRACE" default:"5s" desc:"idle time after which a process drops its scale-in protection"`

	MetricsAddr string `envconfig:"METRICS_ADDR" default:":9090" desc:"listen address of /metrics, /healthz and /readyz; empty turns the server off"`
	LogLevel    string `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat   string `envconfig:"LOG_FORMAT" default:"json" desc:"json or console"`
	// The console (`worker console`, internal/console) reads the same stack; these
	// fields are read only by that command.
	ConsoleAddr      string        `envconfig:"CONSOLE_ADDR" desc:"listen address of the web console (worker console --addr; default: 127.0.0.1:8080); an address other than loopback needs CONSOLE_TOKEN or CONSOLE_BASIC_AUTH"`
	ConsoleToken     string        `envconfig:"CONSOLE_TOKEN" desc:"console auth: a bearer token (Authorization: Bearer ...); browsers sign in with any user name and this as the password"`
	ConsoleBasicAuth string        `envconfig:"CONSOLE_BASIC_AUTH" desc:"console auth: user:password for HTTP basic auth"`
	ConsoleActions   bool          `envconfig:"CONSOLE_ACTIONS" default:"false" desc:"let the console redrive and purge dead letters (worker console --actions); off: the console only reads"`
	ConsoleMetrics   []string      `envconfig:"CONSOLE_METRICS" desc:"host:port of the workers' metrics servers (their WORKER_METRICS_ADDR), comma-separated; the console's stack page shows each one's /readyz"`
	ConsoleCacheTTL  time.Duration `envconfig:"CONSOLE_CACHE_TTL" default:"5s" desc:"how long the console reuses what it read from AWS before reading again (each page shows the age); 0 reads on every request"`

	// TraceFile is where OTEL_TRACES_EXPORTER=console writes spans (docs/tracing.md).
	TraceFile string `envconfig:"TRACE_FILE" desc:"file the console trace exporter (OTEL_TRACES_EXPORTER=console) appends spans to, one JSON object a line; empty writes them to stdout. Tracing itself is set by the standard OTEL_* variables, off by default"`
}

// stackName is the rule Terraform's var.stack enforces too: every resource name is
// derived from it, and S3 bucket names allow only lowercase letters, digits and dashes.
var stackName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,30}$`)

// Load reads the environment into a Config, fills derived defaults and validates.
func Load() (Config, error) {
	var c Config
	if err := envconfig.Process(Prefix, &c); err != nil {
		return Config{}, plainParseError(err)
	}
	c.fillDerived()
	return c, c.Validate()
}

func (c *Config) fillDerived() {
	names := topology.Names{Stack: c.Stack} // the one naming rule of a stack
	c.EventBus = cmp.Or(c.EventBus, names.EventBus())
	c.DataBucket = cmp.Or(c.DataBucket, names.DataBucket())
	c.LandingBucket = cmp.Or(c.LandingBucket, names.LandingBucket())
	c.GlueJob = cmp.Or(c.GlueJob, names.GlueJob())
	// Not an envconfig default: it would widen the DEFAULT column of `worker config`.
	c.ConsoleAddr = cmp.Or(c.ConsoleAddr, DefaultConsoleAddr)
	for i, r := range c.Roles {
		c.Roles[i] = strings.TrimSpace(strings.ToLower(r))
	}
}

// HasRole reports whether this process runs role.
func (c Config) HasRole(role string) bool { return slices.Contains(c.Roles, role) }

// Validate reports every wrong value, each naming its variable.
func (c Config) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s_%s: %s", Prefix, name, fmt.Sprintf(format, args...)))
	}
	if !stackName.MatchString(c.Stack) {
		bad("STACK", "must be 2-31 lowercase letters, digits or dashes, starting with a letter or digit, got %q", c.Stack)
	}
	if len(c.Roles) == 0 {
		bad("ROLES", "must name at least one of %s, %s", RoleJobs, RoleBatch)
	}
	for _, r := range c.Roles {
		if r != RoleJobs && r != RoleBatch {
			bad("ROLES", "unknown role %q (want %s or %s)", r, RoleJobs, RoleBatch)
		}
	}
	if c.Concurrency != nil && *c.Concurrency < 1 {
		bad("CONCURRENCY", "must be >= 1, got %d", *c.Concurrency)
	}
	if c.MaxPollers < 1 {
		bad("MAX_POLLERS", "must be >= 1, got %d", c.MaxPollers)
	}
	if c.PollWait < time.Second || c.PollWait > 20*time.Second {
		bad("POLL_WAIT", "must be between 1s and 20s, got %s", c.PollWait)
	}
	if c.JobTimeout <= 0 {
		bad("JOB_TIMEOUT", "must be positive, got %s", c.JobTimeout)
	}
	if c.HeartbeatEvery < 0 {
		bad("HEARTBEAT_INTERVAL", "must not be negative, got %s", c.HeartbeatEvery)
	}
	if c.ShutdownTimeout <= 0 || c.ShutdownTimeout >= 120*time.Second {
		bad("SHUTDOWN_TIMEOUT", "must be between 0s and 120s (ECS stopTimeout's maximum), got %s", c.ShutdownTimeout)
	}
	if c.BatchMaxFiles < 1 || c.BatchMaxFiles > 10000 {
		bad("BATCH_MAX_FILES", "must be between 1 and 10000, got %d", c.BatchMaxFiles)
	}
	if c.BatchWindow < time.Second || c.BatchWindow > 12*time.Hour {
		bad("BATCH_WINDOW", "must be between 1s and 12h, got %s", c.BatchWindow)
	}
	if !(c.SFNCallbackRate > 0) || math.IsInf(c.SFNCallbackRate, 0) {
		bad("SFN_CALLBACK_RATE", "must be positive, got %g", c.SFNCallbackRate)
	}
	if !(c.SFNStartRate > 0) || math.IsInf(c.SFNStartRate, 0) {
		bad("SFN_START_RATE", "must be positive, got %g", c.SFNStartRate)
	}
	if c.ReportTimeout < time.Second {
		bad("REPORT_TIMEOUT", "must be at least 1s, got %s", c.ReportTimeout)
	}
	if c.GluePollInterval <= 0 {
		bad("GLUE_POLL_INTERVAL", "must be positive, got %s", c.GluePollInterval)
	}
	if c.TaskProtectionMinutes < 0 || c.TaskProtectionMinutes > 2880 {
		bad("TASK_PROTECTION_MINUTES", "must be between 0 (off) and 2880, got %d", c.TaskProtectionMinutes)
	}
	if c.TaskProtectionGrace < 0 {
		bad("TASK_PROTECTION_GRACE", "must not be negative, got %s", c.TaskProtectionGrace)
	}
	if c.ConsoleBasicAuth != "" && !strings.Contains(c.ConsoleBasicAuth, ":") {
		bad("CONSOLE_BASIC_AUTH", "must be user:password")
	}
	if c.ConsoleCacheTTL < 0 {
		bad("CONSOLE_CACHE_TTL", "must not be negative, got %s", c.ConsoleCacheTTL)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("LOG_LEVEL", "unknown level %q (want debug, info, warn or error)", c.LogLevel)
	}
	switch c.LogFormat {
	case "json", "console":
	default:
		bad("LOG_FORMAT", "unknown format %q (want json or console)", c.LogFormat)
	}
	return errors.Join(errs...)
}

// Usage writes every variable with its default and meaning, for `worker config`.
func Usage(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tMEANING")
	fmt.Fprintln(tw, "AWS_REGION\t(SDK)\tregion of every AWS call")
	fmt.Fprintln(tw, "AWS_ENDPOINT_URL\t(SDK)\tone endpoint for every service, e.g. a local emulator (http://127.0.0.1:5000)")
	fmt.Fprintln(tw, "AWS_ACCESS_KEY_ID, ...\t(SDK)\tcredentials, by the SDK's default chain (env, profile, ECS task role)")
	fmt.Fprintln(tw, "ECS_AGENT_URI\t(ECS)\tset by ECS: the agent endpoint where the worker holds task scale-in protection while jobs run; unset: no protection")
	if err := envconfig.Usagef(Prefix, &Config{}, tw, "{{range .}}{{usage_key .}}\t{{usage_default .}}\t{{usage_description .}}\n{{end}}"); err != nil {
		return fmt.Errorf("write usage: %w", err)
	}
	return tw.Flush()
}

// plainParseError says which variable does not read and why, in the words of the
// variable's type instead of the envconfig and strconv internals.
func plainParseError(err error) error {
	var pe *envconfig.ParseError
	if !errors.As(err, &pe) {
		return fmt.Errorf("read environment: %w", err)
	}
	want := "cannot be read as " + strings.TrimPrefix(pe.TypeName, "*")
	switch strings.TrimPrefix(strings.TrimPrefix(pe.TypeName, "*"), "time.") {
	case "int", "int32", "int64", "uint", "uint32", "uint64":
		want = "is not a whole number"
	case "float32", "float64":
		want = "is not a number"
	case "bool":
		want = "is not true or false"
	case "Duration":
		want = "is not a duration (e.g. 500ms, 30s, 5m)"
	}
	return fmt.Errorf("%s: %q %s", pe.KeyName, pe.Value, want)
}
