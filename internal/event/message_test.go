package event

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// refMessage is what the router read before ParseMessage: Parse, then each
// member through json.Unmarshal into a struct, FindTaskToken for a refused body.
func refMessage(body []byte) (Message, error) {
	e, err := Parse(body)
	if err != nil {
		return Message{TaskToken: FindTaskToken(body)}, err
	}
	var c struct {
		TaskToken    string `json:"TaskToken"`
		ExecutionArn string `json:"executionArn"`
		Traceparent  string `json:"traceparent"`
	}
	_ = json.Unmarshal(e.Detail, &c)
	return Message{Envelope: e, TaskToken: c.TaskToken, ExecutionArn: c.ExecutionArn, Traceparent: c.Traceparent}, nil
}

func requireSameMessage(t *testing.T, body []byte) {
	t.Helper()
	want, wantErr := refMessage(body)
	got, err := ParseMessage(string(body))
	if wantErr != nil {
		require.EqualError(t, err, wantErr.Error(), "%q", body)
	} else {
		require.NoError(t, err, "%q", body)
	}
	require.Equal(t, want, got, "%q", body)
}

func TestParseMessageReadsWhatParseAndTheDetailsMembersGive(t *testing.T) {
	t.Parallel()
	env := func(detail string) []byte {
		return []byte(`{"id":"1","detail-type":"x","source":"y","time":"2026-12-07T00:00:00Z","detail":` + detail + `}`)
	}
	for name, body := range map[string][]byte{
		"all three":           env(`{"TaskToken":"tok","executionArn":"arn:x","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}`),
		"none":                env(`{"n":1}`),
		"case-insensitive":    env(`{"tasktoken":"tok","EXECUTIONARN":"arn","TraceParent":"tp"}`),
		"wrong types":         env(`{"TaskToken":5,"executionArn":{"a":"b"},"traceparent":null}`),
		"nested ignored":      env(`{"a":{"TaskToken":"inner","traceparent":"in"}}`),
		"escaped names":       env(`{"Task\u0054oken":"tok","trace\u0070arent":"tp"}`),
		"not JSON":            []byte(`{"detail":{"TaskToken":"tok"`),
		"detail not object":   env(`"s"`),
		"refused, token kept": []byte(`{"detail-type":"x","detail":{"TaskToken":"tok"}}`),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			requireSameMessage(t, body)
		})
	}
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		b, err := os.ReadFile(file)
		require.NoError(t, err)
		requireSameMessage(t, b)
	}
}

func FuzzParseMessage(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		f.Add(b)
	}
	f.Add([]byte(`{"detail-type":"x","source":"y","detail":{"TaskToken":"a","traceparent":"b","executionArn":"c"}}`))
	f.Add([]byte(`{"detail-type":"x","source":"y","detail":{"tasktoken":"a","TaskToken":null,"TRACEPARENT":7}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		want, wantErr := refMessage(body)
		got, err := ParseMessage(string(body))
		if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
			t.Fatalf("ParseMessage error %v, Parse %v", err, wantErr)
		}
		if got.TaskToken != want.TaskToken || got.ExecutionArn != want.ExecutionArn || got.Traceparent != want.Traceparent ||
			got.ID != want.ID || got.DetailType != want.DetailType || string(got.Detail) != string(want.Detail) {
			t.Fatalf("ParseMessage %+v, want %+v", got, want)
		}
	})
}

// BenchmarkParseMessage reads what the router reads of every message.
func BenchmarkParseMessage(b *testing.B) {
	raw, err := os.ReadFile("testdata/sfn-getmultiple.json")
	if err != nil {
		b.Fatal(err)
	}
	body := string(raw) // an SQS body is a string
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if m, err := ParseMessage(body); err != nil || m.TaskToken == "" || m.ExecutionArn == "" {
			b.Fatal(m, err)
		}
	}
}

// ParseMessage reads the body where it is, but the detail a job gets is its own:
// writing to it leaves the body (which the consumer may still copy to a DLQ) and
// the strings read from it as they were.
func TestParseMessageDetailIsACopy(t *testing.T) {
	t.Parallel()
	body := strings.Clone(`{"id":"1","detail-type":"x","source":"y","detail":{"TaskToken":"tok","executionArn":"arn"}}`)
	orig := strings.Clone(body)
	m, err := ParseMessage(body)
	require.NoError(t, err)
	for i := range m.Detail {
		m.Detail[i] = 'X'
	}
	require.Equal(t, orig, body)
	require.Equal(t, Message{Envelope: Envelope{ID: "1", DetailType: "x", Source: "y", Detail: m.Detail}, TaskToken: "tok", ExecutionArn: "arn"}, m)
}
