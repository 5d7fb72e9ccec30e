package console

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Config is what the console serves and how.
type Config struct {
	// Addr is the listen address, host:port (WORKER_CONSOLE_ADDR).
	Addr string
	// Token, when set, is accepted as "Authorization: Bearer <token>", or as the
	// password of basic auth with any user name (what a browser can send).
	Token string
	// BasicAuth, when set, is "user:password" for HTTP basic auth.
	BasicAuth string
	// Actions lets the console redrive and purge dead letters; off: it only reads.
	Actions bool
	// Metrics are host:port of workers' metrics servers, whose /readyz the stack
	// page shows.
	Metrics []string
	// CacheTTL is how long a read is reused; 0 reads on every request.
	CacheTTL time.Duration
	// PageSize is the rows of a list page (executions, dead letters, objects); 50
	// when zero, at most 1000 (ListExecutions' maximum).
	PageSize int
	// DLQReadLimit is the most messages one read of a DLQ takes by default (SQS has
	// no paging: a DLQ is read by receiving it, ten a call); 200 when zero. A page
	// may ask for more, up to maxDLQRead.
	DLQReadLimit int
	// RedriveRate is the most messages a console redrive moves per second; 10 when
	// zero.
	RedriveRate float64
}

func (c Config) withDefaults() Config {
	if c.PageSize <= 0 {
		c.PageSize = 50
	}
	c.PageSize = min(c.PageSize, 1000)
	if c.DLQReadLimit <= 0 {
		c.DLQReadLimit = 200
	}
	if c.RedriveRate <= 0 {
		c.RedriveRate = 10
	}
	return c
}

// Validate reports every problem, and refuses a console reachable from other hosts
// without an auth setting.
func (c Config) Validate() error {
	var errs []error
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		errs = append(errs, fmt.Errorf("console address %q is not host:port: %w", c.Addr, err))
	} else if !loopback(host) && c.Token == "" && c.BasicAuth == "" {
		errs = append(errs, fmt.Errorf("console address %q is reachable from other hosts and no auth is set: "+
			"set WORKER_CONSOLE_TOKEN (a bearer token) or WORKER_CONSOLE_BASIC_AUTH (user:password), "+
			"or listen on loopback (--addr 127.0.0.1:8080)", c.Addr))
	}
	if c.BasicAuth != "" && !strings.Contains(c.BasicAuth, ":") {
		errs = append(errs, errors.New("console basic auth must be user:password"))
	}
	if c.CacheTTL < 0 {
		errs = append(errs, fmt.Errorf("console cache TTL must not be negative, got %s", c.CacheTTL))
	}
	for _, m := range c.Metrics {
		if _, _, err := net.SplitHostPort(m); err != nil {
			errs = append(errs, fmt.Errorf("console metrics address %q is not host:port: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

// loopback reports whether host names only this machine. An empty host (":8080")
// is every interface.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
