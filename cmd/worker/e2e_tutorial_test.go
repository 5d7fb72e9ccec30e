package main_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/shellwords"
)

const tutorialPage = "docs/tutorial.md"

// tutorialStep is one command of the tutorial's sh blocks (a line cut at &&), as
// words, with what its comment says it prints.
type tutorialStep struct {
	words   []string
	comment string
}

// tutorialBlocks reads docs/tutorial.md: its fenced blocks by language, in order, and
// its commands.
func tutorialBlocks(t *testing.T, repo string) (blocks map[string][]string, steps []tutorialStep) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, tutorialPage))
	require.NoError(t, err)
	blocks = map[string][]string{}
	var lang string
	var body []string
	in := false
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case !in && strings.HasPrefix(l, "```"):
			in, lang, body = true, strings.TrimSpace(l[3:]), nil
		case in && strings.TrimSpace(l) == "```":
			in = false
			blocks[lang] = append(blocks[lang], strings.Join(body, "\n")+"\n")
		case in:
			body = append(body, l)
			if lang != "sh" {
				continue
			}
			line, comment, _ := strings.Cut(l, " #")
			for _, c := range strings.Split(line, "&&") {
				words, err := shellwords.Split(c)
				require.NoError(t, err, "%s: %q", tutorialPage, l)
				if len(words) > 0 {
					steps = append(steps, tutorialStep{words: words, comment: strings.TrimSpace(comment)})
				}
			}
		}
	}
	return blocks, steps
}

// TestE2ETutorialGreeter follows docs/tutorial.md literally: its blocks must be the
// files of examples/greeter, and its commands run in order (a new module in an empty
// folder, the replace, build, validate, bootstrap, run, `start --wait` with the output
// its comment shows); the emulator is the test's, on a free port. A failed
// execution's `start --wait` names the program and the failure's cause, though moto
// drops causes.
func TestE2ETutorialGreeter(t *testing.T) {
	repo, err := filepath.Abs("../..")
	require.NoError(t, err)
	example := filepath.Join(repo, "examples", "greeter")
	blocks, steps := tutorialBlocks(t, repo)

	// The blocks are the example's files.
	mainGo, err := os.ReadFile(filepath.Join(example, "main.go"))
	require.NoError(t, err)
	require.Len(t, blocks["go"], 1, "%s: one Go block, main.go", tutorialPage)
	require.Equal(t, string(mainGo[bytes.Index(mainGo, []byte("package main")):]), blocks["go"][0], "%s: main.go is examples/greeter/main.go", tutorialPage)
	require.Len(t, blocks["json"], 2, "%s: topology.json and the ASL step", tutorialPage)
	topo, err := os.ReadFile(filepath.Join(example, "topology.json"))
	require.NoError(t, err)
	require.JSONEq(t, string(topo), blocks["json"][0], "%s: topology.json is examples/greeter's", tutorialPage)
	aslFile, err := os.ReadFile(filepath.Join(example, "asl", "greeter.asl.json"))
	require.NoError(t, err)
	var asl struct{ States map[string]json.RawMessage }
	require.NoError(t, json.Unmarshal(aslFile, &asl))
	var step map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte("{"+blocks["json"][1]+"}"), &step), "%s: the ASL step", tutorialPage)
	require.JSONEq(t, string(asl.States["Greet"]), string(step["Greet"]), "%s: the Greet step is examples/greeter's", tutorialPage)

	// The commands, in order.
	const checkout = "/path/to/taskbridge"
	cwd := t.TempDir()
	bin := ""
	var env []string
	var st *stackEnv
	stack := func() *stackEnv {
		if st == nil {
			require.NotEmpty(t, bin, "%s builds the program before it runs it", tutorialPage)
			st = newStackWith(t, bin, env...)
		}
		return st
	}
	require.NotEmpty(t, steps)
	for _, s := range steps {
		w := s.words
		t.Logf("$ %s", strings.Join(w, " "))
		switch {
		case w[0] == "mkdir" && len(w) == 2:
			require.NoError(t, os.Mkdir(filepath.Join(cwd, w[1]), 0o755))
		case w[0] == "cd" && len(w) == 2:
			cwd = filepath.Join(cwd, w[1])
		case w[0] == "cp" && len(w) == 4 && w[1] == "-r" && w[3] == ".":
			require.NoError(t, os.CopyFS(cwd, os.DirFS(strings.Replace(w[2], checkout, repo, 1))))
		case w[0] == "export":
			for _, kv := range w[1:] {
				k, v, _ := strings.Cut(kv, "=")
				if strings.HasPrefix(k, "AWS_") || k == "WORKER_METRICS_ADDR" {
					continue // the test's emulator; a free port for each worker
				}
				env = append(env, k+"="+strings.ReplaceAll(v, "$PWD", cwd))
			}
		case w[0] == "go":
			args := make([]string, 0, len(w)-1)
			for _, a := range w[1:] {
				args = append(args, strings.Replace(a, checkout, repo, 1))
			}
			goCommand(t, cwd, args...)
			if len(args) == 4 && args[0] == "build" && args[1] == "-o" {
				bin = filepath.Join(cwd, args[2])
			}
		case strings.HasPrefix(w[0], "./") && filepath.Join(cwd, w[0]) == bin:
			switch {
			case w[len(w)-1] == "&" && len(w) == 3 && w[1] == "run":
				stack().startWorker()
			case w[1] == "validate":
				require.Contains(t, stack().cli(w[1:]...), "1 queues, 1 state machines: ok")
			case w[1] == "start" && s.comment != "":
				require.JSONEq(t, s.comment, strings.TrimSpace(stack().cli(w[1:]...)), "what %s says it prints", tutorialPage)
			default:
				stack().cli(w[1:]...)
			}
		default:
			require.Failf(t, "a step this test does not know", "%s: %q: teach TestE2ETutorialGreeter to run it", tutorialPage, w)
		}
	}
	require.NotNil(t, st, "%s serves the job", tutorialPage)
	require.Contains(t, env, "WORKER_TOPOLOGY="+filepath.Join(cwd, "topology.json"), "the program serves the tutorial's topology")

	cmd := exec.Command(bin, "start", "--state-machine", "greeter", "--input", `{"name":42}`, "--wait")
	cmd.Env = st.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.Error(t, cmd.Run(), "a failed execution fails start --wait")
	line := stderr.String()[strings.LastIndex(strings.TrimSpace(stderr.String()), "\n")+1:]
	require.True(t, strings.HasPrefix(line, "greeter: execution "), "the error names the program: %s", line)
	_, cause, ok := strings.Cut(line, "greet.InvalidInput: ")
	require.True(t, ok, "the failure's code: %s", line)
	require.NotEmpty(t, strings.TrimSpace(cause), "a cause, or why there is none: %s", line)
	t.Logf("start --wait: %s", strings.TrimSpace(line))
}
