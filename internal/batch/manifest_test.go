package batch

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBatchOfManifestReadsOnlyOurManifests(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, uri, want string
		ours            bool
	}{
		{"ours", manifestURI("data", "20261207T161000.000Z-1a2b"), "20261207T161000.000Z-1a2b", true},
		{"another bucket", manifestURI("data2", "b"), "", false},
		{"a bucket whose name starts like ours", "s3://data-old/manifests/b.json", "", false},
		{"not a manifest", "s3://data/results/b.json", "", false},
		{"no .json", "s3://data/manifests/b", "", false},
		{"no batch id", "s3://data/manifests/.json", "", false},
		{"empty", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ours := batchOfManifest("data", tc.uri)
			require.Equal(t, tc.ours, ours)
			require.Equal(t, tc.want, got)
		})
	}
}

// Glue's run history is outside input: whatever a run's --manifest says, a batch id
// read from it names that very manifest again.
func FuzzBatchOfManifest(f *testing.F) {
	f.Add("s3://data/manifests/20261207T161000.000Z-1a2b.json")
	f.Add("s3://data/manifests/.json")
	f.Add("s3://data/manifests/a/b.json.json")
	f.Fuzz(func(t *testing.T, uri string) {
		id, ours := batchOfManifest("data", uri)
		if ours && manifestURI("data", id) != uri {
			t.Fatalf("%q read as batch %q, which names %q", uri, id, manifestURI("data", id))
		}
	})
}
