package awsjson

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMarshalJSONKeepsHTMLCharactersAsTheyAre(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		v    any
		want string
	}{
		"string":                  {map[string]string{"s": "<a href='x'>&</a>"}, `{"s":"<a href='x'>&</a>"}`},
		"raw message compacted":   {map[string]any{"r": json.RawMessage(`{ "a" : "<&>" }`)}, `{"r":{"a":"<&>"}}`},
		"raw message pre-escaped": {json.RawMessage(`{"a":"\u003c\u003E\u0026"}`), `{"a":"<>&"}`},
		"escaped backslash stays": {map[string]string{"s": `\u003c`}, `{"s":"\\u003c"}`},
		"other escapes stay":      {map[string]string{"s": "\"\n\u2028\x01"}, `{"s":"\"\n\u2028\u0001"}`},
		"no trailing newline":     {[]int{1}, `[1]`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, err := Marshal(tc.v)
			require.NoError(t, err)
			require.Equal(t, tc.want, string(b))
			require.True(t, json.Valid(b))
		})
	}
	_, err := Marshal(func() {})
	require.Error(t, err)
}

func TestMarshalJSONOf50KBOfAngleBracketsStays50KB(t *testing.T) {
	t.Parallel()
	detail := map[string]string{"s": strings.Repeat("<", 50_000)}
	b, err := Marshal(detail)
	require.NoError(t, err)
	require.Less(t, len(b), 50_010, "json.Marshal makes 300 KB of it")
	var back map[string]string
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, detail, back)
}

func FuzzMarshalJSONRoundTrips(f *testing.F) {
	f.Add(`<>&`)
	f.Add(`\u003c`)
	f.Add("\u2028\\\"")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := Marshal(map[string]any{"s": s, "r": json.RawMessage(mustMarshal(t, s))})
		if err != nil {
			t.Fatal(err)
		}
		var back struct{ S, R string }
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("not JSON: %q: %v", b, err)
		}
		var want string // what encoding/json makes of s (invalid UTF-8 replaced)
		if err := json.Unmarshal(mustMarshal(t, s), &want); err != nil {
			t.Fatal(err)
		}
		if back.S != want || back.R != want {
			t.Fatalf("round trip of %q gave %q and %q", s, back.S, back.R)
		}
	})
}

func mustMarshal(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
