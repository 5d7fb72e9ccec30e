package consumer

import "errors"

// ErrDetached is what a handler returns when it has detached its message
// (Detach): the Poller then neither settles the message on the handler's return
// nor runs another handler on its goroutine. A handler returns it only after, or
// when certain of, a call of Detach for that message.
var ErrDetached = errors.New("message detached from its handler's goroutine")

// Detachable reports whether m came from a Poller, so that its handler may detach
// it (Detach).
func (m Message) Detachable() bool { return m.poller != nil }

// Detach takes the rest of m's handling off the goroutine that runs its handler:
// for a handler whose goroutine is held by what it called (a job that ignores its
// context), so that the message is still settled and its slot freed. From now on
// the Poller serves its other messages on a new goroutine, in the held one's place;
// the returned settle settles m as a return of err from its handler would, and
// must be called once. The handler must return ErrDetached (whenever it returns),
// and nothing else. Detach must be called at most once for a message, and only
// for a Detachable one.
func Detach(m Message) (settle func(err error)) {
	p := m.poller
	// The drain waits for the settle too: the replacement may find the work closed
	// and leave before it comes. The held goroutine's count is still in handlers
	// here, so adding is safe while the drain waits.
	p.handlers.Add(1)
	go p.serve() // counted in handlers as the held goroutine was
	return func(err error) {
		defer p.handlers.Done()
		p.finish(p.serving.budget, m, m.held, err)
	}
}
