package telemetry

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// NewRegistry returns the process's registry with the Go and process collectors and
// worker_build_info.
func NewRegistry(version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "worker_build_info", Help: "Build of the running worker."}, []string{"version", "goversion"})
	build.WithLabelValues(version, runtime.Version()).Set(1)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), build)
	return reg
}

// Server serves /metrics, /healthz (alive) and /readyz (ready to work).
type Server struct {
	// StopTimeout bounds the server's shutdown when Run's context ends (default
	// 3 s; the worker gives its stop budget's, config.StopBudget). Set it before Run.
	StopTimeout time.Duration

	addr  string
	l     net.Listener // set by Listen, or by Run
	srv   *http.Server
	log   *zap.Logger
	ready func() error
}

// NewServer returns a server on addr; ready says whether /readyz answers 200.
func NewServer(addr string, reg *prometheus.Registry, ready func() error, log *zap.Logger) *Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]string{"status": "not ready", "reason": err.Error()})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "ready"})
	})
	return &Server{addr: addr, log: log.With(zap.String("component", "http")), ready: ready,
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
}

// Listen binds the address now, so that a taken port is found before the worker
// starts any work; Run then serves on it. Connections that come before Run wait in
// the listen backlog.
func (s *Server) Listen() error {
	l, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.addr, err)
	}
	s.l = l
	return nil
}

// Run serves (listening first unless Listen did) until ctx is done, then shuts down
// within a few seconds. A Listen happens before its Run (not concurrently).
func (s *Server) Run(ctx context.Context) error {
	if s.l == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	l := s.l
	s.log.Info("serving /metrics, /healthz, /readyz", zap.String("addr", l.Addr().String()))
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cmp.Or(s.StopTimeout, 3*time.Second))
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down http server: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Healthcheck asks the /healthz of a worker listening on addr (":9090" means this
// host), for `worker healthcheck`: the container image has no shell or curl.
func Healthcheck(ctx context.Context, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("metrics address %q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthz: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz: %s", resp.Status)
	}
	return nil
}
