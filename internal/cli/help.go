package cli

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// helpFlags ask for help the GNU way (--help) or Go's (-help, -h): in first place
// they are the command help, after a command its --help.
var helpFlags = []string{"-h", "-help", "--help"}

// printCommandHelp writes `usage: <program> <command>` and what it does, for a
// command without flags; false for one that prints its own (its flags).
func printCommandHelp(w io.Writer, program, cmd string) bool {
	if c, ok := lookupCommand(cmd); !ok || c.Flags {
		return false
	}
	args, what, found := strings.Cut(helpOf(program, cmd), "\n")
	if !found {
		args, what = "", args
	}
	fmt.Fprintf(w, "usage: %s\n\n%s\n", strings.TrimSpace(program+" "+cmd+" "+args), what)
	return true
}

// askedForHelp reports whether args ask for help.
func askedForHelp(args []string) bool {
	return slices.ContainsFunc(args, func(a string) bool { return slices.Contains(helpFlags, a) })
}

// newFlagSet is a subcommand's flag set: errors and usage on stderr, help (asked
// with --help) on stdout, flags shown as --name as this command line takes them
// (Go's flag package would show -name).
func newFlagSet(program, cmd string, stdout, stderr io.Writer) *flag.FlagSet {
	synopsis := helpOf(program, cmd)
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s %s [flags]\n\n%s\n\nflags:\n", program, cmd, synopsis)
		fs.VisitAll(func(f *flag.Flag) {
			name, usage := flag.UnquoteUsage(f)
			line := "  --" + f.Name
			if name != "" {
				line += " " + name
			}
			line += "\n    \t" + strings.ReplaceAll(usage, "\n", "\n    \t")
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
				line += fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintln(fs.Output(), line)
		})
	}
	return fs
}

// parseFlags parses args; help asked for is printed on stdout and returned as
// flag.ErrHelp (exit 0), a wrong flag as a UsageError (exit 2).
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	if askedForHelp(args) {
		fs.SetOutput(stdout)
		fs.Usage()
		return flag.ErrHelp
	}
	if err := fs.Parse(args); err != nil {
		return UsageError{err}
	}
	return nil
}

// printUsage writes a command's usage text, written for a program named worker, with
// the running program's name.
func printUsage(w io.Writer, program, text string) {
	fmt.Fprint(w, strings.ReplaceAll(text, "usage: worker ", "usage: "+program+" "))
}
