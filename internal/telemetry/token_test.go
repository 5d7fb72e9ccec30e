package telemetry

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRedactToken(t *testing.T) {
	t.Parallel()
	const tok = "AQB4AAAAsecret-token/+==0123456789"
	mark := RedactedToken(tok)
	for name, tc := range map[string]struct{ text, want string }{
		"none":           {"job failed: boom", "job failed: boom"},
		"quoted twice":   {"send " + tok + " then " + tok, "send " + mark + " then " + mark},
		"cut at the end": {"bad input: {\"TaskToken\":\"" + tok[:20], "bad input: {\"TaskToken\":\"" + mark},
		"short start":    {"ends with AQB4", "ends with AQB4"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, RedactToken(tc.text, tok))
		})
	}
	require.Equal(t, "x", RedactToken("x", ""), "no token, no change")
}

// FuzzRedactToken: a token (of a real token's alphabet and length class) is never
// readable in the redacted text, whole or cut off at its end.
func FuzzRedactToken(f *testing.F) {
	f.Add("job failed: AQB4AAAAsecret-token/+== was refused", "AQB4AAAAsecret-token/+==")
	f.Add("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaaa")
	f.Add("cut: abcdefghijklmnopq", "abcdefghijklmnopqrstuvwxyz")
	f.Fuzz(func(t *testing.T, text, token string) {
		// Tokens are long and have no '<', '>' or space, which the mark is made of.
		if len(token) < minCutToken+1 || strings.ContainsAny(token, "<> ") {
			return
		}
		got := RedactToken(text, token)
		if strings.Contains(got, token) {
			t.Fatalf("token %q readable in %q", token, got)
		}
		for n := minCutToken; n < len(token); n++ {
			if strings.HasSuffix(got, token[:n]) {
				t.Fatalf("a cut token %q is left at the end of %q", token[:n], got)
			}
		}
	})
}
