package checkpoint_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awstest"
	"github.com/taskbridge/taskbridge/internal/checkpoint"
	"github.com/taskbridge/taskbridge/internal/jobs"
)

func TestMain(m *testing.M) { awstest.Main(m) }

var _ jobs.CheckpointStore = (*checkpoint.Store)(nil)

// The store on the emulator's S3: a missing checkpoint is none, not an error; a
// stored one reads back; a delete, of a missing one too, succeeds.
func TestIntegrationStoreRoundTrip(t *testing.T) {
	cfg := awstest.Config(t)
	client := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	bucket := awstest.Stack(t) + "-data"
	ctx := context.Background()
	_, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	require.NoError(t, err)
	st := checkpoint.New(bucket, client)
	const key = "run-1/checkpoints/abc.json"

	_, ok, err := st.Get(ctx, key)
	require.NoError(t, err)
	require.False(t, ok, "none yet")
	require.NoError(t, st.Put(ctx, key, []byte(`{"next":500}`)))
	b, ok, err := st.Get(ctx, key)
	require.NoError(t, err)
	require.True(t, ok)
	require.JSONEq(t, `{"next":500}`, string(b))
	require.NoError(t, st.Delete(ctx, key))
	require.NoError(t, st.Delete(ctx, key), "a missing key deletes without error")
	_, ok, err = st.Get(ctx, key)
	require.NoError(t, err)
	require.False(t, ok)

	_, _, err = checkpoint.New(bucket+"-missing", client).Get(ctx, key)
	require.Error(t, err, "a missing bucket is an error, not an empty checkpoint")
}
