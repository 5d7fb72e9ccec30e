package cli

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A keep-alive connection left idle is closed by Close, so that nothing of a run
// outlives it; a connection dialed after Close is the caller's.
func TestConnTrackerClosesIdleConnections(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	closed := 0
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			mu.Lock()
			closed++
			mu.Unlock()
		}
	}
	srv.Start()
	defer srv.Close()

	conns := newConnTracker()
	tr := &http.Transport{DialContext: conns.dial(nil)}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	get := func() {
		resp, err := client.Get(srv.URL)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		require.NoError(t, resp.Body.Close())
	}
	get()
	mu.Lock()
	require.Zero(t, closed, "kept alive")
	mu.Unlock()

	conns.Close()
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return closed == 1 }, 5*time.Second, 10*time.Millisecond)
	get() // a new connection, not tracked
	require.Empty(t, conns.conns)
}
