package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
)

// Append appends events to a stream if expected holds, in one round trip and
// one transaction.
//
// Under concurrency, single-event appends share that transaction: see
// [Config.SoloAppends]. Each still succeeds or fails on its own.
//
// A version conflict returns a [*core.VersionConflictError] (matching
// [core.ErrConcurrency]) and writes nothing. Invalid input is rejected before
// anything is sent.
//
// A connection error or a context that ends while an append runs leaves its
// outcome unknown: the server may still commit it. Set Metadata.EventID on
// every event and append again with the same IDs: a retry of a committed
// append returns the original result with Duplicate set and stores nothing
// twice, and an event ID stored with other content is a
// [*core.EventIDReusedError]. Duplicate can also answer a first call, when
// the store retried for it (see [core.CommittedEvents]): it always means the
// events are stored, once.
func (s *EventStore) Append(ctx context.Context, streamID string, expected core.ExpectedVersion, events ...core.Event) (*core.CommittedEvents, error) {
	return s.append(ctx, s.pool, streamID, expected, events)
}

// AppendTx is [EventStore.Append] inside the caller's transaction: the
// events commit or roll back with it. Neither a version conflict nor a retry
// (which returns the original result) aborts tx, and neither does a batch
// that meets a concurrent append part-way: it runs under a savepoint, rolled
// back before the append is tried again.
//
// tx may be at any isolation level. At READ COMMITTED a lost race is a
// [*core.VersionConflictError] (or a retry, for Any and StreamExists); under
// REPEATABLE READ or SERIALIZABLE, a race with an append committed after
// tx's snapshot fails as [core.DBSerializationFailure] and aborts tx, as
// PostgreSQL does for any write: retry the whole transaction. Until tx
// ends, the appended versions are taken: another append of them waits for
// tx, then fails with a conflict if tx committed.
func (s *EventStore) AppendTx(ctx context.Context, tx pgx.Tx, streamID string, expected core.ExpectedVersion, events ...core.Event) (*core.CommittedEvents, error) {
	if tx == nil {
		return nil, &core.InvalidInputError{Field: "tx", Reason: "is nil"}
	}
	return s.append(ctx, tx, streamID, expected, events)
}

// maxAppendAttempts bounds how often an append whose expectation still holds
// is tried again after losing a race (Any and StreamExists appends, whose
// versions another writer took first).
const maxAppendAttempts = 100

func (s *EventStore) append(ctx context.Context, exec executor, streamID string, expected core.ExpectedVersion, events []core.Event) (*core.CommittedEvents, error) {
	if s.instr != nil {
		return s.appendTraced(ctx, exec, streamID, expected, events)
	}
	r, err := s.encodeAppend(streamID, expected, events, nil)
	if err != nil {
		return nil, err
	}
	committed, err := s.route(ctx, exec, r)
	if err != nil {
		return nil, s.interpretError(fmt.Sprintf("append to %q", streamID), err)
	}
	return committed, nil
}

// route sends an append where it runs: a single-event append on the pool
// into a group with other callers' (see Config.SoloAppends) or alone, as
// anything else. An append to a hot stream (see hotStreams) that certainly
// conflicts is answered here; other appends to hot streams run alone. An
// append a group did not store runs alone, which explains refusals,
// resolves retries and waits for locks.
func (s *EventStore) route(ctx context.Context, exec executor, r *appendRequest) (*core.CommittedEvents, error) {
	_, onPool := exec.(*pgxpool.Pool)
	if !onPool {
		return s.appendAlone(ctx, exec, false, false, r)
	}
	// One lookup serves the whole append: a stream that turns hot meanwhile
	// only misses being answered early this once.
	if head, turn, hot := s.hot.lookupTurn(r.streamID); hot {
		if conflict := certainConflict(r, head); conflict != nil {
			s.hot.lost(r.streamID, head) // still raced for
			return nil, conflict
		}
		// One append to a hot stream at a time from this process: one
		// sent while another is in flight mostly waits at the server for
		// it to commit and is refused, a statement and a wakeup for nothing.
		// Waiting here instead, it learns the outcome and, once that
		// outcome took the version it expects to write, is answered
		// without the server. The wait is bounded: an append in flight can
		// itself wait on a transaction whose owner waits on this one.
		held, err := s.hot.takeTurn(ctx, turn)
		if err != nil {
			return nil, err
		}
		if held {
			defer func() { <-turn }()
			head, _ := s.hot.lookup(r.streamID)
			if conflict := certainConflict(r, head); conflict != nil {
				s.hot.lost(r.streamID, head)
				return nil, conflict
			}
		}
		return s.appendAlone(ctx, exec, true, true, r)
	}
	if s.groups != nil && len(r.events) == 1 {
		switch s.groups.admit() {
		case grouped:
			result, err := s.groups.append(ctx, r)
			r.group = result.group
			if err != nil || result.stored {
				return r.committedOrNil(result), err
			}
			if result.lost {
				return nil, &core.VersionConflictError{StreamID: r.streamID, Expected: r.expected, Actual: result.current}
			}
		case soloSlot:
			defer s.groups.doneAlone()
		}
	}
	return s.appendAlone(ctx, exec, true, false, r)
}

// appendAlone runs an append in its own statement and, after a refusal,
// learns why: a retry of stored events, an expectation that still holds
// (the append lost a race for its versions: try again), or a conflict.
// A single-event statement on a hot stream says why itself; other refusals
// are asked about in a second statement.
func (s *EventStore) appendAlone(ctx context.Context, exec executor, onPool, hot bool, r *appendRequest) (*core.CommittedEvents, error) {
	for attempt := 1; ; attempt++ {
		result, err := s.insert(ctx, exec, onPool, hot, r)
		if err != nil {
			return nil, err
		}
		if result.stored {
			if hot {
				s.hot.stored(r.streamID, result.from+int64(len(r.events))-1)
			}
			return r.committedOrNil(result), nil
		}
		why := result.why
		if why == nil {
			if why, err = s.appendRefusal(ctx, exec, r); err != nil {
				return nil, err
			}
		}
		if why.duplicateIDs {
			return s.resolveRetry(ctx, exec, r)
		}
		// Lost to another writer: a conflict, or a race for the versions
		// after an expectation that still holds. The stream is hot now.
		if onPool {
			s.hot.lost(r.streamID, why.currentVersion)
			hot = true
		}
		if r.expected.Satisfied(why.currentVersion) && attempt < maxAppendAttempts {
			continue
		}
		return nil, &core.VersionConflictError{StreamID: r.streamID, Expected: r.expected, Actual: why.currentVersion}
	}
}

// insert runs the statement for an append: single-event, a batch on the
// pool, or a batch in the caller's transaction.
func (s *EventStore) insert(ctx context.Context, exec executor, onPool, hot bool, r *appendRequest) (appendResult, error) {
	switch {
	case len(r.events) == 1:
		// On a hot stream most appends are refused: one statement both tries
		// and says why.
		return s.insertOne(ctx, exec, r, hot)
	case onPool:
		return s.insertBatchOnPool(ctx, r)
	}
	tx, ok := exec.(pgx.Tx)
	if !ok {
		return appendResult{}, fmt.Errorf("mire: append to %q: a batch runs on the pool or in a pgx.Tx, not a %T", r.streamID, exec)
	}
	return s.insertBatchInTx(ctx, tx, r)
}

// committedOrNil is what the caller gets for a stored result, nil for any
// other.
func (r *appendRequest) committedOrNil(result appendResult) *core.CommittedEvents {
	if !result.stored {
		return nil
	}
	return r.committed(result.from, result.recordedAt)
}

// isUniqueViolation reports a violation of one of the events' unique
// indexes: a stream version or an event id already stored.
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" &&
		(pgErr.ConstraintName == "events_stream_version_key" || pgErr.ConstraintName == "events_event_id_key")
}

// resolveRetry decides what a refused append whose event IDs are already
// stored was: a retry of a committed append (same stream, same content, one
// contiguous run) returns the original result; anything else is a reused ID.
func (s *EventStore) resolveRetry(ctx context.Context, exec executor, r *appendRequest) (*core.CommittedEvents, error) {
	found, err := s.findStored(ctx, exec, r)
	if err != nil {
		return nil, err
	}
	reused := func(stored *core.RecordedEvent, reason string) error {
		return &core.EventIDReusedError{EventID: stored.Metadata.EventID, StreamID: r.streamID, StoredStreamID: stored.StreamID, Reason: reason}
	}
	committed := &core.CommittedEvents{StreamID: r.streamID, Duplicate: true}
	for i, f := range found {
		switch {
		case f.event.StreamID != r.streamID:
			return nil, reused(f.event, "it belongs to another stream")
		case !f.sameContent:
			return nil, reused(f.event, "the stored event has different content")
		case i > 0 && f.event.StreamVersion != committed.ToVersion+1:
			return nil, reused(f.event, "the batch's events are not stored as one contiguous append")
		}
		if i == 0 {
			committed.FromVersion = f.event.StreamVersion
		}
		committed.ToVersion = f.event.StreamVersion
		committed.Events = append(committed.Events, *f.event)
	}
	if len(found) != len(r.events) {
		stored := &core.RecordedEvent{StreamID: r.streamID}
		if len(found) > 0 {
			stored = found[0].event
		}
		return nil, reused(stored, fmt.Sprintf("only %d of the batch's %d event ids are stored", len(found), len(r.events)))
	}
	return committed, nil
}
