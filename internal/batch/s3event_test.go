package batch

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/event"
)

func TestParseObjectCreatedFromMotoAndAWS(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("testdata/moto-object-created.json")
	require.NoError(t, err)
	e, err := event.Parse(b)
	require.NoError(t, err)
	f, err := ParseObjectCreated(e, "tb-1-landing", "in/")
	require.NoError(t, err)
	require.Equal(t, File{Bucket: "tb-1-landing", Key: "in/file-0001.csv", Size: 8, ETag: "0a8f1ef5d5d2c4d6f1ba2ef7c6a6bd29",
		Sequencer: "617f08299329d189"}, f, "moto spells it eTag; its version-id is null")

	b, err = os.ReadFile("../event/testdata/s3-object-created.json")
	require.NoError(t, err)
	e, err = event.Parse(b)
	require.NoError(t, err)
	f, err = ParseObjectCreated(e, "tb-landing", "")
	require.NoError(t, err)
	require.Equal(t, "d41d8cd98f00b204e9800998ecf8427e", f.ETag, "AWS spells it etag")
	require.Equal(t, "0062E99A88DC407460", f.Sequencer)

	// moto 5.2.5 and S3 of an unversioned or suspended bucket say "null".
	e.Detail = []byte(`{"bucket": {"name": "tb-landing"}, "object": {"key": "in/a", "size": 1, "eTag": "e", "version-id": "null", "sequencer": "617f08299329d189"}}`)
	f, err = ParseObjectCreated(e, "tb-landing", "")
	require.NoError(t, err)
	require.Empty(t, f.Version, `"null" is no version`)
	e.Detail = []byte(`{"bucket": {"name": "tb-landing"}, "object": {"key": "in/a", "size": 1, "eTag": "e", "version-id": "Lx.3", "sequencer": "1"}}`)
	f, err = ParseObjectCreated(e, "tb-landing", "")
	require.NoError(t, err)
	require.Equal(t, "Lx.3", f.Version)
}

func FuzzParseObjectCreated(f *testing.F) {
	for _, p := range []string{"testdata/moto-object-created.json", "../event/testdata/s3-object-created.json"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{"key":"","size":-1}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := event.Parse(body)
		if err != nil {
			return
		}
		file, err := ParseObjectCreated(e, "tb-1-landing", "in/")
		if err != nil {
			return
		}
		if file.Bucket != "tb-1-landing" || !strings.HasPrefix(file.Key, "in/") || file.Size < 0 {
			t.Fatalf("accepted %+v", file)
		}
	})
}
