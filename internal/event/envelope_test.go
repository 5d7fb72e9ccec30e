package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseRealEvents(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		e, err := Parse(b)
		require.NoError(t, err, f)
		require.NotEmpty(t, e.DetailType)
		require.False(t, e.Time.IsZero())
	}
}

func TestParseRejectsEachMalformedKind(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		body string
		why  string
	}{
		"empty body":           {"", "not JSON"},
		"not JSON":             {"this is not JSON", "not JSON"},
		"trailing garbage":     {`{"detail-type":"x","source":"y","detail":{}} {}`, "not JSON"},
		"a JSON array":         {`[1,2]`, "a JSON array, not an object"},
		"a JSON string":        {`"event"`, "a JSON string, not an object"},
		"a JSON null":          {` null `, "a JSON null"},
		"truncated":            {`{"detail-type":"x","source":"y","detail":{"a":`, "not JSON"},
		"no detail":            {`{"detail-type":"x","source":"y"}`, "no detail"},
		"detail null":          {`{"detail-type":"x","source":"y","detail":null}`, "no detail"},
		"detail not object":    {`{"detail-type":"x","source":"y","detail":"text"}`, "not a JSON object"},
		"no detail-type":       {`{"source":"y","detail":{}}`, "no detail-type"},
		"no source":            {`{"detail-type":"x","detail":{}}`, "no source"},
		"detail-type a number": {`{"detail-type":5,"source":"y","detail":{}}`, "detail-type is a JSON number"},
		"resources a string":   {`{"detail-type":"x","source":"y","resources":"r","detail":{}}`, "resources is a JSON string"},
		"detail an array":      {`{"detail-type":"x","source":"y","detail":[{}]}`, "not a JSON object"},
		"oversized":            {`{"detail-type":"x","source":"y","detail":{"p":"` + strings.Repeat("a", MaxBodyBytes) + `"}}`, "over"},
		"time not a timestamp": {`{"detail-type":"x","source":"y","time":"yesterday","detail":{}}`, "RFC 3339"},
		"time an object":       {`{"detail-type":"x","source":"y","time":{},"detail":{}}`, "Unix seconds"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tc.body))
			require.ErrorIs(t, err, ErrMalformed)
			require.ErrorContains(t, err, tc.why)
		})
	}
}

func TestParseTakesUnixSecondsAsTime(t *testing.T) {
	t.Parallel()
	e, err := Parse([]byte(`{"detail-type":"Object Created","source":"aws.s3","time":1795339845.5,"detail":{}}`))
	require.NoError(t, err)
	require.Equal(t, int64(1795339845), e.Time.Unix())
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		f.Add(b)
		f.Add(b[:len(b)/2]) // truncated
	}
	f.Add([]byte(`{"detail-type":"x","source":"y","detail":{}}`))
	f.Add([]byte(`{"detail-type":"x","source":"y","detail":[]}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"detail-type":"x","source":"y","time":1e300,"detail":{}}`))
	f.Add([]byte(`{"detail-type":"x","source":"y","time":"2026-11-22T09:30:45+14:00","detail": {"TaskToken":"\u0000"} }`))
	f.Add([]byte(`{"detail-type":"x","source":"y","detail":{},"detail":null}`))                        // forged: a second detail
	f.Add([]byte(`{"detail-type":"x","source":"y","detail":{"a":` + strings.Repeat("[", 10000) + `}`)) // deep
	f.Add([]byte(`{"detail-type":"x","source":"y","detail":{"p":"` + strings.Repeat("a", MaxBodyBytes) + `"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := Parse(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if e.DetailType == "" || e.Source == "" {
			t.Fatalf("accepted an envelope without detail-type or source: %q", body)
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(e.Detail, &obj) != nil {
			t.Fatalf("accepted a detail that is not an object: %q", e.Detail)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	body, err := os.ReadFile("testdata/sfn-getmultiple.json")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := Parse(body); err != nil {
			b.Fatal(err)
		}
	}
}

func noRead([]byte) (Envelope, json.RawMessage, bool) { return Envelope{}, nil, false }

// The one-pass reader must take the events the worker sees, or it saves nothing.
func TestReadEnvelopeTakesRealEvents(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob("testdata/*.json")
	require.NotEmpty(t, files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		_, _, ok := readEnvelope(b, false)
		require.True(t, ok, f)
	}
}

func TestReadEnvelopeAgreesWithTheDecoder(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		`{"detail-type":"x","source":"y","detail":{}}`,
		` { "ID" : "1" , "Detail-Type":"x","SOURCE":"y","resources":[],"detail":{"a":[1,-2.5e+3,true,null,"\u00e9"]} } `,
		`{"detail-type":"x","source":"y","resources":["a","b\"c"],"region":null,"time":null,"detail":{}}`,
		`{"detail-type":"x","source":"y","resources":null,"detail":{}}`,
		`{"detail-type":"x","source":"y","detail":{},"detail":null}`,
		`{"detail-type":"x","source":"y","detail":null}`,
		`{"detail-type":5,"source":"y","detail":{}}`,
		`{"detail-type":"x","source":"y","resources":[1],"detail":{}}`,
		`{"detail-type":"x","source":"y","resources":"r","detail":{}}`,
		`{"detail-type":"x","source":"y","time":1795339845.5,"detail":{}}`,
		`{"detail-type":"x","source":"y","time":"yesterday","detail":{}}`,
		`{"detail-type":"x","source":"y","time":{},"detail":{}}`,
		`{"detail-type":"x","source":"y","detail":{}} {}`,
		`{"detail-type":"x","source":"y","detail":{"a":01}}`,
		`{"detail-type":"x","source":"y","detail":{"a":"\x"}}`,
		"{\"detail-type\":\"x\",\"source\":\"y\",\"detail\":{\"a\":\"\t\"}}",
		"{\"detail-type\":\"x\xff\",\"source\":\"y\",\"detail\":{}}",
		"{\"detail\u212atype\":\"x\",\"source\":\"y\",\"detail\":{}}",
		`{"detail-type":"x","source":"y","detail":{"a":[}}`,
		`{"detail-type":"x","source":"y","detail":{},}`,
		`{"detail-type":"x","source":"y","detail":{"a":1.}}`,
		`{"detail-type":"x","source":"y","detail":{"a":-}}`,
		`{"detail-type":"x","source":"y","detail":{"a":tru}}`,
		`[1]`, `null`, ``, `"x"`, `{`, `{"a"}`,
	} {
		want, wantErr := parse([]byte(body), noRead)
		got, gotErr := parse([]byte(body), readCopying)
		require.Equal(t, fmt.Sprint(wantErr), fmt.Sprint(gotErr), body)
		require.Equal(t, want, got, body)
	}
}

// FuzzReadEnvelope: Parse with the one-pass reader gives what the decoder alone
// gives, error for error, field for field, on any body.
func FuzzReadEnvelope(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte(`{"Detail-Type":"x","source":"y","resources":["a"],"time":"2026-11-22T09:30:45Z","detail":{"a":[1,{"b":null}]}}`))
	f.Add([]byte(`{"detail-type":"x","source":"y","detail":{},"detail":null}`))
	f.Add([]byte(`{"detail-type":"x","source":"y","time":1e300,"detail":{"s":"\ud83d\ude00\u0000"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		want, wantErr := parse(body, noRead)
		for _, read := range []func([]byte) (Envelope, json.RawMessage, bool){readCopying, readShared} {
			got, gotErr := parse(body, read)
			if fmt.Sprint(wantErr) != fmt.Sprint(gotErr) {
				t.Fatalf("error %v, the decoder's %v: %q", gotErr, wantErr, body)
			}
			if !reflect.DeepEqual(want, got) {
				t.Fatalf("read %#v, the decoder %#v: %q", got, want, body)
			}
		}
	})
}

// setField is readEnvelope's table of the envelope's fields: it must know every
// json name of Envelope (the names decodeEnvelope reads), each as its own field,
// in any case, and no other name.
func TestSetFieldKnowsEnvelopesFields(t *testing.T) {
	t.Parallel()
	typ := reflect.TypeFor[Envelope]()
	require.Equal(t, typ.NumField(), envelopeFields)
	numbers := map[int]string{}
	for i := range typ.NumField() {
		name := typ.Field(i).Tag.Get("json")
		for _, spelled := range []string{name, strings.ToUpper(name)} {
			var read envelopeRead
			f, _ := read.setField([]byte(spelled), []byte(`null`))
			require.True(t, f >= 0 && f < envelopeFields, "%s is not a field", spelled)
			if other, taken := numbers[f]; taken && other != name {
				t.Fatalf("%s and %s are both field %d", name, other, f)
			}
			numbers[f] = name
		}
	}
	var read envelopeRead
	f, ok := read.setField([]byte("detailtype"), []byte(`"x"`))
	require.True(t, f == -1 && ok, "not a field: ignored")
}
