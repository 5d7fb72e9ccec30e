package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The table is the commands: each name once, each synopsis one line, each command
// in `help`'s list, and `NAME --help` answered by that command (a help text of the
// table for one without flags, its flags for one with them).
func TestCommandTable(t *testing.T) {
	t.Parallel()
	var usage bytes.Buffer
	require.NoError(t, Main(context.Background(), Jobs{Program: "greeter"}, []string{"help"}, &usage, &usage))
	seen := map[string]bool{}
	for _, c := range Commands() {
		require.False(t, seen[c.Name], "%s is in the table twice", c.Name)
		seen[c.Name] = true
		require.NotContains(t, c.Synopsis, "\n", c.Name)
		require.NotNil(t, c.run, c.Name)
		require.Contains(t, usage.String(), "\n  "+c.Name+" ", "help lists %s", c.Name)
		if !c.Flags {
			require.NotEmpty(t, c.Help, "%s has no flags to describe it: its help text is the table's", c.Name)
		}

		var out, errOut bytes.Buffer
		err := Main(context.Background(), Jobs{Program: "greeter"}, []string{c.Name, "--help"}, &out, &errOut)
		require.Equal(t, 0, ExitCode(err), "%s --help: %v", c.Name, err)
		require.True(t, strings.HasPrefix(out.String(), "usage: greeter "+c.Name), "%s --help: %s", c.Name, out.String())
		want := helpOf("greeter", c.Name)
		if _, what, found := strings.Cut(want, "\n"); found && !c.Flags {
			want = what // the first line is the arguments, in the usage line
		}
		require.Contains(t, out.String(), want, "%s --help prints the table's text", c.Name)
	}
	require.NotContains(t, usage.String(), "PROGRAM", "the program's name stands in")
	require.Contains(t, usage.String(), "(greeter dlq --help)")
}
