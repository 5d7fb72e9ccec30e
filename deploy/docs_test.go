package deploy_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/cli"
	"github.com/taskbridge/taskbridge/internal/config"
)

var update = flag.Bool("update", false, "rewrite the configuration block of docs/guide.md from `worker config`")

// docPages are the pages whose commands must run somewhere: the README and docs/.
func docPages(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob("../docs/*.md")
	require.NoError(t, err)
	require.NotEmpty(t, pages)
	return append([]string{"../README.md"}, pages...)
}

// fence is a fenced block of a page: its language and its lines.
type fence struct {
	page string
	line int // of the opening ```
	lang string
	body []string
}

func fences(t *testing.T, page string) []fence {
	t.Helper()
	b, err := os.ReadFile(page)
	require.NoError(t, err)
	var out []fence
	var open *fence
	for i, l := range strings.Split(string(b), "\n") {
		switch {
		case open == nil && strings.HasPrefix(l, "```"):
			open = &fence{page: page, line: i + 1, lang: strings.TrimSpace(l[3:])}
		case open != nil && strings.TrimSpace(l) == "```":
			out = append(out, *open)
			open = nil
		case open != nil:
			open.body = append(open.body, l)
		}
	}
	require.Nil(t, open, "%s: a fence opened at line %d is never closed", page, func() int {
		if open == nil {
			return 0
		}
		return open.line
	}())
	return out
}

// prose is a page without its fenced blocks.
func prose(t *testing.T, page string) string {
	t.Helper()
	b, err := os.ReadFile(page)
	require.NoError(t, err)
	var kept []string
	in := false
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "```") {
			in = !in
			continue
		}
		if !in {
			kept = append(kept, l)
		}
	}
	return strings.Join(kept, "\n")
}

// anchors are the ids GitHub gives a page's headings.
func anchors(t *testing.T, page string) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	seen := map[string]int{}
	for _, l := range strings.Split(prose(t, page), "\n") {
		if !strings.HasPrefix(l, "#") {
			continue
		}
		text := strings.TrimSpace(strings.TrimLeft(l, "#"))
		id := strings.Map(func(r rune) rune {
			switch {
			case r == ' ':
				return '-'
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				return unicode.ToLower(r)
			}
			return -1
		}, text)
		if n := seen[id]; n > 0 {
			ids[id+"-"+strconv.Itoa(n)] = true
		} else {
			ids[id] = true
		}
		seen[id]++
	}
	return ids
}

// Every relative link resolves: to a file, and with #, to one of its headings.
func TestDocsLinksResolve(t *testing.T) {
	t.Parallel()
	pages := docPages(t)
	more, err := filepath.Glob("../examples/*/README.md")
	require.NoError(t, err)
	pages = append(append(pages, more...), "../BENCHMARKS.md")
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	checked := 0
	for _, page := range pages {
		for _, m := range link.FindAllStringSubmatch(prose(t, page), -1) {
			target := m[1]
			if regexp.MustCompile(`^[a-z]+:`).MatchString(target) {
				continue // http:, https:, mailto:
			}
			path, anchor, _ := strings.Cut(target, "#")
			file := page
			if path != "" {
				file = filepath.Join(filepath.Dir(page), path)
			}
			rel, err := filepath.Rel("..", file)
			require.NoError(t, err)
			_, err = os.Stat(file)
			require.NoError(t, err, "%s links %s", page, target)
			if anchor != "" {
				require.True(t, strings.HasSuffix(file, ".md"), "%s links %s: an anchor in a page that is not markdown", page, target)
				require.True(t, anchors(t, file)[anchor], "%s links %s: no such heading in %s", page, target, rel)
			}
			checked++
		}
	}
	require.Greater(t, checked, 20)
}

// Every fenced block says what it holds, so that no shell command hides in a block
// that TestDocsCommandsAreExercised does not read.
func TestDocsFencesNameTheirLanguage(t *testing.T) {
	t.Parallel()
	known := []string{"sh", "go", "json", "hcl", "dockerfile", "text"}
	for _, page := range docPages(t) {
		for _, f := range fences(t, page) {
			require.Contains(t, known, f.lang, "%s:%d: a fence names its language, one of %v", f.page, f.line, known)
		}
	}
}

// commands are the shell commands of the docs' sh blocks: a line without its
// comment, cut at &&.
func commands(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	comment := regexp.MustCompile(`\s+#.*$`)
	for _, page := range docPages(t) {
		for _, f := range fences(t, page) {
			if f.lang != "sh" {
				continue
			}
			for i, l := range f.body {
				l = comment.ReplaceAllString(l, "")
				for _, c := range strings.Split(l, "&&") {
					c = strings.Join(strings.Fields(c), " ")
					if c != "" {
						out[c] = filepath.Base(page) + ":" + strconv.Itoa(f.line+1+i)
					}
				}
			}
		}
	}
	return out
}

// exercised says where a command of the docs runs: here (make targets, with make -n),
// or in a test, script or CI step that must hold the command's words (`with`).
// `note` says how, where that is not the command to the letter.
type exercised struct {
	in   string
	with []string
	note string
}

// tutorial is what TestE2ETutorialGreeter holds: it runs docs/tutorial.md's commands
// as they are.
var tutorial = []string{`tutorialPage = "docs/tutorial.md"`, "for _, s := range steps"}

// The commands of the docs and where each is exercised. A command that is not a
// make target needs an entry; an entry whose command left the docs fails too.
var exercisedBy = map[string]exercised{
	// README, the guide (by hand on moto), make demo.
	"scripts/emulator.sh start": {in: "scripts/demo.sh", with: []string{"scripts/emulator.sh start"}, note: "make demo"},
	"scripts/emulator.sh stop":  {in: "scripts/demo.sh", with: []string{"scripts/emulator.sh stop"}, note: "make demo"},
	"export AWS_ENDPOINT_URL=http://127.0.0.1:5000 AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing": {
		in: "scripts/demo.sh", with: []string{"AWS_ENDPOINT_URL=\"http://127.0.0.1:$MOTO_PORT\"", "AWS_ACCESS_KEY_ID=testing"}, note: "make demo's environment"},
	"bin/worker bootstrap --output json": {in: "cmd/worker/e2e_harness_test.go", with: []string{`"bootstrap", "--output", "json"`}},
	"bin/worker run &":                   {in: "cmd/worker/e2e_harness_test.go", with: []string{`exec.Command(st.bin, "run")`}},
	`bin/worker start --names "Zoë,O'Brien,名前" --wait --report`: {
		in: "scripts/demo.sh", with: []string{"bin/worker start", "--wait --report"},
		note: "make demo, with --count; --names is parsed in internal/cli's tests, the names are TestE2EAwkwardNamesStayUnderThePrefix's"},
	"aws --endpoint-url $AWS_ENDPOINT_URL s3 cp data.csv s3://taskbridge-landing/in/": {
		in: "cmd/worker/e2e_batch_test.go", with: []string{"PutObject", `Queues["landing"]`}, note: "the same PutObject through the SDK"},
	"COMPOSE_PROFILES=moto docker compose up --build": {
		in: "deploy/deploy_test.go", with: []string{"TestComposeFile", `"moto"`}, note: "the compose file is checked, not run: no Docker engine here"},

	// The tutorial: cmd/worker/e2e_tutorial_test.go runs these lines as they are.
	"mkdir greeter":                   {in: "cmd/worker/e2e_tutorial_test.go", with: tutorial},
	"cd greeter":                      {in: "cmd/worker/e2e_tutorial_test.go", with: tutorial},
	"go mod init example.com/greeter": {in: "cmd/worker/e2e_tutorial_test.go", with: tutorial},
	"cp -r /path/to/taskbridge/examples/greeter/. .":                            {in: "cmd/worker/e2e_tutorial_test.go", with: tutorial},
	"go mod edit -replace github.com/taskbridge/taskbridge=/path/to/taskbridge": {in: "cmd/worker/e2e_tutorial_test.go", with: tutorial},
	"go mod tidy": {in: "cmd/worker/e2e_tutorial_test.go", with: tutorial},
	"export AWS_ENDPOINT_URL=http://127.0.0.1:5000 AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing": {
		in: "cmd/worker/e2e_tutorial_test.go", with: tutorial, note: "the test's emulator, on a free port"},
	"export WORKER_TOPOLOGY=$PWD/topology.json WORKER_METRICS_ADDR=127.0.0.1:9191": {in: "cmd/worker/e2e_tutorial_test.go", with: tutorial},
	"go build -o greeter .": {in: "cmd/worker/e2e_tutorial_test.go", with: tutorial},
	"./greeter validate":    {in: "cmd/worker/e2e_tutorial_test.go", with: tutorial},
	"./greeter bootstrap":   {in: "cmd/worker/e2e_tutorial_test.go", with: tutorial},
	"./greeter run &":       {in: "cmd/worker/e2e_tutorial_test.go", with: tutorial},
	`./greeter start --state-machine greeter --input '{"name":"Ada"}' --wait`: {in: "cmd/worker/e2e_tutorial_test.go", with: tutorial},

	// Operations: deploying.
	"docker build --build-arg VERSION=1.0.0 -t <account>.dkr.ecr.<region>.amazonaws.com/taskbridge:1.0.0 .": {
		in: "scripts/image-check.sh", with: []string{"podman build", "--build-arg VERSION=image-check"}, note: "make image-check builds the Dockerfile with podman"},
	"docker push <account>.dkr.ecr.<region>.amazonaws.com/taskbridge:1.0.0": {
		in: "scripts/image-check.sh", with: []string{"podman run"}, note: "not pushed: no registry here; make image-check runs the image it built"},
	"cd deploy/terraform/examples/root": {in: "scripts/tf-check.sh", with: []string{"deploy/terraform/examples/root"}},
	"cp terraform.tfvars.example terraform.tfvars": {
		in: "scripts/tf-check.sh", with: []string{"terraform.tfvars"}, note: "make tf-check writes its own tfvars beside the example's"},
	"terraform init":  {in: "scripts/tf-check.sh", with: []string{"tf init"}},
	"terraform apply": {in: "scripts/tf-check.sh", with: []string{"tf apply"}},

	// Operations: dead letters.
	"bin/worker status": {in: "cmd/worker/e2e_dlq_test.go", with: []string{`st.exitCode("status")`}},
	"bin/worker dlq list --queue processSingle --output json": {in: "cmd/worker/e2e_dlq_test.go", with: []string{`"dlq", "list", "--queue", "work", "--output", "json"`}},
	"bin/worker dlq show --queue processSingle --limit 5":     {in: "cmd/worker/e2e_dlq_test.go", with: []string{`"dlq", "show", "--queue"`}, note: "--limit: internal/dlq's tests"},
	"bin/worker dlq redrive --queue processSingle --dry-run":  {in: "internal/dlq/dlq_test.go", with: []string{"DryRun: true"}},
	"bin/worker dlq redrive --queue processSingle --reason RetriesExhausted --rate 5": {
		in: "cmd/worker/e2e_dlq_test.go", with: []string{`"dlq", "redrive", "--queue", "work", "--reason", "maxReceiveCount", "--rate"`}},
	"bin/worker dlq purge --queue processSingle --yes": {in: "cmd/worker/e2e_dlq_test.go", with: []string{`"dlq", "purge", "--queue", "work", "--yes"`}},

	// Operations: the web console.
	"bin/worker console --actions --metrics 127.0.0.1:9090": {
		in: "cmd/worker/e2e_console_browser_test.go", with: []string{`"console", "--addr"`, `startConsole("--actions", "--metrics", worker.addr)`}, note: "make test-console, with the test worker's metrics address"},

	// Development: LocalStack by hand is what make test-localstack does.
	"scripts/localstack.sh start": {in: "scripts/localstack.sh", with: []string{"start) start ;;", "  test)"}, note: "make test-localstack"},
	"scripts/localstack.sh stop":  {in: "scripts/localstack.sh", with: []string{"stop) stop ;;"}, note: "make test-localstack"},
	"export AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test": {
		in: "scripts/localstack.sh", with: []string{"TASKBRIDGE_TEST_ENDPOINT"}, note: "the tests' endpoint, on a free port"},
	"bin/worker bootstrap --glue-optional": {in: "cmd/worker/e2e_harness_test.go", with: []string{`"--glue-optional"`}, note: "on LocalStack"},
	"bin/worker run":                       {in: "cmd/worker/e2e_harness_test.go", with: []string{`exec.Command(st.bin, "run")`}},
}

// Every command of the docs runs somewhere: make targets here with make -n, the rest
// where exercisedBy says, which must hold the command's words.
func TestDocsCommandsAreExercised(t *testing.T) {
	t.Parallel()
	cmds := commands(t)
	require.NotEmpty(t, cmds)
	for cmd, where := range cmds {
		if strings.HasPrefix(cmd, "make ") {
			run := exec.Command("make", append([]string{"-n"}, strings.Fields(cmd)[1:]...)...)
			run.Dir = ".."
			out, err := run.CombinedOutput()
			require.NoError(t, err, "%s: `%s` is not a make target: %s", where, cmd, out)
			continue
		}
		e, ok := exercisedBy[cmd]
		require.True(t, ok, "%s: `%s` runs in no test: run it in deploy/docs_test.go or add it to exercisedBy with the test that runs it", where, cmd)
		b, err := os.ReadFile(filepath.Join("..", e.in))
		require.NoError(t, err, "`%s` is exercised in %s", cmd, e.in)
		for _, w := range e.with {
			contains(t, string(b), w, "`%s` is exercised in %s (%s)", cmd, e.in, e.note)
		}
	}
	for cmd := range exercisedBy {
		_, ok := cmds[cmd]
		require.True(t, ok, "exercisedBy lists `%s`, which no page of the docs has any more", cmd)
	}
}

// The configuration block of the guide is what `worker config` prints.
func TestDocsConfigBlock(t *testing.T) {
	t.Parallel()
	var want bytes.Buffer
	require.NoError(t, config.Usage(&want))
	const page = "../docs/guide.md"
	b, err := os.ReadFile(page)
	require.NoError(t, err)
	const intro = "`bin/worker config` prints"
	start := bytes.Index(b, []byte(intro))
	require.GreaterOrEqual(t, start, 0, "the guide has %s", intro)
	open := bytes.Index(b[start:], []byte("```text\n"))
	require.GreaterOrEqual(t, open, 0)
	from := start + open + len("```text\n")
	to := from + bytes.Index(b[from:], []byte("```\n"))
	if *update {
		out := append(append(append([]byte{}, b[:from]...), want.Bytes()...), b[to:]...)
		require.NoError(t, os.WriteFile(page, out, 0o644))
		return
	}
	require.Equal(t, want.String(), string(b[from:to]), "docs/guide.md's configuration block is not `worker config`'s output: go test ./deploy/ -run TestDocsConfigBlock -update")
}

// Every command of `worker help` has its row in the guide's table, and every flag of
// a command's --help is in its row (dlq's in the operations page).
func TestDocsCommandsTableIsCurrent(t *testing.T) {
	t.Parallel()
	help := func(args ...string) string {
		var out, errOut bytes.Buffer
		err := cli.Main(context.Background(), cli.Jobs{}, args, &out, &errOut)
		require.Equal(t, 0, cli.ExitCode(err), "worker %v: %v %s", args, err, errOut.String())
		return out.String() + errOut.String()
	}
	guide := prose(t, "../docs/guide.md")
	rows := map[string]string{}
	for _, l := range strings.Split(guide, "\n") {
		if m := regexp.MustCompile("^\\| `worker ([a-z]+)").FindStringSubmatch(l); m != nil {
			rows[m[1]] = l
		}
	}
	listed := regexp.MustCompile(`(?m)^  ([a-z]+) {2,}`).FindAllStringSubmatch(help("help"), -1)
	require.NotEmpty(t, listed)
	flagRe := regexp.MustCompile(`--[a-z][a-z-]*`)
	for _, m := range listed {
		cmd := m[1]
		row, ok := rows[cmd]
		require.True(t, ok, "docs/guide.md's table of commands has no row for `worker %s`", cmd)
		if slices.Contains([]string{"run", "help", "version", "healthcheck", "config", "validate"}, cmd) {
			continue // no flags
		}
		where, text := row, row
		if cmd == "dlq" {
			where, text = "docs/operations.md", prose(t, "../docs/operations.md")+strings.Join(fenceBodies(t, "../docs/operations.md"), "\n")
		}
		for _, f := range flagRe.FindAllString(help(cmd, "--help"), -1) {
			if f == "--help" {
				continue
			}
			contains(t, text, f, "`worker %s %s` is documented (%s)", cmd, f, where)
		}
	}
}

func fenceBodies(t *testing.T, page string) []string {
	t.Helper()
	var out []string
	for _, f := range fences(t, page) {
		out = append(out, f.body...)
	}
	return out
}

// The README starts with the two commands that do everything on a fresh machine: the
// demo on the local emulator, and the tests as CI runs them.
func TestReadmeStartsWithTheTwoCommands(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	title, rest, _ := strings.Cut(string(b), "\n\n")
	require.Equal(t, "# taskbridge", title)
	f := fences(t, "../README.md")[0]
	require.True(t, strings.HasPrefix(rest, "```sh\n"), "the README's first block comes right after its title")
	require.Len(t, f.body, 2)
	require.True(t, strings.HasPrefix(f.body[0], "make demo "), f.body[0])
	require.True(t, strings.HasPrefix(f.body[1], "make test "), f.body[1])
	ci, err := os.ReadFile("../.ci/run")
	require.NoError(t, err)
	require.Regexp(t, `(?m)^make test$`, string(ci), "CI runs the README's test command")
}
