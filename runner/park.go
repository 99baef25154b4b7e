package runner

import (
	"context"
	"errors"
	"slices"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/store"
)

// loadParked reads the partition's parked streams when they changed since
// the last read.
func (w *worker) loadParked(ctx context.Context) error {
	changes := w.lease.parkedChanges.Load()
	if w.parkedLoaded && changes == w.parkedChanges {
		return nil
	}
	partition := w.lease.partition
	rows, err := w.runner.db.parkedStreams(ctx, w.sub.Name, &partition)
	if err != nil {
		return err
	}
	w.parked = make(map[string]parked, len(rows))
	for _, r := range rows {
		w.parked[r.StreamID] = parked{streamID: r.StreamID, version: r.StreamVersion, position: r.GlobalPosition,
			err: r.Error, retryRequested: r.RetryRequestedAt != nil, skipReason: r.SkipReason}
	}
	w.parkedLoaded, w.parkedChanges = true, changes
	return nil
}

// park sets failed's stream aside and moves the checkpoint past failed,
// in one transaction: the stream's later events are held (handle skips
// them) until a retry.
func (w *worker) park(ctx context.Context, failed *core.RecordedEvent, cause error) error {
	cfg := w.runner.config
	p := parked{streamID: failed.StreamID, version: failed.StreamVersion, position: failed.GlobalPosition, err: truncateError(cause)}
	scope, err := w.runner.store.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = scope.Rollback(context.WithoutCancel(ctx)) }() // a no-op after Commit
	if err := w.runner.db.park(ctx, scope.Tx(), w.lease.held, p); err != nil {
		return err
	}
	if err := w.runner.db.saveCheckpoint(ctx, scope.Tx(), w.lease.held, w.checkpoint, failed.GlobalPosition, false); err != nil {
		return err
	}
	if err := scope.Commit(ctx); err != nil {
		return err
	}
	if w.parked == nil {
		w.parked = map[string]parked{}
	}
	w.parked[p.streamID] = p
	w.advanced(failed.GlobalPosition)
	cfg.Logger.ErrorContext(ctx, "runner: stream parked: an event failed every attempt", "subscription", w.sub.Name,
		"partition", w.lease.partition, "stream_id", failed.StreamID, "stream_version", failed.StreamVersion,
		"position", failed.GlobalPosition, "error", cause)
	cfg.Metrics.Parked(w.sub.Name, w.lease.partition, failed.StreamID, true)
	return nil
}

// retryParked handles a parked stream's held events, those up to the
// checkpoint (later ones come with the log once the stream is released),
// skipping the failed one first if asked to. If one fails again the
// stream stays parked at it, with the new error.
func (w *worker) retryParked(ctx context.Context, p parked) error {
	db := w.runner.db
	es := w.runner.store
	var held []*core.RecordedEvent
	for e, err := range es.Read(ctx, core.StreamQuery{StreamID: p.streamID, FromVersion: p.version}) {
		if err != nil {
			return err
		}
		if e.GlobalPosition == 0 || e.GlobalPosition > w.checkpoint {
			break
		}
		if len(w.sub.EventTypes) > 0 && !slices.Contains(w.sub.EventTypes, e.EventType) {
			continue
		}
		held = append(held, e)
	}
	if p.skipReason != "" && len(held) > 0 && held[0].StreamVersion == p.version {
		skipped := held[0]
		held = held[1:]
		next := parked{streamID: p.streamID, err: p.err}
		if len(held) > 0 {
			next.version, next.position = held[0].StreamVersion, held[0].GlobalPosition
		}
		if err := es.InScope(ctx, func(scope *store.Scope) error {
			if err := db.recordSkip(ctx, scope.Tx(), w.lease.held, SkippedEvent{GlobalPosition: skipped.GlobalPosition,
				StreamID: skipped.StreamID, StreamVersion: skipped.StreamVersion, Reason: p.skipReason, Error: p.err}); err != nil {
				return err
			}
			if len(held) == 0 {
				return db.releaseParked(ctx, scope.Tx(), w.lease.held, p.streamID)
			}
			return db.moveParked(ctx, scope.Tx(), w.lease.held, next)
		}); err != nil {
			return err
		}
		if len(held) == 0 {
			return w.released(ctx, p.streamID)
		}
		p = next
	}

	handled := 0
	var cause error
	if w.sub.TxHandler != nil {
		cause = es.InScope(ctx, func(scope *store.Scope) error {
			delete(w.parked, p.streamID) // handle() holds parked streams back
			defer func() { w.parked[p.streamID] = p }()
			for _, e := range held {
				if err := w.handle(ctx, scope, e); err != nil {
					return err
				}
			}
			if err := db.releaseParked(ctx, scope.Tx(), w.lease.held, p.streamID); err != nil {
				return err
			}
			// Fenced: another worker leads the partition now; roll back.
			return db.saveCheckpoint(ctx, scope.Tx(), w.lease.held, w.checkpoint, w.checkpoint, false)
		})
		if cause == nil {
			handled = len(held)
		}
	} else {
		delete(w.parked, p.streamID)
		for _, e := range held {
			if cause = w.handle(ctx, nil, e); cause != nil {
				break
			}
			handled++
		}
		w.parked[p.streamID] = p
		if cause == nil {
			cause = db.releaseParked(ctx, es.Pool(), w.lease.held, p.streamID)
		}
	}
	if errors.Is(cause, errFenced) || ctx.Err() != nil {
		return cause
	}
	if cause == nil {
		return w.released(ctx, p.streamID)
	}
	if !w.isEventFailure(cause) {
		return cause // the retry stays requested: the worker tries again
	}
	failedAt := held[handled]
	if w.sub.TxHandler != nil {
		failedAt = held[0]
	}
	w.runner.config.Logger.WarnContext(ctx, "runner: retry of a parked stream failed; it stays parked", "subscription", w.sub.Name,
		"partition", w.lease.partition, "stream_id", p.streamID, "stream_version", failedAt.StreamVersion, "error", cause)
	next := parked{streamID: p.streamID, version: failedAt.StreamVersion, position: failedAt.GlobalPosition, err: truncateError(cause)}
	if err := db.moveParked(ctx, es.Pool(), w.lease.held, next); err != nil {
		return err
	}
	w.parked[p.streamID] = next
	return nil
}

func (w *worker) released(ctx context.Context, streamID string) error {
	delete(w.parked, streamID)
	w.runner.config.Logger.InfoContext(ctx, "runner: parked stream released", "subscription", w.sub.Name,
		"partition", w.lease.partition, "stream_id", streamID)
	w.runner.config.Metrics.Parked(w.sub.Name, w.lease.partition, streamID, false)
	w.runner.control.progress.notify()
	return nil
}
