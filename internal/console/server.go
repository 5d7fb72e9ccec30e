package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Server is the console: New, then Run (or Serve with a listener).
type Server struct {
	cfg   Config
	stack Stack
	deps  Deps
	log   *zap.Logger
	cache *cache
	pages map[string]*template.Template
	// HTTPClient reads the workers' /readyz.
	HTTPClient *http.Client
	// NowFunc is the clock.
	NowFunc func() time.Time

	// actions are the redrives started from the console; wg waits for them.
	mu      sync.Mutex
	actions map[string]*actionState // by queue; guarded by mu
	wg      sync.WaitGroup
	runCtx  context.Context // set by Serve: actions end with it
}

// New checks cfg and returns a console over stack. A nil dependency is a bug.
func New(cfg Config, stack Stack, deps Deps, log *zap.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.SFN == nil || deps.S3 == nil || deps.DeadLetters == nil || log == nil {
		panic("console.New: nil dependency")
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg: cfg, stack: stack, deps: deps, log: log.With(zap.String("component", "console")),
		HTTPClient: &http.Client{Timeout: 2 * time.Second},
		NowFunc:    time.Now,
		actions:    map[string]*actionState{},
		runCtx:     context.Background(),
	}
	s.cache = newCache(cfg.CacheTTL, func() time.Time { return s.NowFunc() })
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	s.pages = pages
	return s, nil
}

// Run listens on cfg.Addr and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("console: listen on %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends, then stops the server and waits for the
// actions in progress (a redrive stops at its next message, releasing what it
// read).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	s.runCtx = ctx
	s.mu.Unlock()
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	s.log.Info("console listening", zap.String("addr", "http://"+ln.Addr().String()), zap.Bool("actions", s.cfg.Actions))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var err error
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err = srv.Shutdown(sctx)
		cancel()
		if serveErr := <-errc; !errors.Is(serveErr, http.ErrServerClosed) {
			err = errors.Join(err, serveErr)
		}
	case err = <-errc:
	}
	s.wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Handler is the console's routes behind auth and cross-origin protection.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", s.stackPage)
	mux.HandleFunc("GET /executions", s.executionsPage)
	mux.HandleFunc("GET /execution", s.executionPage)
	mux.HandleFunc("GET /object", s.objectPage)
	mux.HandleFunc("GET /dlq", s.deadLettersPage)
	mux.HandleFunc("GET /dlq/{queue}", s.queueDeadLettersPage)
	mux.HandleFunc("GET /dlq/{queue}/message", s.messagePage)
	mux.HandleFunc("GET /dlq/{queue}/{action}", s.confirmPage)
	mux.HandleFunc("POST /dlq/{queue}/{action}", s.doAction)
	cop := http.NewCrossOriginProtection()
	return s.authenticate(cop.Handler(mux))
}

// authenticate lets a request through when no auth is set, or when it carries the
// token (bearer, or as a basic-auth password) or the basic-auth user and password.
func (s *Server) authenticate(next http.Handler) http.Handler {
	if s.cfg.Token == "" && s.cfg.BasicAuth == "" {
		return next
	}
	wantUser, wantPass, _ := strings.Cut(s.cfg.BasicAuth, ":")
	eq := func(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok := false
		if bearer, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); found && s.cfg.Token != "" {
			ok = eq(bearer, s.cfg.Token)
		} else if user, pass, found := r.BasicAuth(); found {
			ok = (s.cfg.Token != "" && eq(pass, s.cfg.Token)) ||
				(s.cfg.BasicAuth != "" && eq(user, wantUser) && eq(pass, wantPass))
		}
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="taskbridge console", charset="UTF-8"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// csrfCookie holds the double-submit token: a form's hidden field must equal it.
// Cross-site requests are refused before (CrossOriginProtection); the token covers
// browsers that send neither Sec-Fetch-Site nor Origin.
const csrfCookie = "console_csrf"

// csrfToken returns the request's token, setting a new cookie when it has none.
func (s *Server) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) >= 32 {
		return c.Value
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	v := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: v, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	return v
}

func csrfValid(r *http.Request) bool {
	c, err := r.Cookie(csrfCookie)
	if err != nil || len(c.Value) < 32 {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostFormValue("csrf"))) == 1
}

// page is what every template gets.
type page struct {
	Title   string
	Nav     string // the section: stack, executions, dlq
	Stack   Stack
	Actions bool
	ReadAt  time.Time // oldest read shown; zero: nothing cached
	Now     time.Time
	Fresh   string // the URL that reads again
	Data    any
}

// Age is how old the page's data is, for its footer.
func (p page) Age() string {
	if p.ReadAt.IsZero() {
		return ""
	}
	return p.Now.Sub(p.ReadAt).Round(time.Second).String()
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, name string, p page) {
	s.renderStatus(w, r, http.StatusOK, name, p)
}

func (s *Server) renderStatus(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	p.Stack, p.Actions, p.Now = s.stack, s.cfg.Actions, s.NowFunc()
	q := r.URL.Query()
	q.Set("fresh", "1")
	p.Fresh = r.URL.Path + "?" + q.Encode()
	t, ok := s.pages[name]
	if !ok {
		panic("console: no template " + name)
	}
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout", p); err != nil {
		s.log.Error("render page", zap.String("page", name), zap.Error(err))
		http.Error(w, "render: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'none'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// fail shows an error page: what was being read, and AWS's answer.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, what string, err error) {
	if status >= 500 {
		s.log.Warn("console read failed", zap.String("what", what), zap.Error(err))
	}
	s.renderStatus(w, r, status, "error", page{Title: "Error", Data: map[string]string{"What": what, "Err": err.Error()}})
}

func fresh(r *http.Request) bool { return r.URL.Query().Get("fresh") != "" }

// oldest is the earliest non-zero time.
func oldest(ts ...time.Time) time.Time {
	var o time.Time
	for _, t := range ts {
		if !t.IsZero() && (o.IsZero() || t.Before(o)) {
			o = t
		}
	}
	return o
}
