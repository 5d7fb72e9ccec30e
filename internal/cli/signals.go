package cli

import (
	"context"
	"os"
	"os/signal"
)

// hardStopKey carries, in the context NotifyStop returns, the context that the second
// signal ends.
type hardStopKey struct{}

// NotifyStop returns a context that the first of sigs ends (a stop: `worker run`
// stops polling and drains) and that carries a second one, ended by the next signal
// (stop at once: running jobs are cancelled and what can be released is). This is
// the convention of a second Ctrl-C. stop ends both and stops listening.
func NotifyStop(parent context.Context, sigs ...os.Signal) (ctx context.Context, stop context.CancelFunc) {
	hard, hardStop := context.WithCancel(context.WithoutCancel(parent))
	ctx, cancel := context.WithCancel(context.WithValue(parent, hardStopKey{}, hard))
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, sigs...)
	done := make(chan struct{})
	go func() {
		for _, end := range []context.CancelFunc{cancel, hardStop} {
			select {
			case <-ch:
				end()
			case <-done:
				return
			}
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel()
		hardStop()
	}
}

// hardStopOf is the context that a second signal ends (see NotifyStop); without one,
// a context that never ends.
func hardStopOf(ctx context.Context) context.Context {
	if hard, ok := ctx.Value(hardStopKey{}).(context.Context); ok {
		return hard
	}
	return context.WithoutCancel(ctx)
}
