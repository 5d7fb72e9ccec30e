// Package batch is the S3-event batching consumer: it holds Object Created events of
// the landing bucket until a batch has MaxFiles files or Window has passed since its
// first file, writes a manifest of the batch to the data bucket, starts a Glue job
// run with it, follows the run to its end and publishes etl-success or etl-error.
//
// The Batcher is the consumer.Handler of the landing queue: Handle blocks until the
// message's batch is flushed, so the consumer keeps the message invisible while the
// batch is open and deletes it only once the manifest is written and the run started.
package batch

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/taskbridge/taskbridge/internal/event"
)

// File is one object of a batch, as the manifest lists it.
type File struct {
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	Size   int64  `json:"size"`
	ETag   string `json:"etag"`
	// Version and Sequencer name the upload an event reports (see upload). In a
	// manifest, Version is the object version its run reads (versionId, as S3's
	// API spells it): the one the event reported, whatever was written to the key
	// since; absent where the bucket keeps no versions (the event says "null",
	// which the parser reads as none). Sequencer is not part of the manifest's
	// contract.
	Version   string `json:"versionId,omitempty"`
	Sequencer string `json:"-"`
}

// ParseObjectCreated reads an S3 "Object Created" event of bucket (with key prefix,
// if set). Anything else is an error: the caller dead-letters the message.
func ParseObjectCreated(e event.Envelope, bucket, prefix string) (File, error) {
	if e.Source != "aws.s3" || e.DetailType != "Object Created" {
		return File{}, fmt.Errorf("not an S3 Object Created event: source %q, detail-type %q", e.Source, e.DetailType)
	}
	var d struct {
		Bucket struct {
			Name string `json:"name"`
		} `json:"bucket"`
		Object struct {
			Key   *string `json:"key"`
			Size  *int64  `json:"size"`
			ETag  string  `json:"etag"`
			ETag2 string  `json:"eTag"` // moto's spelling
			// version-id is "null" (moto: also JSON null) in an unversioned or
			// versioning-suspended bucket.
			Version   *string `json:"version-id"`
			Sequencer string  `json:"sequencer"`
		} `json:"object"`
	}
	if err := json.Unmarshal(e.Detail, &d); err != nil {
		return File{}, fmt.Errorf("S3 event detail: %w", err)
	}
	switch {
	case d.Bucket.Name != bucket:
		return File{}, fmt.Errorf("object of bucket %q, not the landing bucket %q", d.Bucket.Name, bucket)
	case d.Object.Key == nil || *d.Object.Key == "":
		return File{}, fmt.Errorf("S3 event has no object key")
	case d.Object.Size == nil || *d.Object.Size < 0:
		return File{}, fmt.Errorf("S3 event of %q has no valid size", *d.Object.Key)
	case !strings.HasPrefix(*d.Object.Key, prefix):
		return File{}, fmt.Errorf("key %q is outside the prefix %q", *d.Object.Key, prefix)
	}
	etag := d.Object.ETag
	if etag == "" {
		etag = d.Object.ETag2
	}
	return File{Bucket: d.Bucket.Name, Key: *d.Object.Key, Size: *d.Object.Size, ETag: strings.Trim(etag, `"`),
		Version: eventVersion(d.Object.Version), Sequencer: d.Object.Sequencer}, nil
}

// nullVersion is the version id S3 gives an object of an unversioned or
// versioning-suspended bucket: the same for every upload of a key, so no version.
const nullVersion = "null"

// eventVersion is an event's version id, "" when it names none.
func eventVersion(v *string) string {
	if s := aws.ToString(v); s != nullVersion {
		return s
	}
	return ""
}
