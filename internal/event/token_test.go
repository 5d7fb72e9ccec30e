package event

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFindTaskToken(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000)
	cases := map[string]struct {
		body string
		want string
	}{
		"plain":                      {`{"detail-type":"x","source":"y","detail":{"TaskToken":"tok"}}`, "tok"},
		"after other members":        {`{"id":"1","resources":["a",{"b":[1e999]}],"detail":{"n":-0.5e3,"o":{"TaskToken":"inner"},"TaskToken":"tok","z":1}}`, "tok"},
		"nested 100,000 levels deep": {`{"detail-type":"x","source":"y","detail":{"a":` + deep + `,"TaskToken":"tok"}}`, "tok"},
		"deep after the token":       {`{"detail":{"TaskToken":"tok","a":` + strings.Repeat("[", 100_000) + `}}`, "tok"},
		"truncated after the token":  {`{"detail":{"TaskToken":"tok","a":[1,2`, "tok"},
		"escaped token":              {`{"detail":{"TaskToken":"a\"b\u003c"}}`, `a"b<`},
		"first detail":               {`{"detail":{"TaskToken":"first"},"detail":{"TaskToken":"second"}}`, "first"},
		"first TaskToken":            {`{"detail":{"TaskToken":"first","TaskToken":"second"}}`, "first"},
		"token not a string":         {`{"detail":{"TaskToken":{"a":"tok"}}}`, ""},
		"token a number":             {`{"detail":{"TaskToken":5}}`, ""},
		"only nested deeper":         {`{"detail":{"a":{"TaskToken":"tok"}}}`, ""},
		"token outside detail":       {`{"TaskToken":"tok","detail":{}}`, ""},
		"other case":                 {`{"Detail":{"tasktoken":"tok"}}`, ""},
		"detail not an object":       {`{"detail":["TaskToken","tok"]}`, ""},
		"not an object":              {`["detail",{"TaskToken":"tok"}]`, ""},
		"bad JSON before the token":  {`{"detail":{"a":tru,"TaskToken":"tok"}}`, ""},
		"truncated before":           {`{"detail":{"a":"`, ""},
		"empty":                      {``, ""},
		"a key in a string value":    {`{"a":"\"detail\":{\"TaskToken\":\"x\"}","detail":{"TaskToken":"tok"}}`, "tok"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, FindTaskToken([]byte(tc.body)))
		})
	}
}

func TestFindTaskTokenOfTheRealEvents(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("testdata/sfn-getmultiple.json")
	require.NoError(t, err)
	e, err := Parse(b)
	require.NoError(t, err)
	require.NotEmpty(t, FindTaskToken(b))
	require.Contains(t, string(e.Detail), FindTaskToken(b))
}

// Issue 12 item 8: a detail nested 100,000 levels deep is refused by Parse with an
// error that says why, and FindTaskToken still finds its token, so the message
// can fail its task.
func TestParseRefusesAbsurdNestingClearlyAndTheTokenIsStillFound(t *testing.T) {
	t.Parallel()
	for _, depth := range []int{MaxDepth, 10_001, 100_000} {
		body := `{"detail-type":"x","source":"y","detail":{"TaskToken":"tok","a":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}}`
		_, err := Parse([]byte(body))
		require.ErrorIs(t, err, ErrMalformed)
		require.ErrorContains(t, err, "nested more than 1200 levels deep")
		require.Equal(t, "tok", FindTaskToken([]byte(body)))
	}
	ok := `{"detail-type":"x","source":"y","detail":{"a":` + strings.Repeat("[", MaxDepth-2) + strings.Repeat("]", MaxDepth-2) + `,"s":"[[[[{{{{"}}`
	_, err := Parse([]byte(ok))
	require.NoError(t, err, "brackets in strings do not count; MaxDepth levels pass")
}

func FuzzFindTaskToken(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		f.Add(b)
		f.Add(b[:len(b)/2]) // truncated
	}
	f.Add([]byte(`{"detail":{"TaskToken":"tok"}}`))
	f.Add([]byte(`{"detail":{"a":` + strings.Repeat("[", 100_000) + `,"TaskToken":"tok"}}`)) // deep
	f.Add([]byte(`{"detail":{"TaskToken":"tok","a":` + strings.Repeat(`{"a":`, 20_000)))     // deep and truncated
	f.Add([]byte(`{"detail":{"p":"` + strings.Repeat("a", MaxBodyBytes) + `","TaskToken":"tok"}}`))
	f.Add([]byte(`{"detail":{"TaskToken":"first"},"detail":{"TaskToken":"second"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		tok := FindTaskToken(body)
		e, err := Parse(body)
		if err != nil || tok == "" {
			return
		}
		// Where Parse takes the body and its keys are plain and not repeated in any
		// case (encoding/json takes the last and matches keys case-insensitively),
		// both read the same token.
		lower := strings.ToLower(string(body))
		if strings.Contains(lower, `\`) || strings.Count(lower, `"tasktoken"`) != 1 || strings.Count(lower, `"detail"`) != 1 {
			return
		}
		var d struct{ TaskToken any }
		if json.Unmarshal(e.Detail, &d) == nil {
			if s, ok := d.TaskToken.(string); ok && s != tok {
				t.Fatalf("FindTaskToken %q, Parse %q", tok, s)
			}
		}
	})
}
