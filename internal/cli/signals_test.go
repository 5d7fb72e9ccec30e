package cli

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The first signal is the stop; the second ends the context hardStopOf finds.
func TestNotifyStopSecondSignalIsTheHardStop(t *testing.T) {
	ctx, stop := NotifyStop(context.Background(), syscall.SIGUSR1)
	defer stop()
	hard := hardStopOf(ctx)
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGUSR1))
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the first signal did not stop")
	}
	require.NoError(t, hard.Err(), "one signal is not the hard stop")
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGUSR1))
	select {
	case <-hard.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the second signal did not end the hard stop's context")
	}
}

func TestHardStopOfAPlainContextNeverEnds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, hardStopOf(ctx).Err())
}
