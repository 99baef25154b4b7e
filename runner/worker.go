package runner

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"runtime/debug"
	"time"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/core/lifecycle"
	"github.com/mire-go/mire/store"
)

// worker dispatches one partition while its runner leads it: it reads the
// log from the checkpoint, hands each batch to the handler and moves the
// checkpoint, under the lease's fence. It stops when its context ends:
// the lease was fenced, given up, or the runner stopped.
type worker struct {
	runner *Runner
	sub    *Subscription
	lease  *lease

	checkpoint int64
	// isolateThrough: events up to this position are dispatched one at a
	// time, to find the one a failed batch failed on.
	isolateThrough int64
	backoff        lifecycle.Backoff
	// attemptPending: the row counts an attempt to move past the
	// checkpoint that has not ended yet (recorded before a dispatch, or
	// with the last checkpoint). A worker stopped meanwhile takes it back:
	// a stop is not a failure of the events.
	attemptPending bool

	// cursor streams the log from the checkpoint while the worker catches
	// up, reading ahead of the batch being handled.
	cursor *cursor

	parked        map[string]parked // by stream id, when parkedLoaded
	parkedLoaded  bool
	parkedChanges int64

	lastSparseSave time.Time
}

// cursor is a read of the partition in progress.
type cursor struct {
	next func() (*core.RecordedEvent, error, bool)
	stop func()
	// from is the position the read continues after: the checkpoint the
	// worker will be at if it handles everything the read gave.
	from int64
	// head was read before the read started: once the read is exhausted,
	// every event up to it that the filter keeps was read.
	head int64
}

func (w *worker) closeCursor() {
	if w.cursor != nil {
		w.cursor.stop()
		w.cursor = nil
	}
}

func (w *worker) run(ctx context.Context) {
	ctx = context.WithValue(ctx, leaseKey{}, LeaseInfo{Subscription: w.sub.Name, Partition: w.lease.partition,
		Partitions: w.sub.partitions(), Worker: w.lease.worker, FenceToken: w.lease.fence})
	defer w.closeCursor()
	defer w.stopped(ctx)
	cfg := w.runner.config
	w.backoff = lifecycle.Backoff{Min: cfg.RetryBackoff, Max: cfg.MaxRetryBackoff}
	for ctx.Err() == nil {
		newEvents := w.runner.newEvents.wait()
		changed := w.lease.changed.wait()
		progressed, err := w.step(ctx)
		var paused *notRunning
		switch {
		case ctx.Err() != nil:
			return
		case errors.As(err, &paused):
			// Paused while the batch ran: it rolled back (its attempt was
			// taken back). Wait as the renewal would have had us wait.
			w.lease.state.Store(paused.state)
			w.closeCursor()
			cfg.Logger.InfoContext(ctx, "runner: batch not committed: the partition left running while it ran",
				"subscription", w.sub.Name, "partition", w.lease.partition, "state", paused.state)
		case errors.Is(err, errFenced):
			w.attemptPending = false // the row is another worker's now
			cfg.Logger.WarnContext(ctx, "runner: fenced: stopped dispatching", "subscription", w.sub.Name,
				"partition", w.lease.partition, "fence", w.lease.fence)
			w.runner.notifyLeases(w.sub.Name) // the coordinator drops the lease
			<-ctx.Done()
			return
		case err != nil:
			w.closeCursor()
			delay := w.backoff.Failure()
			cfg.Logger.WarnContext(ctx, "runner: dispatch failed; retrying", "subscription", w.sub.Name,
				"partition", w.lease.partition, "error", err, "retry_in", delay)
			sleep(ctx, delay)
			continue
		}
		if progressed {
			continue
		}
		select {
		case <-ctx.Done():
		case <-newEvents:
		case <-changed:
		}
	}
}

// stopped takes back the attempt in progress when the worker stops
// without a failure: a runner stopped (or a lease given up) mid-batch must
// not bring the events nearer to their failure policy. A worker that
// cannot reach the database leaves it counted, as a crash would.
func (w *worker) stopped(ctx context.Context) {
	if !w.attemptPending {
		return
	}
	cleanup, cancel := lifecycle.CleanupContext(ctx, time.Second)
	defer cancel()
	_ = w.runner.db.undoAttempt(cleanup, w.lease.held, w.checkpoint+1) // counted, as after a crash
}

// settleAttempt takes back an attempt counted with the last checkpoint
// for a batch that is not coming (the log ended there, or the partition was
// paused): a worker that then waits, and dies waiting, must not leave it
// counted against the next events.
func (w *worker) settleAttempt(ctx context.Context) error {
	if !w.attemptPending {
		return nil
	}
	if err := w.runner.db.undoAttempt(ctx, w.lease.held, w.checkpoint+1); err != nil {
		return err
	}
	w.attemptPending = false
	return nil
}

// step does one round of work: a parked stream's retry, or a batch.
// progressed reports that there may be more to do at once.
func (w *worker) step(ctx context.Context) (progressed bool, err error) {
	if !w.lease.valid() {
		return false, nil // the coordinator renews it or drops it
	}
	if w.lease.state.Load() != StateRunning {
		w.closeCursor()
		return false, w.settleAttempt(ctx)
	}
	if w.sub.OnFailure == Park {
		if err := w.loadParked(ctx); err != nil {
			return false, err
		}
		for _, p := range w.parked {
			if p.retryRequested {
				w.closeCursor()
				return true, w.retryParked(ctx, p)
			}
		}
	}
	started := time.Now()
	events, exhausted, head, err := w.read(ctx)
	if err != nil {
		return false, err
	}
	if len(events) == 0 {
		if err := w.settleAttempt(ctx); err != nil {
			return false, err
		}
		if head > w.checkpoint && time.Since(w.lastSparseSave) >= sparseSaveInterval {
			// Nothing for this subscription up to the head: move on, so
			// the next read does not scan those events again.
			if err := w.runner.db.saveCheckpoint(ctx, w.runner.store.Pool(), w.lease.held, w.checkpoint, head, false); err != nil {
				return false, err
			}
			w.lastSparseSave = time.Now()
			w.advanced(head)
		}
		return false, nil
	}
	through := events[len(events)-1].GlobalPosition
	if exhausted && head > through {
		through = head
	}
	var end func(core.Outcome)
	if instr := w.runner.config.Instrumentation; instr != nil {
		ctx, end = instr.Start(ctx, core.Operation{Kind: core.OpBatch, Started: started, Subscription: w.sub.Name,
			Partition: w.lease.partition, Events: len(events)})
	}
	err = w.handleBatch(ctx, events, through, !exhausted)
	if end != nil {
		outcome := core.Outcome{Err: err}
		if err == nil {
			outcome.Events = len(events)
		}
		end(outcome)
	}
	if err != nil {
		return false, err
	}
	w.runner.config.Metrics.BatchHandled(w.sub.Name, w.lease.partition, len(events), time.Since(started))
	return !exhausted, nil
}

// read returns the next batch from the checkpoint on: from the cursor
// while catching up, opening one when there is none. exhausted reports
// that the read reached the end of the log (the batch may be short); head
// is then the head read before it, when the subscription's filter makes
// that worth knowing (0 otherwise). While a failed batch is isolated it
// reads one event at a time, without a cursor.
func (w *worker) read(ctx context.Context) (events []*core.RecordedEvent, exhausted bool, head int64, err error) {
	if w.checkpoint < w.isolateThrough {
		w.closeCursor()
		q := w.sub.query(w.lease.partition, w.checkpoint+1)
		q.Limit = 1
		events, err := w.runner.store.ReadEvents(ctx, q)
		return events, false, 0, err
	}
	if w.cursor != nil && w.cursor.from != w.checkpoint {
		w.closeCursor() // the checkpoint moved otherwise than by this read
	}
	if w.cursor == nil {
		if w.sub.sparse() {
			if head, err = w.runner.store.Head(ctx); err != nil {
				return nil, false, 0, err
			}
		}
		next, stop := iter.Pull2(w.runner.store.Read(ctx, w.sub.query(w.lease.partition, w.checkpoint+1)))
		w.cursor = &cursor{next: next, stop: stop, from: w.checkpoint, head: head}
	}
	c := w.cursor
	limit := w.runner.config.BatchSize
	for len(events) < limit {
		e, err, ok := c.next()
		if !ok {
			exhausted = true
			break
		}
		if err != nil {
			w.closeCursor()
			return nil, false, 0, err
		}
		events = append(events, e)
	}
	head = c.head
	if n := len(events); n > 0 {
		c.from = events[n-1].GlobalPosition
	}
	if exhausted {
		w.closeCursor()
		if head > c.from {
			c.from = head
		}
	}
	return events, exhausted, head, nil
}

// sparseSaveInterval spaces the checkpoints a filtered subscription saves
// while it finds nothing to handle.
const sparseSaveInterval = 100 * time.Millisecond

// handleBatch dispatches events and moves the checkpoint to through,
// trying again with backoff on failure, and applies the failure policy to
// an event that fails MaxAttempts times. more reports that another batch
// follows at once: its first attempt is then counted with this batch's
// checkpoint.
func (w *worker) handleBatch(ctx context.Context, events []*core.RecordedEvent, through int64, more bool) error {
	cfg := w.runner.config
	db := w.runner.db
	for len(events) > 0 {
		last := events[len(events)-1].GlobalPosition
		attempts := 1
		if w.attemptPending {
			// Counted with the last checkpoint: this is its first attempt.
			w.attemptPending = false
		} else {
			var attemptTo int64
			var lastError string
			var err error
			attempts, attemptTo, lastError, err = db.recordAttempt(ctx, w.lease.held, w.checkpoint+1, last)
			if err != nil {
				return err
			}
			if attempts > 1 && len(events) > 1 {
				// An earlier attempt from here failed or died: one at a time.
				w.closeCursor()
				w.isolateThrough = max(w.isolateThrough, attemptTo, last)
				events, through, more = events[:1], events[0].GlobalPosition, false
			}
			if attempts > cfg.MaxAttempts {
				return w.giveUp(ctx, events[0], errors.New(cmpOr(lastError, "every attempt ended without a result: the process died while handling it?")))
			}
		}
		w.attemptPending = true
		single := len(events) == 1
		handled, cause := w.dispatch(ctx, events, through, more)
		if handled > 0 {
			w.backoff.Success()
		}
		if cause == nil {
			return nil
		}
		// Paused meanwhile: step takes the attempt back once it sees the
		// state (settleAttempt).
		if errors.Is(cause, errFenced) || errors.As(cause, new(*notRunning)) || ctx.Err() != nil {
			return cause
		}
		w.closeCursor()
		// handled is every event when saving the checkpoint failed: the
		// database's failure, which takes the branch below.
		if handled > 0 && handled < len(events) {
			// The checkpoint before the failed event counted its first
			// attempt: this one.
			events, attempts = events[handled:], 1
		}
		failed := events[0]
		if !w.isEventFailure(cause) {
			// The database failed us, not the events: the attempt does not
			// count against them.
			if err := db.undoAttempt(ctx, w.lease.held, w.checkpoint+1); err != nil {
				cfg.Logger.WarnContext(ctx, "runner: could not take back an attempt lost to the database", "error", err)
			} else {
				w.attemptPending = false
			}
			return cause
		}
		w.attemptPending = false // it ended: in failure
		switch {
		case w.sub.TxHandler != nil && !single:
			// The batch rolled back, whichever event failed: find it alone.
			w.isolateThrough = max(w.isolateThrough, last)
			events, through, more = events[:1], failed.GlobalPosition, false
		case attempts >= cfg.MaxAttempts:
			return w.giveUp(ctx, failed, cause)
		}
		if err := db.attemptFailed(ctx, w.lease.held, failed.GlobalPosition, cause); err != nil {
			return err
		}
		cfg.Metrics.Retry(w.sub.Name, w.lease.partition, cause)
		delay := w.backoff.Failure()
		cfg.Logger.WarnContext(ctx, "runner: handler failed; retrying", "subscription", w.sub.Name, "partition", w.lease.partition,
			"position", failed.GlobalPosition, "stream_id", failed.StreamID, "attempt", attempts, "error", cause, "retry_in", delay)
		if !sleep(ctx, delay) {
			return ctx.Err()
		}
	}
	return nil
}

// dispatch hands events to the handler and moves the checkpoint to
// through: in one transaction for a TxHandler (handled is all or
// nothing), event by event for a Handler, whose checkpoint then covers
// the events handled before a failure. more counts the next batch's first
// attempt with the checkpoint.
func (w *worker) dispatch(ctx context.Context, events []*core.RecordedEvent, through int64, more bool) (handled int, err error) {
	db := w.runner.db
	if w.sub.TxHandler == nil {
		for i, recorded := range events {
			if err := w.handle(ctx, nil, recorded); err != nil {
				if i > 0 {
					// Saved with an attempt at the failed event: this one.
					if saveErr := w.save(ctx, w.runner.store.Pool(), events[i-1].GlobalPosition, true); saveErr != nil {
						return 0, saveErr
					}
				}
				return i, err
			}
		}
		return len(events), w.save(ctx, w.runner.store.Pool(), through, more)
	}

	scope, err := w.runner.store.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { _ = scope.Rollback(context.WithoutCancel(ctx)) }() // a no-op after Commit
	if err := db.boundIdleness(ctx, scope.Tx(), w.runner.config.LeaseTTL); err != nil {
		return 0, err
	}
	hooks := &afterCommit{}
	handlerCtx := context.WithValue(ctx, afterCommitKey{}, hooks)
	for _, recorded := range events {
		if err := w.handle(handlerCtx, scope, recorded); err != nil {
			return 0, err
		}
	}
	if err := db.saveCheckpoint(ctx, scope.Tx(), w.lease.held, w.checkpoint, through, more); err != nil {
		return 0, err
	}
	if err := scope.Commit(ctx); err != nil {
		return 0, err
	}
	w.attemptPending = more
	w.advanced(through)
	for _, fn := range hooks.fns {
		fn()
	}
	return len(events), nil
}

// save moves the checkpoint on exec outside a handler's transaction,
// counting an attempt at what follows when next is set.
func (w *worker) save(ctx context.Context, exec store.Executor, through int64, next bool) error {
	if err := w.runner.db.saveCheckpoint(ctx, exec, w.lease.held, w.checkpoint, through, next); err != nil {
		return err
	}
	w.attemptPending = next
	w.advanced(through)
	return nil
}

func (w *worker) advanced(checkpoint int64) {
	w.checkpoint = checkpoint
	w.runner.control.progress.notify()
}

// handle calls the handler with one event, unless its stream is parked. A
// panic in the handler is its error, and so is an event that did not
// decode when the handler asked for it.
func (w *worker) handle(ctx context.Context, scope *store.Scope, recorded *core.RecordedEvent) (err error) {
	if _, held := w.parked[recorded.StreamID]; held {
		return nil
	}
	if instr := w.runner.config.Instrumentation; instr != nil {
		var end func(core.Outcome)
		ctx, end = instr.Start(ctx, core.Operation{Kind: core.OpHandle, Subscription: w.sub.Name,
			Partition: w.lease.partition, StreamID: recorded.StreamID, Event: recorded})
		defer func() { end(core.Outcome{Err: err, Events: 1}) }() // runs after the recover below
	}
	event := NewHandledEvent(w.runner.store.Registry(), recorded)
	defer func() {
		if p := recover(); p != nil {
			err = &eventFailure{fmt.Errorf("runner: handler panicked: %v\n%s", p, debug.Stack())}
		}
	}()
	if scope != nil {
		err = w.sub.TxHandler(ctx, scope, event)
	} else {
		err = w.sub.Handler(ctx, event)
	}
	if err == nil {
		err = event.decodeError()
	}
	if err != nil {
		return &eventFailure{err}
	}
	return nil
}

// eventFailure is an error of the handler (or of decoding) for an event:
// what attempts count. Other errors of a dispatch are the database's.
type eventFailure struct{ err error }

func (e *eventFailure) Error() string { return e.err.Error() }
func (e *eventFailure) Unwrap() error { return e.err }

// isEventFailure reports an error the event's handling caused, as opposed
// to a lost connection or an unavailable database, in the runner's own
// statements or in the handler's.
func (w *worker) isEventFailure(err error) bool {
	var failure *eventFailure
	if !errors.As(err, &failure) {
		return false
	}
	// The handler's own statements return the driver's errors: classify
	// them as the store does its own.
	kind, ok := core.DBKind(w.runner.store.DatabaseError("handle", failure.err))
	return !ok || kind != core.DBConnection
}

// giveUp applies the failure policy to an event that failed MaxAttempts
// times.
func (w *worker) giveUp(ctx context.Context, failed *core.RecordedEvent, cause error) error {
	cfg := w.runner.config
	if w.sub.OnFailure == Park {
		return w.park(ctx, failed, cause)
	}
	if err := w.runner.db.markFailed(ctx, w.lease.held, failed.GlobalPosition, cause); err != nil {
		return err
	}
	w.lease.state.Store(StateFailed)
	cfg.Logger.ErrorContext(ctx, "runner: subscription stopped: an event failed every attempt", "subscription", w.sub.Name,
		"partition", w.lease.partition, "position", failed.GlobalPosition, "stream_id", failed.StreamID,
		"stream_version", failed.StreamVersion, "attempts", cfg.MaxAttempts, "error", cause)
	cfg.Metrics.Failed(w.sub.Name, w.lease.partition, cause)
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func cmpOr(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}
