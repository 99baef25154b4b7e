package runner

import (
	"context"
	"errors"
	"fmt"
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

	parked        map[string]parked // by stream id, when parkedLoaded
	parkedLoaded  bool
	parkedChanges int64

	lastSparseSave time.Time
}

func (w *worker) run(ctx context.Context) {
	ctx = context.WithValue(ctx, leaseKey{}, LeaseInfo{Subscription: w.sub.Name, Partition: w.lease.partition,
		Partitions: w.sub.partitions(), Worker: w.lease.worker, FenceToken: w.lease.fence})
	cfg := w.runner.config
	w.backoff = lifecycle.Backoff{Min: cfg.RetryBackoff, Max: cfg.MaxRetryBackoff}
	for ctx.Err() == nil {
		newEvents := w.runner.newEvents.wait()
		changed := w.lease.changed.wait()
		progressed, err := w.step(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errFenced):
			cfg.Logger.WarnContext(ctx, "runner: fenced: stopped dispatching", "subscription", w.sub.Name,
				"partition", w.lease.partition, "fence", w.lease.fence)
			w.runner.notifyLeases(w.sub.Name) // the coordinator drops the lease
			<-ctx.Done()
			return
		case err != nil:
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

// step does one round of work: a parked stream's retry, or a batch.
// progressed reports that there may be more to do at once.
func (w *worker) step(ctx context.Context) (progressed bool, err error) {
	if !w.lease.valid() {
		return false, nil // the coordinator renews it or drops it
	}
	if w.lease.state.Load() != StateRunning {
		return false, nil
	}
	if w.sub.OnFailure == Park {
		if err := w.loadParked(ctx); err != nil {
			return false, err
		}
		for _, p := range w.parked {
			if p.retryRequested {
				return true, w.retryParked(ctx, p)
			}
		}
	}
	var head int64
	if w.sub.sparse() {
		// Read before the batch: every event up to it that the filter
		// keeps is in the batch if the batch comes back short.
		if head, err = w.runner.store.Head(ctx); err != nil {
			return false, err
		}
	}
	limit := w.runner.config.BatchSize
	if w.checkpoint < w.isolateThrough {
		limit = 1
	}
	started := time.Now()
	q := w.sub.query(w.lease.partition, w.checkpoint+1)
	q.Limit = limit
	events, err := w.runner.store.ReadEvents(ctx, q)
	if err != nil {
		return false, err
	}
	if len(events) == 0 {
		if head > w.checkpoint && time.Since(w.lastSparseSave) >= sparseSaveInterval {
			// Nothing for this subscription up to the head: move on, so
			// the next read does not scan those events again.
			if err := w.runner.db.saveCheckpoint(ctx, w.runner.store.Pool(), w.lease.held, w.checkpoint, head); err != nil {
				return false, err
			}
			w.lastSparseSave = time.Now()
			w.advanced(head)
		}
		return false, nil
	}
	through := events[len(events)-1].GlobalPosition
	if len(events) < limit && head > through && limit > 1 {
		through = head
	}
	if err := w.handleBatch(ctx, events, through); err != nil {
		return false, err
	}
	w.runner.config.Metrics.BatchHandled(w.sub.Name, w.lease.partition, len(events), time.Since(started))
	return len(events) == limit, nil
}

// sparseSaveInterval spaces the checkpoints a filtered subscription saves
// while it finds nothing to handle.
const sparseSaveInterval = 100 * time.Millisecond

// handleBatch dispatches events and moves the checkpoint to through,
// trying again with backoff on failure, and applies the failure policy to
// an event that fails MaxAttempts times.
func (w *worker) handleBatch(ctx context.Context, events []*core.RecordedEvent, through int64) error {
	cfg := w.runner.config
	db := w.runner.db
	for len(events) > 0 {
		last := events[len(events)-1].GlobalPosition
		attempts, attemptTo, lastError, err := db.recordAttempt(ctx, w.lease.held, events[0].GlobalPosition, last)
		if err != nil {
			return err
		}
		if attempts > 1 && len(events) > 1 {
			// An earlier attempt from here failed or died: one at a time.
			w.isolateThrough = max(w.isolateThrough, attemptTo, last)
			events, through = events[:1], events[0].GlobalPosition
		}
		if attempts > cfg.MaxAttempts {
			return w.giveUp(ctx, events[0], errors.New(cmpOr(lastError, "every attempt ended without a result: the process died while handling it?")))
		}
		single := len(events) == 1
		handled, cause := w.dispatch(ctx, events, through)
		if handled > 0 {
			w.backoff.Success()
		}
		if cause == nil {
			return nil
		}
		if errors.Is(cause, errFenced) || ctx.Err() != nil {
			return cause
		}
		if !w.isEventFailure(cause) {
			// The database failed us, not the events: the attempt does not
			// count against them.
			if err := db.undoAttempt(ctx, w.lease.held, events[handled].GlobalPosition); err != nil {
				cfg.Logger.WarnContext(ctx, "runner: could not take back an attempt lost to the database", "error", err)
			}
			return cause
		}
		events = events[handled:]
		failed := events[0]
		if handled > 0 {
			// The failed event's first attempt was part of this batch.
			if attempts, _, _, err = db.recordAttempt(ctx, w.lease.held, failed.GlobalPosition, last); err != nil {
				return err
			}
		}
		switch {
		case w.sub.TxHandler != nil && !single:
			// The batch rolled back, whichever event failed: find it alone.
			w.isolateThrough = max(w.isolateThrough, last)
			events, through = events[:1], failed.GlobalPosition
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
// the events handled before a failure.
func (w *worker) dispatch(ctx context.Context, events []*core.RecordedEvent, through int64) (handled int, err error) {
	db := w.runner.db
	if w.sub.TxHandler == nil {
		for i, recorded := range events {
			if err := w.handle(ctx, nil, recorded); err != nil {
				if i > 0 {
					if saveErr := w.save(ctx, w.runner.store.Pool(), events[i-1].GlobalPosition); saveErr != nil {
						return 0, saveErr
					}
				}
				return i, err
			}
		}
		return len(events), w.save(ctx, w.runner.store.Pool(), through)
	}

	scope, err := w.runner.store.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { _ = scope.Rollback(context.WithoutCancel(ctx)) }() // a no-op after Commit
	if err := db.boundIdleness(ctx, scope.Tx(), w.runner.config.LeaseTTL); err != nil {
		return 0, err
	}
	for _, recorded := range events {
		if err := w.handle(ctx, scope, recorded); err != nil {
			return 0, err
		}
	}
	if err := db.saveCheckpoint(ctx, scope.Tx(), w.lease.held, w.checkpoint, through); err != nil {
		return 0, err
	}
	if err := scope.Commit(ctx); err != nil {
		return 0, err
	}
	w.advanced(through)
	return len(events), nil
}

// save moves the checkpoint on exec outside a handler's transaction.
func (w *worker) save(ctx context.Context, exec store.Executor, through int64) error {
	if err := w.runner.db.saveCheckpoint(ctx, exec, w.lease.held, w.checkpoint, through); err != nil {
		return err
	}
	w.advanced(through)
	return nil
}

func (w *worker) advanced(checkpoint int64) {
	w.checkpoint = checkpoint
	w.runner.control.progress.notify()
}

// handle decodes one event and calls the handler, unless its stream is
// parked. A panic in the handler is its error.
func (w *worker) handle(ctx context.Context, scope *store.Scope, recorded *core.RecordedEvent) (err error) {
	if _, held := w.parked[recorded.StreamID]; held {
		return nil
	}
	event := HandledEvent{Recorded: recorded}
	data, err := w.runner.store.Registry().Decode(recorded)
	switch {
	case errors.Is(err, core.ErrUnknownEventType):
	case err != nil:
		return &eventFailure{err}
	default:
		event.Event = data
	}
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
