package checkpointtest_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/checkpoint"
	"github.com/taskbridge/taskbridge/internal/checkpoint/checkpointtest"
	"github.com/taskbridge/taskbridge/internal/jobs"
)

var (
	_ jobs.CheckpointStore = (*checkpointtest.Store)(nil)
	_ jobs.CheckpointStore = (*checkpoint.Store)(nil) // the one it stands in for
)

func TestStoreAnswersAsTheDataBucket(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := checkpointtest.New()
	_, ok, err := s.Get(ctx, "a/b.json")
	require.NoError(t, err)
	require.False(t, ok, "a missing key is not an error")
	require.NoError(t, s.Delete(ctx, "a/b.json"), "nor is deleting one")

	body := []byte(`{"next":1}`)
	require.NoError(t, s.Put(ctx, "a/b.json", body))
	body[2] = 'X' // the caller's buffer is not the stored object
	got, ok, err := s.Get(ctx, "a/b.json")
	require.NoError(t, err)
	require.True(t, ok)
	require.JSONEq(t, `{"next":1}`, string(got))
	require.NoError(t, s.Put(ctx, "a/b.json", []byte(`{"next":2}`)))
	require.Equal(t, []string{`{"next":1}`, `{"next":2}`}, s.Puts())
	require.NoError(t, s.Delete(ctx, "a/b.json"))
	require.Empty(t, s.Objects())
	require.Equal(t, checkpointtest.Calls{Gets: 2, Puts: 2, Deletes: 2}, s.Calls())

	s.Seed("c.json", []byte(`{"next":3}`))
	seeded, ok := s.Object("c.json")
	require.True(t, ok)
	require.JSONEq(t, `{"next":3}`, string(seeded))
	require.Equal(t, checkpointtest.Calls{Gets: 2, Puts: 2, Deletes: 2}, s.Calls(), "a seed is no call")

	require.Error(t, s.Put(ctx, "", body), "S3 refuses an empty key")
	_, _, err = s.Get(ctx, "")
	require.Error(t, err)
	require.Error(t, s.Delete(ctx, ""))
}
