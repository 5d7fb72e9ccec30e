package deploy_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/cli"
	"github.com/taskbridge/taskbridge/internal/config"
)

var update = flag.Bool("update", false, "rewrite the configuration block of docs/guide.md from `worker config`")

// docPages are the pages whose commands must run somewhere or say why not: the
// README, docs/ and the examples' READMEs.
func docPages(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob("../docs/*.md")
	require.NoError(t, err)
	require.NotEmpty(t, pages)
	examples, err := filepath.Glob("../examples/*/README.md")
	require.NoError(t, err)
	require.NotEmpty(t, examples)
	return append(append([]string{"../README.md"}, pages...), examples...)
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
	indent := ""
	for i, l := range strings.Split(string(b), "\n") {
		switch {
		case open == nil && strings.HasPrefix(strings.TrimLeft(l, " "), "```"):
			// A fence may be indented, in a list item: its lines lose that indent.
			indent = l[:len(l)-len(strings.TrimLeft(l, " "))]
			open = &fence{page: page, line: i + 1, lang: strings.TrimSpace(strings.TrimLeft(l, " ")[3:])}
		case open != nil && strings.TrimSpace(l) == "```":
			out = append(out, *open)
			open = nil
		case open != nil:
			open.body = append(open.body, strings.TrimPrefix(l, indent))
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
		if strings.HasPrefix(strings.TrimLeft(l, " "), "```") {
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
	pages := append(docPages(t), "../BENCHMARKS.md")
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
// that TestDocsCommandsRunOrSayWhyNot does not read.
func TestDocsFencesNameTheirLanguage(t *testing.T) {
	t.Parallel()
	known := []string{"sh", "go", "json", "hcl", "dockerfile", "text", "python"}
	for _, page := range docPages(t) {
		for _, f := range fences(t, page) {
			require.Contains(t, known, f.lang, "%s:%d: a fence names its language, one of %v (shell commands go in sh fences, which TestDocsCommandsRunOrSayWhyNot reads)", f.page, f.line, known)
		}
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

// The guide's table of commands is cli's table: a row per command, in its order,
// none else; a row names the command's aliases (--version), and every flag of a
// command's --help is in its row (dlq's in the operations page).
func TestDocsCommandsTableIsCurrent(t *testing.T) {
	t.Parallel()
	help := func(args ...string) string {
		var out, errOut bytes.Buffer
		err := cli.Main(context.Background(), cli.Jobs{}, args, &out, &errOut)
		require.Equal(t, 0, cli.ExitCode(err), "worker %v: %v %s", args, err, errOut.String())
		return out.String() + errOut.String()
	}
	var names, rowNames []string
	for _, c := range cli.Commands() {
		names = append(names, c.Name)
	}
	rows := map[string]string{}
	for _, l := range strings.Split(prose(t, "../docs/guide.md"), "\n") {
		if m := regexp.MustCompile("^\\| `worker ([a-z]+)").FindStringSubmatch(l); m != nil {
			rowNames = append(rowNames, m[1])
			rows[m[1]] = l
		}
	}
	require.Equal(t, names, rowNames, "docs/guide.md's table of commands has a row for each command of internal/cli's table (commands.go), in its order")

	flagRe := regexp.MustCompile(`--[a-z][a-z-]*`)
	for _, c := range cli.Commands() {
		row := rows[c.Name]
		for _, alias := range c.Aliases {
			if strings.HasPrefix(alias, "--") { // the GNU spelling; Go's -help, -version are taken, not shown
				contains(t, row, "`"+alias+"`", "the guide's row of `worker %s` names its alias", c.Name)
			}
		}
		if !c.Flags {
			continue
		}
		where, text := row, row
		if c.Name == "dlq" {
			where, text = "docs/operations.md", prose(t, "../docs/operations.md")+strings.Join(fenceBodies(t, "../docs/operations.md"), "\n")
		}
		for _, f := range flagRe.FindAllString(help(c.Name, "--help"), -1) {
			if f == "--help" {
				continue
			}
			contains(t, text, f, "`worker %s %s` is documented (%s)", c.Name, f, where)
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
	require.Regexp(t, `(?m)^step \S+ make test$`, string(ci), "CI runs the README's test command")
}
