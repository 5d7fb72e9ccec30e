package console

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/taskbridge/taskbridge/internal/dlq"
)

type dlqRow struct {
	Queue
	Depth  int
	Action *actionView
}

func (s *Server) deadLettersPage(w http.ResponseWriter, r *http.Request) {
	rows := make([]dlqRow, len(s.stack.Queues))
	reads := make([]time.Time, len(rows))
	g, ctx := errgroup.WithContext(r.Context())
	g.SetLimit(readConcurrency)
	for i, q := range s.stack.Queues {
		rows[i] = dlqRow{Queue: q, Action: s.action(q.Name)}
		g.Go(func() error {
			a, at, err := s.attributes(ctx, q.DLQURL, fresh(r))
			rows[i].Depth, reads[i] = a.Visible+a.InFlight+a.Delayed, at
			return err
		})
	}
	if err := g.Wait(); err != nil {
		s.fail(w, r, http.StatusBadGateway, "read the DLQs' depths", err)
		return
	}
	s.render(w, r, "dlqs", page{Title: "Dead letters", Nav: "dlq", ReadAt: oldest(reads...), Data: rows})
}

type groupView struct {
	dlq.Group
	Shown    []dlq.Message // this page of the group's messages
	Page     int
	Pages    int
	Selected bool
}

type queueDLQData struct {
	Queue     Queue
	Listing   dlq.Listing
	ReadLimit int
	ReadMore  int // a larger read to offer, when this one stopped at its limit
	Groups    []groupView
	Action    *actionView
	CSRF      string
}

func (s *Server) queueDeadLettersPage(w http.ResponseWriter, r *http.Request) {
	q, ok := s.stack.queue(r.PathValue("queue"))
	if !ok {
		s.fail(w, r, http.StatusNotFound, "show dead letters", fmt.Errorf("no queue %q in the topology", r.PathValue("queue")))
		return
	}
	if a := s.action(q.Name); a != nil && !a.Done {
		// Reading the DLQ now would hide its messages from the redrive.
		s.render(w, r, "dlq", page{Title: "Dead letters of " + q.Name, Nav: "dlq", Data: queueDLQData{Queue: q, Action: a, ReadLimit: s.readLimit(r)}})
		return
	}
	limit := s.readLimit(r)
	l, at, err := cached(r.Context(), s.cache, "dlq-list:"+q.Name+":"+strconv.Itoa(limit), fresh(r), func(ctx context.Context) (dlq.Listing, error) {
		return s.deps.DeadLetters.List(ctx, q.dlq(), limit)
	})
	if err != nil {
		s.fail(w, r, http.StatusBadGateway, "read the DLQ of "+q.Name, err)
		return
	}
	reason := r.URL.Query().Get("reason")
	pageNo, _ := strconv.Atoi(r.URL.Query().Get("page"))
	d := queueDLQData{Queue: q, Listing: l, ReadLimit: limit, Action: s.action(q.Name), CSRF: s.csrfToken(w, r)}
	if l.Read >= limit && l.Depth > l.Read && limit < maxDLQRead {
		d.ReadMore = min(maxDLQRead, limit*5)
	}
	for i, g := range l.Groups {
		// One group's messages are paged: the reason selected, or the first group.
		v := groupView{Group: g, Selected: g.Reason == reason || (reason == "" && i == 0)}
		v.Pages = (len(g.Messages) + s.cfg.PageSize - 1) / s.cfg.PageSize
		if v.Selected {
			v.Page = max(0, min(pageNo, v.Pages-1))
			v.Shown = g.Messages[v.Page*s.cfg.PageSize : min(len(g.Messages), (v.Page+1)*s.cfg.PageSize)]
		}
		d.Groups = append(d.Groups, v)
	}
	s.render(w, r, "dlq", page{Title: "Dead letters of " + q.Name, Nav: "dlq", ReadAt: at, Data: d})
}

// maxDLQRead is the largest read of a DLQ a page may ask for (?read=N).
const maxDLQRead = 10000

// readLimit is the read a page asks for (?read=N), else the configured one.
func (s *Server) readLimit(r *http.Request) int {
	if n, err := strconv.Atoi(r.URL.Query().Get("read")); err == nil && n > 0 {
		return min(n, maxDLQRead)
	}
	return s.cfg.DLQReadLimit
}

type messageData struct {
	Queue   Queue
	Message dlq.Message
}

func (s *Server) messagePage(w http.ResponseWriter, r *http.Request) {
	q, ok := s.stack.queue(r.PathValue("queue"))
	if !ok {
		s.fail(w, r, http.StatusNotFound, "show a dead letter", fmt.Errorf("no queue %q in the topology", r.PathValue("queue")))
		return
	}
	if a := s.action(q.Name); a != nil && !a.Done {
		s.fail(w, r, http.StatusConflict, "show a dead letter", fmt.Errorf("a redrive of %s is running: its messages are read when it ends", q.Name))
		return
	}
	limit := s.readLimit(r)
	msgs, at, err := cached(r.Context(), s.cache, "dlq-show:"+q.Name+":"+strconv.Itoa(limit), fresh(r), func(ctx context.Context) ([]dlq.Message, error) {
		return s.deps.DeadLetters.Show(ctx, q.dlq(), limit)
	})
	if err != nil {
		s.fail(w, r, http.StatusBadGateway, "read the DLQ of "+q.Name, err)
		return
	}
	id := r.URL.Query().Get("id")
	for _, m := range msgs {
		if m.ID == id {
			s.render(w, r, "message", page{Title: "Dead letter " + id, Nav: "dlq", ReadAt: at, Data: messageData{Queue: q, Message: m}})
			return
		}
	}
	s.fail(w, r, http.StatusNotFound, "show a dead letter", fmt.Errorf("message %q is not among the %d read from the DLQ of %s (redriven, purged, or past the read limit)", id, len(msgs), q.Name))
}

// actionState is a redrive the console started, or a purge it did.
type actionState struct {
	Kind     string // redrive, purge
	Reason   string
	Started  time.Time
	Done     bool
	Summary  dlq.Summary
	Err      string
	progress int // messages decided so far
}

// actionView is a copy of an actionState for a template.
type actionView actionState

func (v *actionView) Progress() int { return v.progress }

// action returns a copy of the last action on queue, nil when none.
func (s *Server) action(queue string) *actionView {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.actions[queue]
	if !ok {
		return nil
	}
	v := actionView(*a)
	return &v
}

type confirmData struct {
	Queue  Queue
	Action string
	Reason string
	Depth  int
	CSRF   string
	Rate   float64
}

// confirmPage asks before an action: the only way to one is the form it shows.
func (s *Server) confirmPage(w http.ResponseWriter, r *http.Request) {
	q, action, ok := s.actionTarget(w, r)
	if !ok {
		return
	}
	a, _, err := s.attributes(r.Context(), q.DLQURL, true)
	if err != nil {
		s.fail(w, r, http.StatusBadGateway, "read the DLQ of "+q.Name, err)
		return
	}
	d := confirmData{Queue: q, Action: action, Reason: r.URL.Query().Get("reason"), Depth: a.Visible, CSRF: s.csrfToken(w, r), Rate: s.cfg.RedriveRate}
	s.render(w, r, "confirm", page{Title: "Confirm " + action, Nav: "dlq", Data: d})
}

func (s *Server) actionTarget(w http.ResponseWriter, r *http.Request) (Queue, string, bool) {
	action := r.PathValue("action")
	if action != "redrive" && action != "purge" {
		s.fail(w, r, http.StatusNotFound, "dead letters", fmt.Errorf("no page %q", action))
		return Queue{}, "", false
	}
	if !s.cfg.Actions {
		s.fail(w, r, http.StatusForbidden, action, fmt.Errorf("actions are off: start the console with --actions (WORKER_CONSOLE_ACTIONS=true) to %s", action))
		return Queue{}, "", false
	}
	q, ok := s.stack.queue(r.PathValue("queue"))
	if !ok {
		s.fail(w, r, http.StatusNotFound, action, fmt.Errorf("no queue %q in the topology", r.PathValue("queue")))
		return Queue{}, "", false
	}
	return q, action, true
}

// doAction runs a confirmed action: a purge at once, a redrive in the background
// (it is paced; the queue's page shows its progress).
func (s *Server) doAction(w http.ResponseWriter, r *http.Request) {
	q, action, ok := s.actionTarget(w, r)
	if !ok {
		return
	}
	if !csrfValid(r) {
		s.log.Warn("console action refused: bad CSRF token", zap.String("action", action), zap.String("queue", q.Name), zap.String("remote", r.RemoteAddr))
		s.fail(w, r, http.StatusForbidden, action, fmt.Errorf("the form's token does not match: reload the page and confirm again"))
		return
	}
	reason := r.PostFormValue("reason")
	user, _, _ := r.BasicAuth()
	log := s.log.With(zap.String("action", action), zap.String("queue", q.Name), zap.String("reason", reason),
		zap.String("remote", r.RemoteAddr), zap.String("user", user))
	s.mu.Lock()
	if a, ok := s.actions[q.Name]; ok && !a.Done {
		s.mu.Unlock()
		s.fail(w, r, http.StatusConflict, action, fmt.Errorf("a %s of %s is still running", a.Kind, q.Name))
		return
	}
	st := &actionState{Kind: action, Reason: reason, Started: s.NowFunc()}
	s.actions[q.Name] = st
	runCtx := s.runCtx
	s.mu.Unlock()
	switch action {
	case "purge":
		err := s.deps.DeadLetters.Purge(r.Context(), q.dlq())
		s.finish(q.Name, st, dlq.Summary{Queue: q.Name}, err)
		if err != nil {
			log.Error("console purge failed", zap.Error(err))
			// The answer may be lost after SQS acted, and a purge takes up to a
			// minute: the depth read a minute later tells.
			s.fail(w, r, http.StatusBadGateway, "purge", fmt.Errorf("%w (if SQS got the request, the DLQ empties within a minute: read its depth again then)", err))
			return
		}
		log.Info("console purged a DLQ")
	case "redrive":
		log.Info("console redrive started")
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			sum, err := s.deps.DeadLetters.Redrive(runCtx, q.dlq(), dlq.RedriveOptions{Reason: reason, Rate: s.cfg.RedriveRate, Progress: func(dlq.Outcome) {
				s.mu.Lock()
				st.progress++
				s.mu.Unlock()
			}})
			s.finish(q.Name, st, sum, err)
			fields := []zap.Field{zap.Int("moved", sum.Moved), zap.Int("skipped", sum.Skipped), zap.Int("left", sum.Left)}
			if err != nil {
				log.Error("console redrive stopped", append(fields, zap.Error(err))...)
				return
			}
			log.Info("console redrive done", fields...)
		}()
	}
	http.Redirect(w, r, "/dlq/"+q.Name, http.StatusSeeOther)
}

func (s *Server) finish(queue string, st *actionState, sum dlq.Summary, err error) {
	s.mu.Lock()
	st.Done, st.Summary = true, sum
	if err != nil {
		st.Err = err.Error()
	}
	s.mu.Unlock()
	s.cache.forget("dlq-")
	for _, q := range s.stack.Queues {
		if q.Name == queue {
			s.cache.forget("attrs:" + q.URL)
			s.cache.forget("attrs:" + q.DLQURL)
		}
	}
}
