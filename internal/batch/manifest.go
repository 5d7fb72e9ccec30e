package batch

import (
	"strings"
	"time"
)

// Manifest is what manifests/<batchId>.json holds: the files of one Glue run.
type Manifest struct {
	BatchID   string    `json:"batchId"`
	CreatedAt time.Time `json:"createdAt"`
	Files     []File    `json:"files"`
}

// manifestPrefix is where manifests live in the data bucket.
const manifestPrefix = "manifests/"

// manifestKey is the data bucket's key of a batch's manifest.
func manifestKey(batchID string) string { return manifestPrefix + batchID + ".json" }

// manifestURI is the --manifest argument of a batch's run, which also names the
// batch in Glue's run history (see runOf and resume).
func manifestURI(bucket, batchID string) string { return "s3://" + bucket + "/" + manifestKey(batchID) }

// batchOfManifest is the batch id a --manifest argument names, if it is a manifest
// of bucket.
func batchOfManifest(bucket, uri string) (string, bool) {
	rest, ok := strings.CutPrefix(uri, "s3://"+bucket+"/"+manifestPrefix)
	if !ok {
		return "", false
	}
	id, ok := strings.CutSuffix(rest, ".json")
	if !ok || id == "" {
		return "", false
	}
	return id, true
}
