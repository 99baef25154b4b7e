// Package lifecycle gives mire's background components one start/stop
// discipline: Start returns at once and runs the component in a goroutine,
// Stop cancels it and waits until the goroutine has returned, Stop is
// idempotent and safe before Start or from many goroutines at once, and a
// stopped component starts again. [Backoff] paces retries after repeated
// failures.
//
// A component embeds a [Base] and hands its run function to
// [Base.StartFunc]; Stop, Started and Stopped come with the Base. (A
// component whose API should not offer StartFunc keeps the Base in an
// unexported field and forwards the three instead.) The run
// function owns everything it starts: it returns only once the goroutines
// it started have returned. Cleanup that must finish even though the run
// was cancelled (releasing a lease, flushing a checkpoint) runs under
// [CleanupContext], which ignores the cancellation but not a time limit.
//
// The package uses the standard library only, so that every mire module can
// build on it.
package lifecycle

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrStopped is the cause of a run context cancelled by [Base.Stop], as
// context.Cause reports it: it tells a stop apart from the cancellation of
// the context Start was given.
var ErrStopped = errors.New("lifecycle: stopped")

// Service is what a background component offers, usually by embedding a
// [Base] and defining Start.
type Service interface {
	// Start starts the component in the background and returns at once.
	// Starting a running component does nothing.
	Start(ctx context.Context) error

	// Stop cancels the component and waits until its goroutines have
	// returned, or until ctx ends. It is idempotent.
	Stop(ctx context.Context) error

	// Started returns a channel closed once the component has started.
	Started() <-chan struct{}

	// Stopped returns a channel closed once the component is not running.
	Stopped() <-chan struct{}
}

// runState is one start of a component, from StartFunc until its goroutine
// returns.
type runState struct {
	cancel  context.CancelCauseFunc
	started chan struct{}
	stopped chan struct{}
}

// closedChan is the Stopped channel of a component never started.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Base implements the lifecycle of a component that embeds it. Its zero
// value is ready; it must not be copied after first use.
type Base struct {
	mu          sync.Mutex
	current     *runState     // the running run; nil when none is, or Stop was called
	last        *runState     // the latest run, running or not
	nextStarted chan struct{} // handed out by Started before a run existed
}

// StartFunc starts run in a goroutine of its own and returns at once,
// reporting whether it did: it does nothing while a run it started earlier
// is going and Stop has not been called. run gets a context that Stop
// cancels (with cause [ErrStopped]) and that ends when ctx does; the run is
// over when run returns, and run must not return before the goroutines it
// started.
//
// A run never overlaps the previous one: when Stop gave up waiting for the
// previous run (its ctx ended), the new goroutine waits for it to return
// before calling run.
func (b *Base) StartFunc(ctx context.Context, run func(ctx context.Context)) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.current != nil {
		return false
	}
	r := &runState{started: b.nextStarted, stopped: make(chan struct{})}
	if r.started == nil {
		r.started = make(chan struct{})
	}
	b.nextStarted = nil
	ctx, r.cancel = context.WithCancelCause(ctx)
	previous := b.last
	b.current, b.last = r, r

	go func() {
		defer func() {
			r.cancel(nil)
			b.mu.Lock()
			// A run that ended on its own (its ctx ended, or run
			// returned) leaves the component stopped and startable.
			if b.current == r {
				b.current = nil
			}
			b.mu.Unlock()
			select {
			case <-r.started:
			default:
				close(r.started) // nobody waits forever on a run that never began
			}
			close(r.stopped)
		}()
		if previous != nil {
			// Already cancelled: it returns without help.
			<-previous.stopped
		}
		if ctx.Err() != nil {
			return
		}
		close(r.started)
		run(ctx)
	}()
	return true
}

// Stop cancels the running run, if any, and waits until its goroutine has
// returned or ctx ends, whichever is first; in the second case it returns
// ctx's error and the run still ends, later. Stop is idempotent, may be
// called from many goroutines at once and before any start, and a later
// Stop waits again for a run an earlier one gave up on.
func (b *Base) Stop(ctx context.Context) error {
	b.mu.Lock()
	r := b.last
	b.current = nil
	b.mu.Unlock()
	if r == nil {
		return nil
	}
	r.cancel(ErrStopped)
	select {
	case <-r.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Started returns a channel closed once the running run has begun, or, when
// none is running, once the next one has. A run that ends before it begins
// (its ctx ended first) closes it too.
func (b *Base) Started() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.current != nil {
		return b.current.started
	}
	if b.nextStarted == nil {
		b.nextStarted = make(chan struct{})
	}
	return b.nextStarted
}

// Stopped returns a channel closed once the latest run has returned; it is
// closed already when the component was never started. Take it after Start:
// every start has a new one.
func (b *Base) Stopped() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last == nil {
		return closedChan
	}
	return b.last.stopped
}

// CleanupContext returns a context for cleanup after ctx was cancelled: it
// keeps ctx's values but not its cancellation, so that the cleanup a stop
// requires is not cut short by the stop itself, and ends after timeout, so
// that cleanup against a dead server cannot hold Stop forever.
func CleanupContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), timeout)
}
