package failnote

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awstest"
)

func TestMain(m *testing.M) { awstest.Main(m) }

func setup(t *testing.T) (*Store, *s3.Client, string) {
	t.Helper()
	client := s3.NewFromConfig(awstest.Config(t), func(o *s3.Options) { o.UsePathStyle = true })
	bucket := awstest.Stack(t) + "-data"
	_, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	require.NoError(t, err)
	return New(client, bucket), client, bucket
}

const arn = "arn:aws:states:us-east-1:123456789012:execution:work:run-1"

func TestNoteIsWrittenUnderTheExecutionAndReadBack(t *testing.T) {
	t.Parallel()
	s, client, bucket := setup(t)
	ctx := context.Background()
	at := time.Date(2026, 12, 7, 16, 0, 0, 0, time.UTC)
	s.NowFunc = func() time.Time { return at }

	_, found, err := s.Read(ctx, arn)
	require.NoError(t, err)
	require.False(t, found, "no note before a failure")

	require.NoError(t, s.NoteFailure(ctx, arn, "work", "work.Timeout", "first"))
	require.NoError(t, s.NoteFailure(ctx, arn, "work", "work.Exit3", "exited 3: <stderr tail>"))
	n, found, err := s.Read(ctx, arn)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, Note{ExecutionArn: arn, Job: "work", Error: "work.Exit3", Cause: "exited 3: <stderr tail>", At: at}, n, "the last failure, HTML not escaped")
	_, err = client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("run-1/" + KeyName)})
	require.NoError(t, err, "under the execution's prefix")
	require.Equal(t, "s3://"+bucket+"/run-1/"+KeyName, s.Location(arn))
}

func TestNoteRefusesWhatIsNoExecutionPrefix(t *testing.T) {
	t.Parallel()
	s, _, _ := setup(t)
	for _, bad := range []string{"not an arn", "arn:aws:states:us-east-1:1:execution:work:manifests", "arn:aws:states:us-east-1:1:execution:work:.."} {
		require.Error(t, s.NoteFailure(context.Background(), bad, "work", "work.X", "y"), bad)
	}
}

func TestNoteOfAnotherExecutionIsRefused(t *testing.T) {
	t.Parallel()
	s, _, _ := setup(t)
	ctx := context.Background()
	other := "arn:aws:states:us-east-1:123456789012:execution:other:run-1" // same name, another state machine
	require.NoError(t, s.NoteFailure(ctx, other, "x", "x.Y", "z"))
	_, found, err := s.Read(ctx, arn)
	require.ErrorContains(t, err, "names another execution")
	require.False(t, found)
}
