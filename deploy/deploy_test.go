package deploy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/taskbridge/taskbridge/deploy"
	"github.com/taskbridge/taskbridge/internal/batch"
	"github.com/taskbridge/taskbridge/internal/config"
	"github.com/taskbridge/taskbridge/internal/topology"
)

// contains fails with the wanted text only, not the whole haystack.
func contains(t *testing.T, s, want string, msgAndArgs ...any) {
	t.Helper()
	if !strings.Contains(s, want) {
		require.Fail(t, fmt.Sprintf("missing %q", want), msgAndArgs...)
	}
}

func tfFiles(t *testing.T) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir("terraform", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".tf") {
			return err
		}
		b, err := os.ReadFile(path)
		files[path] = b
		return err
	})
	require.NoError(t, err)
	require.NotEmpty(t, files)
	return files
}

func TestTerraformParsesAndIsCanonicallyFormatted(t *testing.T) {
	t.Parallel()
	p := hclparse.NewParser()
	for path, src := range tfFiles(t) {
		_, diags := p.ParseHCL(src, path)
		require.False(t, diags.HasErrors(), "%s: %s", path, diags.Error())
		require.Equal(t, string(hclwrite.Format(src)), string(src), "%s is not in canonical format (terraform fmt)", path)
	}
}

// Terraform reads the same topology and ASL files as the worker and bootstrap, with
// the same placeholders and the same names.
func TestTerraformUsesTheOneSourceOfTruth(t *testing.T) {
	t.Parallel()
	all := ""
	for _, src := range tfFiles(t) {
		all += string(src)
	}
	contains(t, all, `"${path.module}/../topology.json"`, "the shipped topology is the default")
	contains(t, all, `jsondecode(file(local.topology_file))`)
	contains(t, all, `topology_dir  = dirname(local.topology_file)`, "ASL paths resolve from the topology's folder")
	contains(t, all, `templatefile(local.definition_file[each.key]`)
	topo, err := topology.Load("topology.json")
	require.NoError(t, err)
	vars := topology.Names{Stack: "x"}.DefinitionVars("aws")
	for name := range vars {
		require.Regexp(t, `(?m)^\s+`+name+`\s+= `, all, "terraform's templatefile passes %s", name)
	}
	for _, sm := range topo.StateMachines {
		require.FileExists(t, sm.Definition, "ASL of %s", sm.Name)
		_, err := topo.Definition(sm, vars)
		require.NoError(t, err, "every placeholder of %s has a value", sm.Name)
	}
	// Names: terraform's locals spell the scheme of internal/topology/names.go.
	n := topology.Names{Stack: "${var.stack}"}
	for _, want := range []string{`"` + n.Queue("${k}") + `"`, `"` + n.DLQ("${k}") + `"`, `"` + n.GlueJob() + `"`, `"` + n.StateMachine("${k}") + `"`} {
		contains(t, all, want)
	}
	contains(t, all, "bus_name        = var.stack")
	// The worker's defaults for what a queue may omit.
	for _, want := range []string{"try(q.visibilityTimeoutSeconds, 60)", "try(q.maxReceiveCount, 5)"} {
		contains(t, all, want)
	}
}

// The sources terraform's rules accept are the sources the worker's topology reader
// derives (internal/topology: Steps and Sources), for the shipped topology and every
// example's: the same ASL "Source" values, the worker's own source, the queue's
// sources, nothing for anySource.
func TestTerraformRuleSourcesMatchTheWorkers(t *testing.T) {
	t.Parallel()
	locals, err := os.ReadFile("terraform/locals.tf")
	require.NoError(t, err)
	m := regexp.MustCompile(`regexall\(("(?:[^"\\]|\\.)*"), file\(f\)\)`).FindSubmatch(locals)
	require.NotNil(t, m, "locals.tf reads ASL sources with regexall(...)")
	pattern, err := strconv.Unquote(string(m[1]))
	require.NoError(t, err)
	sourceRe := regexp.MustCompile(pattern)

	files, _ := filepath.Glob("../examples/*/topology.json")
	for _, file := range append([]string{"topology.json"}, files...) {
		topo, err := topology.Load(file)
		require.NoError(t, err, file)
		steps, err := topo.Steps(topology.Names{Stack: "x"}.DefinitionVars("aws"))
		require.NoError(t, err, file)
		var asl []string // what terraform computes
		for _, sm := range topo.StateMachines {
			def, err := os.ReadFile(filepath.Join(filepath.Dir(file), sm.Definition))
			require.NoError(t, err)
			for _, m := range sourceRe.FindAllStringSubmatch(string(def), -1) {
				asl = append(asl, m[1])
			}
		}
		for _, q := range topo.Queues {
			if q.S3Batch != nil {
				continue
			}
			want := topo.Sources(q, steps)
			var got []string
			if !q.AnySource {
				got = append(append(append([]string{}, asl...), topo.Source), q.Sources...)
				slices.Sort(got)
				got = slices.Compact(got)
			}
			require.Equal(t, want, got, "%s: sources of queue %s", file, q.Name)
		}
	}
}

var actionRe = regexp.MustCompile(`"([a-zA-Z0-9-]+:[A-Za-z0-9*]+|\*)"`)

// No statement grants "*" actions; a "*" resource stands only where AWS allows no
// other, with the reason inline.
func TestIAMIsLeastPrivilege(t *testing.T) {
	t.Parallel()
	for path, src := range tfFiles(t) {
		for i, line := range strings.Split(string(src), "\n") {
			where := fmt.Sprintf("%s:%d", path, i+1)
			if strings.Contains(line, "actions") || strings.Contains(line, "Action") {
				for _, m := range actionRe.FindAllStringSubmatch(line, -1) {
					require.False(t, m[1] == "*" || strings.HasSuffix(m[1], ":*"), "%s grants %q: %s", where, m[1], line)
				}
			}
			if strings.Contains(line, `resources = ["*"]`) || strings.Contains(line, `Resource = "*"`) {
				require.Contains(t, line, "#checkov:skip=", "%s: a * resource says why: %s", path, line)
			}
			// ListStateMachines (and List* in general) takes no resource scope; the
			// worker builds its ARNs instead of listing.
			require.NotRegexp(t, `"states:List`, line, where)
		}
	}
	b, err := os.ReadFile("terraform/iam.tf")
	require.NoError(t, err)
	iam := string(b)
	// SendTask* support no resource-level permissions: a grant scoped to state
	// machine ARNs is denied on AWS. The token is the capability.
	require.Regexp(t, `actions\s+= \["states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"\]\s+resources = \["\*"\]`, iam)

	// Each service has its own task role with only its own actions.
	jobs := between(t, iam, `data "aws_iam_policy_document" "jobs"`, `data "aws_iam_policy_document" "batch"`)
	batch := between(t, iam, `data "aws_iam_policy_document" "batch"`, `resource "aws_iam_role_policy" "task"`)
	for _, a := range []string{"glue:", "aws_s3_bucket.landing"} {
		require.False(t, strings.Contains(jobs, a), "job workers need no %s", a)
	}
	for _, a := range []string{"states:", "job_policy_statements"} {
		require.False(t, strings.Contains(batch, a), "the batcher needs no %s", a)
	}
	contains(t, jobs, `resources = [for k in local.started_state_machines : aws_sfn_state_machine.this[k].arn]`,
		"StartExecution only on the state machines that startExecution queues name")
	ecs, err := os.ReadFile("terraform/ecs.tf")
	require.NoError(t, err)
	contains(t, string(ecs), "task_role_arn            = aws_iam_role.task[each.key].arn")
}

func between(t *testing.T, s, from, to string) string {
	t.Helper()
	i, j := strings.Index(s, from), strings.Index(s, to)
	require.True(t, i >= 0 && j > i, "%q before %q", from, to)
	return s[i:j]
}

// The LocalStack example must produce real ARNs: the account comes from the
// emulator's STS, never skip_requesting_account_id (ARNs without an account).
func TestLocalStackOverrideRequestsTheAccount(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("terraform/examples/root/localstack_override.tf.example")
	require.NoError(t, err)
	_, diags := hclparse.NewParser().ParseHCL(b, "localstack_override.tf")
	require.False(t, diags.HasErrors(), diags.Error())
	require.NotRegexp(t, `(?m)^\s*skip_requesting_account_id\s*=`, string(b))
	require.Regexp(t, `(?m)^\s+sts\s+= "http://127.0.0.1:4566"`, string(b))
}

func TestDockerfileRules(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../Dockerfile")
	require.NoError(t, err)
	var froms []string
	var final []string // instructions of the last stage
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, f[1])
			final = nil
		case "ADD":
			t.Errorf("use COPY, not ADD: %s", line) // hadolint DL3020
		case "MAINTAINER":
			t.Errorf("MAINTAINER is deprecated: %s", line) // DL4000
		}
		final = append(final, line)
	}
	require.GreaterOrEqual(t, len(froms), 2, "multi-stage")
	for _, img := range froms {
		require.Contains(t, img, ":", "base image %s has a tag", img)          // DL3006
		require.NotContains(t, img, ":latest", "base image %s is pinned", img) // DL3007
	}
	last := strings.Join(final, "\n")
	require.Contains(t, froms[len(froms)-1], "/distroless/static", "final stage is distroless/static: no shell, no package manager")
	require.Regexp(t, `(?m)^USER (65532|nonroot)`, last, "final stage runs as non-root") // DL3002
	require.NotRegexp(t, `(?m)^RUN `, last, "nothing runs in the final stage (it has no shell)")
	require.Regexp(t, `(?m)^HEALTHCHECK .*"/worker", "healthcheck"`, last)
	require.Regexp(t, `(?m)^ENTRYPOINT \["/worker"\]`, last, "exec form") // DL3025
}

type compose struct {
	Services map[string]struct {
		Image       string         `yaml:"image"`
		Environment map[string]any `yaml:"environment"`
		DependsOn   map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
		Command         []string `yaml:"command"`
		Init            bool     `yaml:"init"`
		StopGracePeriod string   `yaml:"stop_grace_period"`
	} `yaml:"services"`
}

func TestComposeFile(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../docker-compose.yml")
	require.NoError(t, err)
	var c compose
	require.NoError(t, yaml.Unmarshal(b, &c))
	for _, s := range []string{"localstack", "moto", "bootstrap", "worker", "prometheus", "grafana"} {
		require.Contains(t, c.Services, s)
	}
	for name, s := range c.Services {
		require.NotEmpty(t, s.Image, "%s names its image", name)
		require.Regexp(t, `:[0-9A-Za-z][\w.-]*$`, s.Image, "%s pins its image tag", name)
		require.NotContains(t, s.Image, ":latest", name)
	}
	require.Equal(t, "service_completed_successfully", c.Services["worker"].DependsOn["bootstrap"].Condition, "the worker starts after bootstrap finished")
	require.Equal(t, []string{"bootstrap", "--glue-optional"}, c.Services["bootstrap"].Command)
	require.True(t, c.Services["worker"].Init, "the worker runs under an init that reaps what exec jobs leave (make image-check shows the zombie without one)")

	// Every WORKER_* the compose file sets is a real variable, and the guide's
	// words on docker compose name it.
	known := map[string]bool{}
	typ := reflect.TypeFor[config.Config]()
	for i := range typ.NumField() {
		known[config.Prefix+"_"+typ.Field(i).Tag.Get("envconfig")] = true
	}
	guide := prose(t, "../docs/guide.md")
	seen := 0
	for _, svc := range []string{"worker", "bootstrap"} {
		for k := range c.Services[svc].Environment {
			if !strings.HasPrefix(k, "WORKER_") {
				continue
			}
			seen++
			require.True(t, known[k], "%s sets %s, which the worker does not read", svc, k)
			contains(t, guide, k, "docs/guide.md says the compose file sets %s", k)
		}
	}
	require.Positive(t, seen)
	// YAML anchors merged: bootstrap and worker get the same AWS settings.
	require.Equal(t, c.Services["worker"].Environment["AWS_ENDPOINT_URL"], c.Services["bootstrap"].Environment["AWS_ENDPOINT_URL"])
}

func TestObservabilityFilesAreWhereComposeMountsThem(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../docker-compose.yml")
	require.NoError(t, err)
	for _, m := range regexp.MustCompile(`\./(deploy/[^:]+):`).FindAllStringSubmatch(string(b), -1) {
		_, err := os.Stat(filepath.Join("..", m[1]))
		require.NoError(t, err, "compose mounts %s", m[1])
	}
	require.Contains(t, string(b), "LOCALSTACK_AUTH_TOKEN: ${LOCALSTACK_AUTH_TOKEN:-}", "the auth token is passed through when set")
}

// CI applies the terraform for real (make tf-check): against moto, with the provider
// from the machine's plugin folder, through the LocalStack example's provider
// settings, so the example's real ARNs are proven too.
func TestTerraformIsAppliedInCI(t *testing.T) {
	t.Parallel()
	ci, err := os.ReadFile("../.ci/run")
	require.NoError(t, err)
	require.Regexp(t, `(?m)^step \S+ make tf-check$`, string(ci))
	mk, err := os.ReadFile("../Makefile")
	require.NoError(t, err)
	require.Regexp(t, `(?m)^tf-check: .*## `, string(mk))
	script, err := os.ReadFile("../scripts/tf-check.sh")
	require.NoError(t, err)
	for _, want := range []string{
		"filesystem_mirror", "CHECKPOINT_DISABLE=1", "MOTO_IAM_LOAD_MANAGED_POLICIES=true",
		"examples/root/localstack_override.tf.example", "tf destroy", "parliament",
	} {
		contains(t, string(script), want)
	}
	require.False(t, regexp.MustCompile(`skip_requesting_account_id\s*=`).Match(script), "tf-check lets the provider ask STS for the account")
}

// CI builds the image and runs it for real (make image-check): read-only, as the
// nonroot user, under an init, with a control run that shows the zombie without one.
func TestImageIsRunInCI(t *testing.T) {
	t.Parallel()
	ci, err := os.ReadFile("../.ci/run")
	require.NoError(t, err)
	require.Regexp(t, `(?m)^step \S+ make image-check\b`, string(ci))
	mk, err := os.ReadFile("../Makefile")
	require.NoError(t, err)
	require.Regexp(t, `(?m)^image-check: .*## `, string(mk))
	script, err := os.ReadFile("../scripts/image-check.sh")
	require.NoError(t, err)
	for _, want := range []string{
		"--read-only --user 65532:65532 --network host", "--init", "tb-image-check-noinit",
		"bootstrap --output json", "start --count 3 --wait", "podman healthcheck run", "--signal TERM",
	} {
		contains(t, string(script), want)
	}
}

// The worker listens on 127.0.0.1:9090 by default (issue 29 item 4); a container
// must listen on every interface for Prometheus and the health check to reach it, so
// the image, the compose file and the terraform each set it.
func TestContainersSetTheMetricsAddress(t *testing.T) {
	t.Parallel()
	def := reflect.TypeFor[config.Config]()
	field, ok := def.FieldByName("MetricsAddr")
	require.True(t, ok)
	require.Equal(t, "127.0.0.1:9090", field.Tag.Get("default"), "loopback by default")

	docker, err := os.ReadFile("../Dockerfile")
	require.NoError(t, err)
	require.Regexp(t, `(?m)^ENV WORKER_METRICS_ADDR=:9090$`, string(docker))
	b, err := os.ReadFile("../docker-compose.yml")
	require.NoError(t, err)
	var c compose
	require.NoError(t, yaml.Unmarshal(b, &c))
	require.Equal(t, ":9090", c.Services["worker"].Environment["WORKER_METRICS_ADDR"])
	tf, err := os.ReadFile("terraform/locals.tf")
	require.NoError(t, err)
	require.Regexp(t, `\{ name = "WORKER_METRICS_ADDR", value = ":9090" \}`, string(tf))
}

// The data bucket's reserved folders are one list (data-bucket.json): the worker's
// own prefixes are in it, terraform's lifecycle rules read it, and the guide names
// every folder where it says which execution names are refused.
func TestDataBucketFoldersAreOneList(t *testing.T) {
	t.Parallel()
	folders := deploy.ReservedFolders()
	for _, prefix := range []string{batch.ClaimPrefix, "manifests/", "results/", "claim-checks/", "glue/"} {
		require.Contains(t, folders, strings.TrimSuffix(prefix, "/"), "a prefix the worker writes")
	}
	s3tf, err := os.ReadFile("terraform/s3.tf")
	require.NoError(t, err)
	locals, err := os.ReadFile("terraform/locals.tf")
	require.NoError(t, err)
	contains(t, string(locals), `jsondecode(file("${path.module}/../data-bucket.json")).reservedFolders`)
	contains(t, string(s3tf), "local.expiring_folders")
	require.NotContains(t, string(s3tf), `prefix = "claims/"`, "no folder spelt out beside the list")
	guide, err := os.ReadFile("../docs/guide.md")
	require.NoError(t, err)
	row := regexp.MustCompile(`(?m)^\| a bad execution ARN.*$`).Find(guide)
	require.NotNil(t, row, "the guide's row on refused execution names")
	for _, f := range folders {
		require.Contains(t, string(row), "`"+f+"`", "the guide names reserved folder %s", f)
	}
}

// The stop's time has one owner, config.StopBudget: terraform's stopTimeout is the
// shutdown timeout plus the budget's ECSStopMargin, its ceiling is Fargate's as the
// budget knows it, and its default is the worker's; docker compose's grace period
// is the same sum.
func TestTerraformStopTimeoutIsTheBudgets(t *testing.T) {
	t.Parallel()
	margin := int(config.ECSStopMargin.Seconds())
	ceiling := int(config.ECSStopTimeoutMax.Seconds())
	def := config.NewStopBudget(config.DefaultShutdownTimeout())
	seconds := func(t *testing.T, re, text string) int {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(text)
		require.NotNil(t, m, "%s", re)
		n, err := strconv.Atoi(m[1])
		require.NoError(t, err)
		return n
	}
	ecs, err := os.ReadFile("terraform/ecs.tf")
	require.NoError(t, err)
	require.Equal(t, margin, seconds(t, `(?m)^\s*stopTimeout\s*=\s*var\.shutdown_timeout_seconds \+ (\d+)\s*$`, string(ecs)), "ecs.tf's stopTimeout")

	vars, err := os.ReadFile("terraform/variables.tf")
	require.NoError(t, err)
	block := string(vars)[strings.Index(string(vars), `variable "shutdown_timeout_seconds"`):]
	block = block[:strings.Index(block, "\n}\n")]
	require.Equal(t, int(def.Shutdown.Seconds()), seconds(t, `default\s*=\s*(\d+)`, block), "the default is WORKER_SHUTDOWN_TIMEOUT's")
	require.Equal(t, margin, seconds(t, `var\.shutdown_timeout_seconds \+ (\d+) <=`, block), "the validation's margin")
	require.Equal(t, ceiling, seconds(t, `var\.shutdown_timeout_seconds \+ \d+ <= (\d+)`, block), "the validation's ceiling")
	require.Equal(t, margin, seconds(t, `stopTimeout is this plus (\d+) s`, block), "the description's margin")
	require.Equal(t, ceiling-margin, seconds(t, `must be 1\.\.(\d+)`, block), "the error message's maximum")
	require.Equal(t, int(def.ECSStopTimeout().Seconds()), int(def.Shutdown.Seconds())+margin)

	b, err := os.ReadFile("../docker-compose.yml")
	require.NoError(t, err)
	var c compose
	require.NoError(t, yaml.Unmarshal(b, &c))
	w := c.Services["worker"]
	shutdown, err := time.ParseDuration(fmt.Sprint(w.Environment["WORKER_SHUTDOWN_TIMEOUT"]))
	require.NoError(t, err)
	grace, err := time.ParseDuration(w.StopGracePeriod)
	require.NoError(t, err)
	require.Equal(t, config.NewStopBudget(shutdown).ECSStopTimeout(), grace, "compose's stop_grace_period is the budget's stop timeout")
}
