// Package shellwords splits a command line into words the way sh does for the
// docs' command lines: blanks separate words, single and double quotes group them.
// Nothing else of the shell (no escapes, variables or globs): the tests that follow
// the docs' commands read them with it.
package shellwords

import (
	"fmt"
	"strings"
)

// Split returns the words of line. An unclosed quote is an error.
func Split(line string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	var quote rune
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			w.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words, inWord = append(words, w.String()), false
				w.Reset()
			}
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("an unclosed quote in %q", line)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}
