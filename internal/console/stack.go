package console

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"golang.org/x/sync/errgroup"

	"github.com/taskbridge/taskbridge/internal/dlq"
)

// windows are the choices of the stack page's execution counts.
var windows = []struct {
	Name string
	D    time.Duration
}{{"1h", time.Hour}, {"24h", 24 * time.Hour}, {"7d", 7 * 24 * time.Hour}}

// maxCounted bounds the executions the stack page reads per state machine and
// window (ListExecutions pages of 1000): past it the counts say "at least".
const maxCounted = 10000

// readConcurrency bounds the AWS calls one page makes at once.
const readConcurrency = 8

type queueRow struct {
	Queue
	Counts dlq.Attributes
	DLQ    int
}

type machineRow struct {
	StateMachine
	Counts
}

// Counts are a state machine's executions started in a window, by status.
type Counts struct {
	Running, Succeeded, Failed, Other int
	AtLeast                           bool // counting stopped at maxCounted
}

type readiness struct {
	Addr   string
	Ready  bool
	Status string
}

type stackData struct {
	Queues   []queueRow
	Machines []machineRow
	Fleet    []readiness
	Window   string
	Windows  []string
}

func (s *Server) stackPage(w http.ResponseWriter, r *http.Request) {
	window := windows[1]
	for _, wd := range windows {
		if wd.Name == r.URL.Query().Get("window") {
			window = wd
		}
	}
	d := stackData{Window: window.Name, Queues: make([]queueRow, len(s.stack.Queues)),
		Machines: make([]machineRow, len(s.stack.StateMachines)), Fleet: make([]readiness, len(s.cfg.Metrics))}
	for _, wd := range windows {
		d.Windows = append(d.Windows, wd.Name)
	}
	reads := make([]time.Time, len(d.Queues)*2+len(d.Machines)+len(d.Fleet))
	g, ctx := errgroup.WithContext(r.Context())
	g.SetLimit(readConcurrency)
	for i, q := range s.stack.Queues {
		d.Queues[i].Queue = q
		g.Go(func() (err error) {
			d.Queues[i].Counts, reads[2*i], err = s.attributes(ctx, q.URL, fresh(r))
			return err
		})
		g.Go(func() error {
			a, at, err := s.attributes(ctx, q.DLQURL, fresh(r))
			// A DLQ message being read (the dead letters page) is in flight, not gone.
			d.Queues[i].DLQ, reads[2*i+1] = a.Visible+a.InFlight+a.Delayed, at
			return err
		})
	}
	since := s.NowFunc().Add(-window.D)
	for i, m := range s.stack.StateMachines {
		d.Machines[i].StateMachine = m
		g.Go(func() (err error) {
			key := "counts:" + window.Name + ":" + m.ARN
			d.Machines[i].Counts, reads[2*len(d.Queues)+i], err = cached(ctx, s.cache, key, fresh(r), func(ctx context.Context) (Counts, error) {
				return s.countExecutions(ctx, m.ARN, since)
			})
			return err
		})
	}
	for i, addr := range s.cfg.Metrics {
		g.Go(func() error {
			d.Fleet[i], reads[2*len(d.Queues)+len(d.Machines)+i], _ = cached(ctx, s.cache, "ready:"+addr, fresh(r), func(ctx context.Context) (readiness, error) {
				return s.ready(ctx, addr), nil
			})
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		s.fail(w, r, http.StatusBadGateway, "read the stack", err)
		return
	}
	s.render(w, r, "stack", page{Title: "Stack", Nav: "stack", ReadAt: oldest(reads...), Data: d})
}

func (s *Server) attributes(ctx context.Context, url string, fresh bool) (dlq.Attributes, time.Time, error) {
	return cached(ctx, s.cache, "attrs:"+url, fresh, func(ctx context.Context) (dlq.Attributes, error) {
		return s.deps.DeadLetters.Attributes(ctx, url)
	})
}

// countExecutions counts the executions of arn started since, newest first as
// ListExecutions lists them, up to maxCounted.
func (s *Server) countExecutions(ctx context.Context, arn string, since time.Time) (Counts, error) {
	var c Counts
	in := &sfn.ListExecutionsInput{StateMachineArn: aws.String(arn), MaxResults: 1000}
	for n := 0; ; {
		out, err := s.deps.SFN.ListExecutions(ctx, in)
		if err != nil {
			return Counts{}, fmt.Errorf("list executions of %s: %w", arn, err)
		}
		older := 0
		for _, e := range out.Executions {
			if aws.ToTime(e.StartDate).Before(since) {
				older++
				continue
			}
			switch e.Status {
			case "RUNNING":
				c.Running++
			case "SUCCEEDED":
				c.Succeeded++
			case "FAILED", "TIMED_OUT", "ABORTED":
				c.Failed++
			default:
				c.Other++
			}
		}
		n += len(out.Executions)
		// The list is newest first: a page wholly before the window ends it.
		if out.NextToken == nil || (older == len(out.Executions) && older > 0) {
			return c, nil
		}
		if n >= maxCounted {
			c.AtLeast = true
			return c, nil
		}
		in.NextToken = out.NextToken
	}
}

// ready asks a worker's /readyz.
func (s *Server) ready(ctx context.Context, addr string) readiness {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	if err != nil {
		return readiness{Addr: addr, Status: err.Error()}
	}
	resp, err := s.HTTPClient.Do(req)
	if err != nil {
		return readiness{Addr: addr, Status: "unreachable: " + err.Error()}
	}
	resp.Body.Close()
	return readiness{Addr: addr, Ready: resp.StatusCode == http.StatusOK, Status: resp.Status}
}
