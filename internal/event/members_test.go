package event

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// refMembers is what the router read before StringMembers: json.Unmarshal into a
// struct (a wrong type leaves the field empty).
func refMembers(obj []byte) []string {
	var c struct {
		TaskToken    string `json:"TaskToken"`
		ExecutionArn string `json:"executionArn"`
	}
	_ = json.Unmarshal(obj, &c)
	return []string{c.TaskToken, c.ExecutionArn}
}

func TestStringMembersReadsAsEncodingJSONDoes(t *testing.T) {
	t.Parallel()
	for name, obj := range map[string]string{
		"plain":                 `{"TaskToken":"tok","executionArn":"arn:x","n":1}`,
		"nested ones ignored":   `{"a":{"TaskToken":"inner"},"b":["TaskToken","x"],"executionArn":"arn"}`,
		"case-insensitive":      `{"tasktoken":"tok","EXECUTIONARN":"arn"}`,
		"last wins":             `{"TaskToken":"first","TaskToken":"second"}`,
		"null keeps":            `{"TaskToken":"first","TaskToken":null}`,
		"wrong type keeps":      `{"TaskToken":"first","TaskToken":7,"executionArn":{"x":1}}`,
		"escaped name":          `{"Task\u0054oken":"tok","execution\"Arn":"no"}`,
		"escaped value":         `{"TaskToken":"a\"b\\c\u00e9\ud83d\ude00"}`,
		"invalid UTF-8":         "{\"TaskToken\":\"a\xffb\"}",
		"Kelvin sign folds":     "{\"Tas\u212aTo\u212aen\":\"kelvin\",\"ta\u017fktoken\":\"long s\"}",
		"spaces everywhere":     " {\n \"TaskToken\" :\t\"tok\" , \"x\" : [ 1 , { } ] }",
		"brackets in strings":   `{"a":"}{][","TaskToken":"tok","b":["]"]}`,
		"empty object":          `{}`,
		"numbers and literals":  `{"a":-1.5e3,"b":true,"c":false,"d":null,"TaskToken":"t"}`,
		"empty token":           `{"TaskToken":""}`,
		"name longer than want": `{"TaskTokens":"x","xTaskToken":"y"}`,
	} {
		require.Equal(t, refMembers([]byte(obj)), StringMembers([]byte(obj), "TaskToken", "executionArn"), name)
	}
}

func TestStringMembersIsSafeOnAnything(t *testing.T) {
	t.Parallel()
	for _, obj := range []string{"", "[", `{"a`, `{"a":`, `{"a":"b`, `{"a":[{`, `"str"`, `{"a" "b"}`, `{,}`} {
		require.NotPanics(t, func() { StringMembers([]byte(obj), "a") }, obj)
	}
}

func FuzzStringMembers(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		if e, err := Parse(b); err == nil {
			f.Add([]byte(e.Detail))
		}
	}
	f.Add([]byte(`{"TaskToken":"tok","executionArn":"arn","x":[1,{"TaskToken":"n"}]}`))
	f.Add([]byte(`{"tasktoken":"a","TaskToken":null,"TASKTOKEN":"\u00e9"}`))
	f.Add([]byte(`{"executionArn":5,"executionArn":"s"}`))
	f.Fuzz(func(t *testing.T, obj []byte) {
		got := StringMembers(obj, "TaskToken", "executionArn") // never panics
		trimmed := strings.TrimSpace(string(obj))
		if !json.Valid(obj) || !strings.HasPrefix(trimmed, "{") {
			return // not what it is for
		}
		if want := refMembers(obj); !equal(got, want) {
			t.Fatalf("StringMembers %q, json.Unmarshal %q", got, want)
		}
	})
}

func equal(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }

// BenchmarkStringMembers reads what the router reads of every message's detail.
func BenchmarkStringMembers(b *testing.B) {
	body, err := os.ReadFile("testdata/sfn-getmultiple.json")
	if err != nil {
		b.Fatal(err)
	}
	e, err := Parse(body)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(e.Detail)))
	for b.Loop() {
		if v := StringMembers(e.Detail, "TaskToken", "executionArn"); v[0] == "" || v[1] == "" {
			b.Fatal(v)
		}
	}
}
