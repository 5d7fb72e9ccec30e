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
	"os"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/taskbridge/taskbridge/internal/awslimit"
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

	MaxPollers        int           `envconfig:"MAX_POLLERS" default:"4" desc:"receive loops per queue while it is busy, >= 1 (an idle queue uses one: a long poll per POLL_WAIT)"`
	PollWait          time.Duration `envconfig:"POLL_WAIT" default:"20s" desc:"SQS long-poll wait per ReceiveMessage, 1s..20s"`
	JobTimeout        time.Duration `envconfig:"JOB_TIMEOUT" default:"5m" desc:"deadline of one job run; its context is cancelled after it"`
	HeartbeatEvery    time.Duration `envconfig:"HEARTBEAT_INTERVAL" default:"20s" desc:"SendTaskHeartbeat period while a callback job runs, and so how soon a job whose task closed (execution stopped, timed out) is cancelled; a queue's heartbeatInterval wins; 0 turns heartbeats off"`
	ShutdownTimeout   time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"25s" desc:"on SIGTERM, the whole stop of the pollers and jobs: in-flight jobs finish (the drain), then what is left is released; the spans' flush follows it. ECS stopTimeout must be at least this plus 5s (terraform sets it so); at most 115s"`
	S3PathStyle       *bool         `envconfig:"S3_PATH_STYLE" desc:"path-style S3 URLs (default: true when AWS_ENDPOINT_URL is set, for local emulators)"`
	ProveBeforeAnswer *bool         `envconfig:"PROVE_BEFORE_ANSWER" desc:"send a proving SendTaskHeartbeat before the outcome of a task whose event is under 10 s old, unless its job proved the token (default: true when AWS_ENDPOINT_URL is set: stock moto and LocalStack do not hear an outcome sent before they set up the task's heartbeat wait; AWS does)"`
	BatchMaxFiles     int           `envconfig:"BATCH_MAX_FILES" default:"100" desc:"files that flush a batch, 1..10000"`
	BatchWindow       time.Duration `envconfig:"BATCH_WINDOW" default:"15m" desc:"time after a batch's first file that flushes it, 1s..12h"`
	BatchKeyPrefix    string        `envconfig:"BATCH_KEY_PREFIX" desc:"only landing keys with this prefix are batched (empty: all)"`
	GluePollInterval  time.Duration `envconfig:"GLUE_POLL_INTERVAL" default:"10s" desc:"how often a started Glue run is checked (GetJobRun)"`
	// Step Functions' API quotas are token buckets per account and region: in
	// us-east-1, us-west-2 and eu-west-1 SendTaskSuccess/Failure/Heartbeat each
	// refill 500/s into a bucket of 3,000 and StartExecution 300/s into 1,300;
	// elsewhere 300/s into 1,500 and 150/s into 800
	// (https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html).
	// Each process holds its own limiter per API; it adapts down on throttling.
	SFNCallbackRate float64       `envconfig:"SFN_CALLBACK_RATE" default:"500" desc:"most SendTaskSuccess, SendTaskFailure and SendTaskHeartbeat calls per second each, per process (burst: 6 s of it); lowered at run time while Step Functions throttles"`
	SFNStartRate    float64       `envconfig:"SFN_START_RATE" default:"300" desc:"most StartExecution calls per second per process (burst: 13/3 s of it); lowered at run time while Step Functions throttles"`
	ReportTimeout   time.Duration `envconfig:"REPORT_TIMEOUT" default:"15m" desc:"how long a job's outcome report (SendTask*) or a StartExecution may wait out Step Functions throttling while the message stays invisible; a stop still ends it"`

	// VisibilityCap is SQS's, a fact of AWS: only tests change it, to see a job
	// handed on past it in seconds instead of hours (docs/development.md).
	VisibilityCap time.Duration `envconfig:"TEST_VISIBILITY_CAP" default:"12h" desc:"test only: SQS's cap on a received message's visibility (12h from its receipt), past which a long job is handed on under a lease; tests scale it down to seconds, never change it against AWS. 4s..12h"`

	TaskProtectionMinutes int           `envconfig:"TASK_PROTECTION_MINUTES" default:"15" desc:"on ECS (ECS_AGENT_URI set): task scale-in protection per enable or renewal while messages are in hand, in minutes, renewed at half; 1..2880, 0 turns protection off"`
	TaskProtectionGrace   time.Duration `envconfig:"TASK_PROTECTION_GRACE" default:"5s" desc:"idle time after which a process drops its scale-in protection"`

	MetricsAddr string `envconfig:"METRICS_ADDR" default:"127.0.0.1:9090" desc:"listen address of /metrics, /healthz and /readyz (this host only by default; a container sets :9090); empty turns the server off"`
	LogLevel    string `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat   string `envconfig:"LOG_FORMAT" default:"json" desc:"json or console"`
	// The line sampling's defaults are jobs.DefaultLineSampling's (a test checks).
	LogSampleFirst      int `envconfig:"LOG_SAMPLE_FIRST" default:"100" desc:"success lines (message handled) of a queue written each second before its lines are sampled; the rest of that second's success lines are written one in LOG_SAMPLE_THEREAFTER, and the next line written counts those left out (lines_sampled_out). Every other outcome is always written. 0 writes every line"`
	LogSampleThereafter int `envconfig:"LOG_SAMPLE_THEREAFTER" default:"100" desc:"past LOG_SAMPLE_FIRST in a second, one success line written in this many; >= 1"`
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

	// The standard variables the worker reads itself (standards), under their own
	// names, not WORKER_*.

	// ECSAgentURI is $ECS_AGENT_URI, set by ECS in every container of a task;
	// empty off ECS.
	ECSAgentURI string `ignored:"true"`
	// Tracing is what the OTEL_* variables the worker reads say.
	Tracing Tracing `ignored:"true"`
}

// maxJobTimeout is jobs.MaxTimeout (config imports no job package): runs longer
// than SQS's 12 h cap are handed on under a lease, but no task outlives its
// execution's year.
const maxJobTimeout = awslimit.StepFunctionsMaxExecution

// stackName is the rule Terraform's var.stack enforces too: every resource name is
// derived from it, and S3 bucket names allow only lowercase letters, digits and dashes.
var stackName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,30}$`)

// Load reads the process environment (the WORKER_* variables and the standard
// ones the worker reads itself) into a Config, fills derived defaults and validates.
func Load() (Config, error) { return LoadFrom(os.LookupEnv) }

// LoadFrom is Load reading through look, e.g. Layered: an embedded worker's
// settings over the process environment.
func LoadFrom(look Lookup) (Config, error) {
	var c Config
	if err := process(&c, look); err != nil {
		return Config{}, plainParseError(err)
	}
	c.readStandard(look)
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
	for _, chk := range c.checks() {
		if !chk.ok {
			errs = append(errs, fmt.Errorf("%s_%s: %s", Prefix, chk.name, chk.problem))
		}
	}
	errs = append(errs, c.validateStandard()...)
	return errors.Join(errs...)
}

// check is one rule of Validate: ok, or the problem with variable name.
type check struct {
	name    string // without the prefix
	ok      bool
	problem string
}

// checks are the rules Validate applies, in the order it reports them. A new
// variable with a rule adds its row here.
func (c Config) checks() []check {
	concurrency := 1 // unset: each queue's concurrency in the topology
	if c.Concurrency != nil {
		concurrency = *c.Concurrency
	}
	checks := []check{
		{"STACK", stackName.MatchString(c.Stack), fmt.Sprintf("must be 2-31 lowercase letters, digits or dashes, starting with a letter or digit, got %q", c.Stack)},
		{"ROLES", len(c.Roles) > 0, fmt.Sprintf("must name at least one of %s, %s", RoleJobs, RoleBatch)},
	}
	for _, r := range c.Roles {
		checks = append(checks, check{"ROLES", r == RoleJobs || r == RoleBatch, fmt.Sprintf("unknown role %q (want %s or %s)", r, RoleJobs, RoleBatch)})
	}
	return append(checks,
		check{"CONCURRENCY", concurrency >= 1, fmt.Sprintf("must be >= 1, got %d", concurrency)},
		check{"MAX_POLLERS", c.MaxPollers >= 1, fmt.Sprintf("must be >= 1, got %d", c.MaxPollers)},
		check{"POLL_WAIT", within(c.PollWait, time.Second, 20*time.Second), fmt.Sprintf("must be between 1s and 20s, got %s", c.PollWait)},
		check{"JOB_TIMEOUT", c.JobTimeout > 0, fmt.Sprintf("must be positive, got %s", c.JobTimeout)},
		check{"JOB_TIMEOUT", c.JobTimeout <= maxJobTimeout, fmt.Sprintf("%s cannot be honoured: a Step Functions Standard execution runs at most a year (8760h), and its task closes with it", c.JobTimeout)},
		check{"HEARTBEAT_INTERVAL", c.HeartbeatEvery >= 0, fmt.Sprintf("must not be negative, got %s", c.HeartbeatEvery)},
		check{"SHUTDOWN_TIMEOUT", c.ShutdownTimeout > 0 && c.ShutdownTimeout <= ECSStopTimeoutMax-ECSStopMargin,
			fmt.Sprintf("must be above 0s and at most %s (ECS stopTimeout, at most %s, is it plus %s), got %s", ECSStopTimeoutMax-ECSStopMargin, ECSStopTimeoutMax, ECSStopMargin, c.ShutdownTimeout)},
		check{"BATCH_MAX_FILES", within(c.BatchMaxFiles, 1, 10000), fmt.Sprintf("must be between 1 and 10000, got %d", c.BatchMaxFiles)},
		check{"BATCH_WINDOW", within(c.BatchWindow, time.Second, 12*time.Hour), fmt.Sprintf("must be between 1s and 12h, got %s", c.BatchWindow)},
		check{"SFN_CALLBACK_RATE", positive(c.SFNCallbackRate), fmt.Sprintf("must be positive, got %g", c.SFNCallbackRate)},
		check{"SFN_START_RATE", positive(c.SFNStartRate), fmt.Sprintf("must be positive, got %g", c.SFNStartRate)},
		check{"REPORT_TIMEOUT", c.ReportTimeout >= time.Second, fmt.Sprintf("must be at least 1s, got %s", c.ReportTimeout)},
		check{"GLUE_POLL_INTERVAL", c.GluePollInterval > 0, fmt.Sprintf("must be positive, got %s", c.GluePollInterval)},
		check{"TEST_VISIBILITY_CAP", within(c.VisibilityCap, 4*time.Second, 12*time.Hour), fmt.Sprintf("must be between 4s and 12h (SQS's cap, a test may only lower it), got %s", c.VisibilityCap)},
		check{"TASK_PROTECTION_MINUTES", within(c.TaskProtectionMinutes, 0, 2880), fmt.Sprintf("must be between 0 (off) and 2880, got %d", c.TaskProtectionMinutes)},
		check{"TASK_PROTECTION_GRACE", c.TaskProtectionGrace >= 0, fmt.Sprintf("must not be negative, got %s", c.TaskProtectionGrace)},
		check{"CONSOLE_BASIC_AUTH", c.ConsoleBasicAuth == "" || strings.Contains(c.ConsoleBasicAuth, ":"), "must be user:password"},
		check{"CONSOLE_CACHE_TTL", c.ConsoleCacheTTL >= 0, fmt.Sprintf("must not be negative, got %s", c.ConsoleCacheTTL)},
		check{"LOG_LEVEL", slices.Contains([]string{"debug", "info", "warn", "error"}, c.LogLevel), fmt.Sprintf("unknown level %q (want debug, info, warn or error)", c.LogLevel)},
		check{"LOG_FORMAT", slices.Contains([]string{"json", "console"}, c.LogFormat), fmt.Sprintf("unknown format %q (want json or console)", c.LogFormat)},
		check{"LOG_SAMPLE_FIRST", c.LogSampleFirst >= 0, fmt.Sprintf("must not be negative (0 writes every line), got %d", c.LogSampleFirst)},
		check{"LOG_SAMPLE_THEREAFTER", c.LogSampleThereafter >= 1, fmt.Sprintf("must be >= 1, got %d", c.LogSampleThereafter)},
	)
}

// within reports lo <= v <= hi.
func within[T int | time.Duration](v, lo, hi T) bool { return v >= lo && v <= hi }

// positive reports a finite number above 0 (NaN is not).
func positive(f float64) bool { return f > 0 && !math.IsInf(f, 0) }

// Usage writes every variable with its default and meaning, for `worker config`:
// the standard ones first, marked so, then the worker's own.
func Usage(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tMEANING")
	// Section lines hold tabs so that the columns stay one block.
	fmt.Fprintln(tw, "# standard variables\t\t(read under their own names)")
	for _, s := range standards {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.name, s.def, s.desc)
	}
	fmt.Fprintln(tw, "# the worker's own\t\t("+Prefix+"_*)")
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
