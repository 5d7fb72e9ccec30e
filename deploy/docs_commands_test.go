package deploy_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/shellwords"
)

// The rule of the docs' commands (docs/development.md, "The docs' own checks"): each
// command of a sh fence is run here, or the fence says in its own words that it is
// not and why. Run here means one of
//   - a make target that a CI step runs (.ci/run), itself or as a prerequisite;
//   - a page that a test follows as it is written (pageRunners);
//   - a named test that runs the command's words (runByTest): the test's body, or a
//     helper it calls, holds them as a list of Go string literals;
//   - a script that a CI step's make target runs, which holds the command as a line.
// A marker is a comment line of the fence, `# not run here: <why>`; it covers the
// commands below it up to the next blank line or marker, or the fence's end.

// markerPrefix starts a marker; markerLine is a well-formed one (a reason of two
// words at least).
const markerPrefix = "# not run here:"

var markerLine = regexp.MustCompile(`^# not run here: \S+\s+\S.*$`)

// docCommand is one command of a sh fence: a line without its comment, joined with
// the next after a trailing \, cut at &&.
type docCommand struct {
	text   string // its words joined by one space
	page   string // relative to the repository
	where  string // page:line
	notRun string // the reason of the marker that covers it, if any
}

// docCommands reads every sh fence of the docs.
func docCommands(t *testing.T) []docCommand {
	t.Helper()
	var out []docCommand
	for _, page := range docPages(t) {
		rel, err := filepath.Rel("..", page)
		require.NoError(t, err)
		cmds, err := fenceCommands(rel, fences(t, page))
		require.NoError(t, err)
		out = append(out, cmds...)
	}
	return out
}

// fenceCommands are the commands of a page's sh fences, each with the reason of the
// marker that covers it; a marker that is malformed or covers no command is an error.
func fenceCommands(page string, fs []fence) ([]docCommand, error) {
	var out []docCommand
	comment := regexp.MustCompile(`\s+#.*$`)
	for _, f := range fs {
		if f.lang != "sh" {
			continue
		}
		reason, markedAt, covered := "", "", 0
		closeGroup := func() error {
			if markedAt != "" && covered == 0 {
				return fmt.Errorf("%s: a `%s` marker that covers no command (it covers the lines below it up to a blank line)", markedAt, markerPrefix)
			}
			reason, markedAt, covered = "", "", 0
			return nil
		}
		pending, pendingAt := "", "" // a command continued on the next line (a trailing \)
		emit := func() {
			for _, c := range strings.Split(pending, "&&") {
				if c = strings.Join(strings.Fields(c), " "); c != "" {
					out = append(out, docCommand{text: c, page: page, where: pendingAt, notRun: reason})
					if reason != "" {
						covered++
					}
				}
			}
			pending, pendingAt = "", ""
		}
		for i, l := range append(f.body, "") { // the fence's end closes a group
			where := page + ":" + strconv.Itoa(f.line+1+i)
			trimmed := strings.TrimSpace(l)
			switch {
			case trimmed == "":
				emit()
				if err := closeGroup(); err != nil {
					return nil, err
				}
				continue
			case strings.HasPrefix(strings.ToLower(trimmed), "# not run"):
				emit()
				if err := closeGroup(); err != nil {
					return nil, err
				}
				if !markerLine.MatchString(trimmed) {
					return nil, fmt.Errorf("%s: a marker reads `%s <why, in a few words>`: %q", where, markerPrefix, trimmed)
				}
				reason, markedAt = strings.TrimSpace(strings.TrimPrefix(trimmed, markerPrefix)), where
				continue
			case strings.HasPrefix(trimmed, "#"):
				continue // a comment line
			}
			if pendingAt == "" {
				pendingAt = where
			}
			line := strings.TrimSpace(comment.ReplaceAllString(l, ""))
			more := strings.HasSuffix(line, `\`)
			pending += " " + strings.TrimSuffix(line, `\`)
			if !more {
				emit()
			}
		}
	}
	return out, nil
}

// pageRunner is a test that follows a page's sh fences as they are written, and
// fails on a command it does not know.
type pageRunner struct {
	test  string // the test function
	file  string // its file, which names the page as a string literal
	reads string // the function the test calls that reads the page's fences
}

var pageRunners = map[string]pageRunner{
	"docs/tutorial.md": {test: "TestE2ETutorialGreeter", file: "cmd/worker/e2e_tutorial_test.go", reads: "tutorialBlocks"},
}

// runBy names where a command runs. For a Go test: the test in file (or the helpers
// of via, in call order: the test calls via[0], which calls via[1]...) holds the
// command's words after bin/worker, without a trailing &, as string literals in one
// call or slice literal; `as` maps a word of the docs to the test's own (its
// resources). For a script (file under scripts/, no test): a line of it is the
// command, and a make target of CI runs the script.
type runBy struct {
	test string
	file string
	via  []string
	as   map[string]string
	note string
}

// The commands that run in a named test or script. An entry whose command left the
// docs fails, and so does one for a command that is marked not run.
var runByTest = map[string]runBy{
	// The guide (by hand on moto) and the examples' READMEs.
	"scripts/emulator.sh start":          {file: "scripts/demo.sh", note: "make demo"},
	"scripts/emulator.sh stop":           {file: "scripts/demo.sh", note: "make demo"},
	"bin/worker bootstrap":               {file: "scripts/demo.sh", note: "make demo"},
	"bin/worker bootstrap --output json": {test: "TestE2EGuideByHand", file: "cmd/worker/e2e_cookies_test.go", via: []string{"newStack", "newStackWith"}},
	"bin/worker run &":                   {test: "TestE2EGuideByHand", file: "cmd/worker/e2e_cookies_test.go", via: []string{"startWorker"}},
	`bin/worker start --names "Zoë,O'Brien,名前" --wait --report`: {test: "TestE2EGuideByHand", file: "cmd/worker/e2e_cookies_test.go"},
	"bin/worker validate": {test: "TestE2EExampleETLChain", file: "cmd/worker/e2e_examples_test.go",
		note: "and TestE2EExampleScheduledBatch, each with its example's topology"},
	`bin/worker start --state-machine nightly --input '{"seconds": 70}' --wait`: {test: "TestE2EExampleScheduledBatch", file: "cmd/worker/e2e_examples_test.go"},

	// Operations: dead letters, on the e2e topology's queues.
	"bin/worker status": {test: "TestE2EDeadLettersInspectedAndRedriven", file: "cmd/worker/e2e_dlq_test.go"},
	"bin/worker dlq list --queue processSingle --output json": {test: "TestE2EDeadLettersInspectedAndRedriven", file: "cmd/worker/e2e_dlq_test.go",
		as: map[string]string{"processSingle": "work"}},
	"bin/worker dlq show --queue processSingle --limit 5": {test: "TestE2EStartWaitShowsTheCauseAndTheDLQStaysVisible", file: "cmd/worker/e2e_dlq_test.go",
		as: map[string]string{"processSingle": "flaky"}},
	"bin/worker dlq redrive --queue processSingle --dry-run": {test: "TestE2EStartWaitShowsTheCauseAndTheDLQStaysVisible", file: "cmd/worker/e2e_dlq_test.go",
		as: map[string]string{"processSingle": "flaky"}},
	"bin/worker dlq redrive --queue processSingle --reason RetriesExhausted --rate 5": {test: "TestE2EDeadLettersInspectedAndRedriven", file: "cmd/worker/e2e_dlq_test.go",
		as: map[string]string{"processSingle": "work", "RetriesExhausted": "maxReceiveCount", "5": "0.5"}, note: "the test's dead letters are moto's maxReceiveCount ones; a slow rate to see it paced"},
	"bin/worker dlq redrive --queue processSingle --executions --dry-run": {test: "TestE2EStartWaitShowsTheCauseAndTheDLQStaysVisible", file: "cmd/worker/e2e_dlq_test.go",
		as: map[string]string{"processSingle": "flaky"}},
	"bin/worker dlq redrive --queue processSingle --executions": {test: "TestE2EStartWaitShowsTheCauseAndTheDLQStaysVisible", file: "cmd/worker/e2e_dlq_test.go",
		as: map[string]string{"processSingle": "flaky"}, note: "moto lacks RedriveExecution: the test proves the command says so; internal/dlq's executions_test.go proves the redrive"},
	"bin/worker dlq purge --queue processSingle --yes": {test: "TestE2EDeadLettersInspectedAndRedriven", file: "cmd/worker/e2e_dlq_test.go",
		as: map[string]string{"processSingle": "work"}},
	"bin/worker dlq list --queue eventbridge":               {test: "TestE2EUndeliverableEventRedriven", file: "cmd/worker/e2e_eventsdlq_test.go"},
	"bin/worker dlq redrive --queue eventbridge --to queue": {test: "TestE2EUndeliverableEventRedriven", file: "cmd/worker/e2e_eventsdlq_test.go"},
}

// Every command of the docs runs here, or its fence says why not.
func TestDocsCommandsRunOrSayWhyNot(t *testing.T) {
	t.Parallel()
	cmds := docCommands(t)
	require.NotEmpty(t, cmds)
	ci := ciMake(t)
	tests := repoTests(t)
	runners := map[string]bool{}
	inDocs := map[string]bool{}
	for _, c := range cmds {
		inDocs[c.text] = true
		e, listed := runByTest[c.text]
		_, paged := pageRunners[c.page]
		switch {
		case c.notRun != "":
			for _, name := range testName.FindAllString(c.notRun, -1) {
				require.True(t, tests[name], "%s: the marker names %s, which is no test of the repository", c.where, name)
			}
			require.False(t, listed, "%s: `%s` is marked not run, but runByTest says %s %s runs it: take it out of the marker's lines", c.where, c.text, e.test, e.file)
			require.False(t, paged, "%s: `%s` is marked not run, but %s runs every command of %s", c.where, c.text, pageRunners[c.page].test, c.page)
			if strings.HasPrefix(c.text, "make ") {
				requireMakeTargets(t, c) // not run, but a target still
			}
		case paged:
			runners[c.page] = true
		case strings.HasPrefix(c.text, "make "):
			ci.requireRuns(t, c)
		case listed:
			if e.test == "" {
				requireScriptRuns(t, ci, c, e)
			} else {
				requireTestRuns(t, c, e)
			}
		default:
			require.Failf(t, "a command that runs nowhere", "%s: `%s` runs in no test: add it to runByTest (deploy/docs_commands_test.go) with the test that runs its words, or put a line `%s <why>` above it in its fence", c.where, c.text, markerPrefix)
		}
	}
	for cmd := range runByTest {
		require.True(t, inDocs[cmd], "runByTest lists `%s`, which no page of the docs has any more", cmd)
	}
	for page, r := range pageRunners {
		require.True(t, runners[page], "pageRunners names %s, which has no command any more", page)
		requirePageRunner(t, page, r)
	}
}

// testName is a test's name, where a marker's reason names one.
var testName = regexp.MustCompile(`\bTest[A-Z]\w*`)

// repoTests are the names of the repository's test functions.
func repoTests(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	decl := regexp.MustCompile(`(?m)^func (Test[A-Z]\w*)\(`)
	err := filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != ".." && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir // .venv, .git, emulator data
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
			out[m[1]] = true
		}
		return err
	})
	require.NoError(t, err)
	return out
}

// goFuncs are the functions and methods of a Go package's files, by name.
func goFuncs(t *testing.T, dir string) (map[string][]*ast.FuncDecl, map[string]*ast.File) {
	t.Helper()
	fset := token.NewFileSet()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	require.NoError(t, err)
	funcs := map[string][]*ast.FuncDecl{}
	files := map[string]*ast.File{}
	for _, n := range names {
		f, err := parser.ParseFile(fset, n, nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		files[filepath.Base(n)] = f
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Body != nil {
				funcs[fd.Name.Name] = append(funcs[fd.Name.Name], fd)
			}
		}
	}
	return funcs, files
}

// calls says whether n calls a function or method named name.
func calls(n ast.Node, name string) bool {
	found := false
	ast.Inspect(n, func(n ast.Node) bool {
		if c, ok := n.(*ast.CallExpr); ok {
			switch f := c.Fun.(type) {
			case *ast.Ident:
				found = found || f.Name == name
			case *ast.SelectorExpr:
				found = found || f.Sel.Name == name
			}
		}
		return !found
	})
	return found
}

// stringRuns are the runs of string literals in n's calls' arguments and slice
// literals: `exec.Command(st.bin, "dlq", "list")` gives [dlq list].
func stringRuns(n ast.Node) [][]string {
	var out [][]string
	collect := func(exprs []ast.Expr) {
		var run []string
		for _, e := range append(exprs, nil) {
			if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil {
					run = append(run, s)
					continue
				}
			}
			if len(run) > 0 {
				out = append(out, run)
			}
			run = nil
		}
	}
	ast.Inspect(n, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			collect(n.Args)
		case *ast.CompositeLit:
			collect(n.Elts)
		}
		return true
	})
	return out
}

// requireTestRuns proves that e's test runs c's words.
func requireTestRuns(t *testing.T, c docCommand, e runBy) {
	t.Helper()
	require.True(t, strings.HasPrefix(e.test, "Test"), "%s: `%s` runs in %q, which is not a test", c.where, c.text, e.test)
	funcs, files := goFuncs(t, filepath.Join("..", filepath.Dir(e.file)))
	file, ok := files[filepath.Base(e.file)]
	require.True(t, ok, "%s: `%s` runs in %s, which is not there", c.where, c.text, e.file)
	src, err := os.ReadFile(filepath.Join("..", e.file))
	require.NoError(t, err)
	require.NotRegexp(t, `(?m)^//go:build`, string(src), "%s: `%s` runs in %s, which make test builds only with tags", c.where, c.text, e.file)
	var cur ast.Node
	for _, d := range file.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil && fd.Name.Name == e.test {
			cur = fd
		}
	}
	require.NotNil(t, cur, "%s: `%s` runs in %s, which %s does not have", c.where, c.text, e.test, e.file)
	for _, h := range e.via {
		require.True(t, calls(cur, h), "%s: `%s`: %s calls no %s", c.where, c.text, e.test, h)
		require.Len(t, funcs[h], 1, "%s: `%s`: one function %s in %s", c.where, c.text, h, filepath.Dir(e.file))
		cur = funcs[h][0]
	}
	want, err := shellwords.Split(c.text)
	require.NoError(t, err, "%s: `%s`", c.where, c.text)
	if want[0] == "bin/worker" {
		want = want[1:]
	}
	if want[len(want)-1] == "&" {
		want = want[:len(want)-1]
	}
	for i, w := range want {
		if s, ok := e.as[w]; ok {
			want[i] = s
		}
	}
	runs := stringRuns(cur)
	require.True(t, slices.ContainsFunc(runs, func(r []string) bool { return slices.Equal(r, want) }),
		"%s: `%s`: %s (%s, via %v; %s) runs no %q; its string lists: %q", c.where, c.text, e.test, e.file, e.via, e.note, want, runs)
}

// requireScriptRuns proves that e's script holds c as a line and that CI runs it.
func requireScriptRuns(t *testing.T, ci ciTargets, c docCommand, e runBy) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", e.file))
	require.NoError(t, err, "%s: `%s` runs in %s", c.where, c.text, e.file)
	found := slices.ContainsFunc(strings.Split(string(b), "\n"), func(l string) bool {
		return strings.Join(strings.Fields(l), " ") == c.text
	})
	require.True(t, found, "%s: `%s`: %s (%s) has no such line", c.where, c.text, e.file, e.note)
	require.True(t, ci.scripts[e.file], "%s: `%s` runs in %s, which no make target of CI runs (%v)", c.where, c.text, e.file, ci.targets)
}

// requirePageRunner proves that r follows page: its file names the page, and its
// test reads the page's fences.
func requirePageRunner(t *testing.T, page string, r pageRunner) {
	t.Helper()
	_, files := goFuncs(t, filepath.Join("..", filepath.Dir(r.file)))
	f, ok := files[filepath.Base(r.file)]
	require.True(t, ok, "%s is followed by %s, which is not there", page, r.file)
	named, ran := false, false
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.BasicLit:
			named = named || n.Value == strconv.Quote(page)
		case *ast.FuncDecl:
			if n.Name.Name == r.test && n.Recv == nil {
				ran = calls(n, r.reads)
			}
		}
		return true
	})
	require.True(t, named, "%s names no %q", r.file, page)
	require.True(t, ran, "%s: %s calls no %s", r.file, r.test, r.reads)
}

// ciTargets are the make targets CI runs, with their prerequisites, and the scripts
// their recipes run.
type ciTargets struct {
	targets map[string]bool
	scripts map[string]bool
}

func ciMake(t *testing.T) ciTargets {
	t.Helper()
	run, err := os.ReadFile("../.ci/run")
	require.NoError(t, err)
	mk, err := os.ReadFile("../Makefile")
	require.NoError(t, err)
	deps, recipes := map[string][]string{}, map[string][]string{}
	rule := regexp.MustCompile(`^([A-Za-z0-9_.-]+):([^=].*)?$`)
	target := ""
	for _, l := range strings.Split(string(mk), "\n") {
		if m := rule.FindStringSubmatch(l); m != nil {
			target = m[1]
			d, _, _ := strings.Cut(m[2], "##")
			deps[target] = append(deps[target], strings.Fields(d)...)
			continue
		}
		if strings.HasPrefix(l, "\t") && target != "" {
			recipes[target] = append(recipes[target], strings.Fields(l)...)
			continue
		}
		if strings.TrimSpace(l) == "" || !strings.HasPrefix(l, "#") {
			target = ""
		}
	}
	ci := ciTargets{targets: map[string]bool{}, scripts: map[string]bool{}}
	var visit func(string)
	visit = func(name string) {
		if ci.targets[name] {
			return
		}
		ci.targets[name] = true
		for _, d := range deps[name] {
			visit(d)
		}
		for _, w := range recipes[name] {
			if strings.HasPrefix(w, "scripts/") {
				ci.scripts[w] = true
			}
		}
	}
	step := regexp.MustCompile(`(?m)^step \S+ make ([^#\n]+)`)
	for _, m := range step.FindAllStringSubmatch(string(run), -1) {
		for _, w := range strings.Fields(m[1]) {
			if !strings.Contains(w, "=") {
				visit(w)
			}
		}
	}
	require.NotEmpty(t, ci.targets, ".ci/run runs make targets")
	return ci
}

// requireMakeTargets proves that c, a make command, names targets (make -n).
func requireMakeTargets(t *testing.T, c docCommand) {
	t.Helper()
	dry := exec.Command("make", append([]string{"-n"}, strings.Fields(c.text)[1:]...)...)
	dry.Dir = ".."
	out, err := dry.CombinedOutput()
	require.NoError(t, err, "%s: `%s` is not a make target: %s", c.where, c.text, out)
}

// requireRuns proves that c, a make command, names targets that CI runs.
func (ci ciTargets) requireRuns(t *testing.T, c docCommand) {
	t.Helper()
	requireMakeTargets(t, c)
	for _, a := range strings.Fields(c.text)[1:] {
		if !strings.Contains(a, "=") {
			require.True(t, ci.targets[a], "%s: `%s`: no step of .ci/run runs make %s (itself or as a prerequisite): mark it `%s <why>`", c.where, c.text, a, markerPrefix)
		}
	}
}

// The marker's reach and form, on forged fences.
func TestDocsMarkersCoverTheirGroup(t *testing.T) {
	t.Parallel()
	type got struct{ Text, NotRun string }
	for _, tc := range []struct {
		name string
		lang string
		body []string
		want []got
		err  string
	}{
		{name: "unmarked, cut at && and without comments", lang: "sh",
			body: []string{"make build && bin/worker run &   # the worker", "# a comment line", "bin/worker status"},
			want: []got{{"make build", ""}, {"bin/worker run &", ""}, {"bin/worker status", ""}}},
		{name: "a marker covers its lines up to a blank line", lang: "sh",
			body: []string{"# not run here: needs a Docker engine", "docker build .", "docker push x", "", "bin/worker status"},
			want: []got{{"docker build .", "needs a Docker engine"}, {"docker push x", "needs a Docker engine"}, {"bin/worker status", ""}}},
		{name: "a second marker starts its own group", lang: "sh",
			body: []string{"# not run here: needs an account", "terraform apply", "# not run here: needs a registry", "docker push x"},
			want: []got{{"terraform apply", "needs an account"}, {"docker push x", "needs a registry"}}},
		{name: "comment lines stay in the group", lang: "sh",
			body: []string{"# not run here: the SDK does it", "aws s3 cp a s3://b/", "# then", "aws s3 ls"},
			want: []got{{"aws s3 cp a s3://b/", "the SDK does it"}, {"aws s3 ls", "the SDK does it"}}},
		{name: "a command continued over lines is one", lang: "sh",
			body: []string{"terraform apply \\", "  -var a=b \\", "  -var c=d   # then", "bin/worker status"},
			want: []got{{"terraform apply -var a=b -var c=d", ""}, {"bin/worker status", ""}}},
		{name: "other languages hold no commands", lang: "text", body: []string{"docker push x"}},
		{name: "a marker without a reason", lang: "sh", body: []string{"# not run here:", "docker push x"}, err: "a marker reads"},
		{name: "a one-word reason", lang: "sh", body: []string{"# not run here: docker", "docker push x"}, err: "a marker reads"},
		{name: "another wording", lang: "sh", body: []string{"# Not run in CI: needs docker", "docker push x"}, err: "a marker reads"},
		{name: "a marker over a blank line", lang: "sh", body: []string{"# not run here: needs docker", "", "docker push x"}, err: "covers no command"},
		{name: "a marker at the end", lang: "sh", body: []string{"bin/worker status", "# not run here: needs docker"}, err: "covers no command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cmds, err := fenceCommands("page.md", []fence{{page: "page.md", line: 1, lang: tc.lang, body: tc.body}})
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			var out []got
			for _, c := range cmds {
				out = append(out, got{c.text, c.notRun})
			}
			require.Equal(t, tc.want, out)
		})
	}
}
