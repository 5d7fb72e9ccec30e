package taskbridge_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/cli"
)

// Main's doc comment lists the commands of cli's table, in its order, with its
// synopses: the one list of commands, read here as `worker help` prints it.
func TestMainDocListsTheCommands(t *testing.T) {
	t.Parallel()
	f, err := parser.ParseFile(token.NewFileSet(), "main.go", nil, parser.ParseComments)
	require.NoError(t, err)
	var doc string
	for _, d := range f.Decls {
		if fn, ok := d.(*ast.FuncDecl); ok && fn.Name.Name == "Main" && fn.Recv == nil {
			doc = fn.Doc.Text()
		}
	}
	require.NotEmpty(t, doc, "main.go has Main with a doc comment")
	var listed []string
	for _, l := range strings.Split(doc, "\n") {
		if strings.HasPrefix(l, "\tworker ") {
			listed = append(listed, strings.TrimPrefix(l, "\t"))
		}
	}

	commands := cli.Commands()
	width := 0
	for _, c := range commands {
		width = max(width, len(c.Name))
	}
	var want []string
	for _, c := range commands {
		line := fmt.Sprintf("worker %-*s  %s", width, c.Name, strings.ReplaceAll(c.Synopsis, "PROGRAM", "worker"))
		want = append(want, line)
	}
	require.Equal(t, want, listed, "main.go's doc comment of Main lists the commands of internal/cli's table; write them as:\n//\t%s", strings.Join(want, "\n//\t"))
}
