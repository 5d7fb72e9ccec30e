package shellwords_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/shellwords"
)

func TestSplit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		line string
		want []string
	}{
		{"blanks and tabs", "  bin/worker\tstart  --count 3 ", []string{"bin/worker", "start", "--count", "3"}},
		{"single quotes keep blanks and double quotes", `bin/worker start --input '{"name": "Ada"}'`, []string{"bin/worker", "start", "--input", `{"name": "Ada"}`}},
		{"double quotes keep single quotes", `echo "it's"`, []string{"echo", "it's"}},
		{"quotes inside a word join it", `a'b c'd`, []string{"ab cd"}},
		{"an empty quoted word is a word", `x ''`, []string{"x", ""}},
		{"nothing", " \t", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := shellwords.Split(tt.line)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestSplitRefusesAnUnclosedQuote(t *testing.T) {
	t.Parallel()
	for _, line := range []string{`echo 'a`, `echo "a`, `echo "a'`} {
		_, err := shellwords.Split(line)
		require.ErrorContains(t, err, "unclosed quote", line)
	}
}
