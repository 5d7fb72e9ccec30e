package deploy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/taskbridge/taskbridge/internal/config"
	"github.com/taskbridge/taskbridge/internal/topology"
)

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
	require.Contains(t, all, `jsondecode(file("${path.module}/../topology.json"))`)
	require.Contains(t, all, `templatefile("${path.module}/../${each.value.definition}"`)
	topo, err := topology.Load("")
	require.NoError(t, err)
	vars := topology.Names{Stack: "x"}.DefinitionVars("aws")
	for name := range vars {
		require.Contains(t, all, name+" = ", "terraform's templatefile passes %s", name)
	}
	for _, sm := range topo.StateMachines {
		require.FileExists(t, sm.Definition, "ASL of %s", sm.Name)
		_, err := topo.Definition(sm, vars)
		require.NoError(t, err, "every placeholder of %s has a value", sm.Name)
	}
	// Names: terraform's locals spell the scheme of internal/topology/names.go.
	n := topology.Names{Stack: "${var.stack}"}
	for _, want := range []string{`"` + n.Queue("${k}") + `"`, `"` + n.DLQ("${k}") + `"`, `"` + n.GlueJob() + `"`, `"` + n.StateMachine("${k}") + `"`} {
		require.Contains(t, all, want)
	}
	require.Contains(t, all, "bus_name        = var.stack")
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
		}
	}
	iam, err := os.ReadFile("terraform/iam.tf")
	require.NoError(t, err)
	require.Regexp(t, `actions\s+= \["states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"\]\s+resources = \[for sm in aws_sfn_state_machine.this : sm.arn\]`, string(iam),
		"task callbacks only for the project's state machines")
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
	require.True(t, strings.HasPrefix(froms[len(froms)-1], "gcr.io/distroless/static"), "final stage is distroless/static: no shell, no package manager")
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
		Command []string `yaml:"command"`
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

	// Every WORKER_* the compose file sets is a real variable, and the README
	// documents it.
	known := map[string]bool{}
	typ := reflect.TypeFor[config.Config]()
	for i := range typ.NumField() {
		known[config.Prefix+"_"+typ.Field(i).Tag.Get("envconfig")] = true
	}
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	seen := 0
	for _, svc := range []string{"worker", "bootstrap"} {
		for k := range c.Services[svc].Environment {
			if !strings.HasPrefix(k, "WORKER_") {
				continue
			}
			seen++
			require.True(t, known[k], "%s sets %s, which the worker does not read", svc, k)
			require.Contains(t, string(readme), k, "the README documents %s", k)
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
