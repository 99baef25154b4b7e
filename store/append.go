package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/store/internal/dbsqlc"
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
// tx's snapshot fails as [core.DbSerializationFailure] and aborts tx, as
// PostgreSQL does for any write: retry the whole transaction. Until tx ends, the appended
// versions are taken: another append of them waits for tx, then fails with a
// conflict if tx committed.
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

func (s *EventStore) append(ctx context.Context, exec dbsqlc.DBTX, streamID string, expected core.ExpectedVersion, events []core.Event) (*core.CommittedEvents, error) {
	params, recorded, err := s.prepareAppend(streamID, expected, events)
	if err != nil {
		return nil, err
	}
	_, onPool := exec.(*pgxpool.Pool)
	op := fmt.Sprintf("append to %q", streamID)
	committed := func(from int64, recordedAt time.Time) *core.CommittedEvents {
		for i := range recorded {
			recorded[i].StreamVersion = from + int64(i)
			recorded[i].RecordedAt = recordedAt
		}
		to := from + int64(len(recorded)) - 1
		return &core.CommittedEvents{StreamID: streamID, FromVersion: from, ToVersion: to, Events: recorded}
	}
	if onPool && s.groups != nil && len(events) == 1 {
		// Alone, or in a group with other callers' single-event appends;
		// a caller's transaction and a batch are their own.
		if s.groups.runAlone() {
			defer s.groups.doneAlone()
		} else {
			from, recordedAt, appended, err := s.groups.append(ctx, params)
			if err != nil {
				return nil, s.interpretError(op, err)
			}
			if appended {
				return committed(from, recordedAt), nil
			}
			// Not stored in a group: alone, below.
		}
	}
	for attempt := 1; ; attempt++ {
		from, recordedAt, appended, err := s.insertEvents(ctx, exec, params, onPool)
		if err != nil {
			return nil, s.interpretError(op, err)
		}
		if appended {
			return committed(from, recordedAt), nil
		}

		// Refused: ask why, in a new statement and so a new snapshot.
		refused, err := s.queries.EventAppendRefused(ctx, s.db(exec), &dbsqlc.EventAppendRefusedParams{
			StreamID: params.StreamID, EventIds: params.EventIds})
		if err != nil {
			return nil, s.interpretError(op, err)
		}
		if refused.DuplicateIds {
			return s.resolveRetry(ctx, exec, params)
		}
		// The expectation still holds: another writer took the versions
		// first (Any, StreamExists), or committed the version this append
		// builds on after the statement's snapshot was taken. Try again.
		if expected.Satisfied(refused.CurrentVersion) && attempt < maxAppendAttempts {
			continue
		}
		return nil, &core.VersionConflictError{StreamID: params.StreamID, Expected: expected, Actual: refused.CurrentVersion}
	}
}

// insertEvents runs the append statement that fits: one of the single-event
// statements, or a batch statement. It returns the version of the first
// event and the commit time, or appended false when the expectation failed
// or the versions or event ids were taken.
func (s *EventStore) insertEvents(ctx context.Context, exec dbsqlc.DBTX, params *dbsqlc.EventAppendParams, onPool bool) (from int64, recordedAt time.Time, appended bool, err error) {
	db := s.db(exec)
	if len(params.EventIds) == 1 {
		// The three statements return the same columns; sqlc gives each
		// its own row type.
		var row *dbsqlc.EventAppendNewRow
		switch params.ExpectedKind {
		case kindNoStream:
			row, err = s.queries.EventAppendNew(ctx, db, &dbsqlc.EventAppendNewParams{
				StreamID: params.StreamID, Category: params.Category, EventID: params.EventIds[0],
				EventType: params.EventTypes[0], Data: params.Data[0], Headers: params.Headers[0],
				CorrelationID: nonZero(params.CorrelationIds[0]), CausationID: nonZero(params.CausationIds[0]),
			})
		case kindExact:
			var exact *dbsqlc.EventAppendExactRow
			exact, err = s.queries.EventAppendExact(ctx, db, &dbsqlc.EventAppendExactParams{
				StreamID: params.StreamID, NextVersion: params.ExpectedVersion + 1, ExpectedVersion: params.ExpectedVersion,
				LockSeed: params.LockSeed, Category: params.Category, EventID: params.EventIds[0],
				EventType: params.EventTypes[0], Data: params.Data[0], Headers: params.Headers[0],
				CorrelationID: nonZero(params.CorrelationIds[0]), CausationID: nonZero(params.CausationIds[0]),
			})
			row = (*dbsqlc.EventAppendNewRow)(exact)
		default: // Any, StreamExists
			var minVersion int64
			if params.ExpectedKind == kindStreamExists {
				minVersion = 1
			}
			var next *dbsqlc.EventAppendNextRow
			next, err = s.queries.EventAppendNext(ctx, db, &dbsqlc.EventAppendNextParams{
				StreamID: params.StreamID, MinVersion: minVersion, LockSeed: params.LockSeed,
				Category: params.Category, EventID: params.EventIds[0],
				EventType: params.EventTypes[0], Data: params.Data[0], Headers: params.Headers[0],
				CorrelationID: nonZero(params.CorrelationIds[0]), CausationID: nonZero(params.CausationIds[0]),
			})
			row = (*dbsqlc.EventAppendNewRow)(next)
		}
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, time.Time{}, false, nil
		}
		if err != nil {
			return 0, time.Time{}, false, err
		}
		return row.StreamVersion, row.RecordedAt.UTC(), true, nil
	}

	if onPool {
		// Its own transaction: a conflict fails the statement, and with it
		// the whole batch.
		row, err := s.queries.EventAppendAtomic(ctx, db, (*dbsqlc.EventAppendAtomicParams)(params))
		switch {
		case isUniqueViolation(err) || (err == nil && row.Appended == 0):
			return 0, time.Time{}, false, nil
		case err != nil:
			return 0, time.Time{}, false, err
		case row.Appended != int64(len(params.EventIds)):
			return 0, time.Time{}, false, fmt.Errorf("mire: append to %q stored %d of %d events", params.StreamID, row.Appended, len(params.EventIds))
		}
		return row.FromVersion, row.RecordedAt.UTC(), true, nil
	}

	tx, ok := exec.(pgx.Tx)
	if !ok {
		return 0, time.Time{}, false, fmt.Errorf("mire: append to %q: a batch runs on the pool or in a pgx.Tx, not a %T", params.StreamID, exec)
	}
	return s.insertBatchInTx(ctx, tx, params)
}

// insertBatchInTx appends a batch in the caller's transaction, under a
// savepoint. ON CONFLICT DO NOTHING keeps a lost race from aborting the
// transaction, but can store part of a batch when a concurrent append took
// some of its versions (or it reuses stored event ids); rolling back to the
// savepoint takes that part back without DELETE, which the runtime role does
// not have.
func (s *EventStore) insertBatchInTx(ctx context.Context, tx pgx.Tx, params *dbsqlc.EventAppendParams) (from int64, recordedAt time.Time, appended bool, err error) {
	savepoint, err := tx.Begin(ctx)
	if err != nil {
		return 0, time.Time{}, false, err
	}
	defer savepoint.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit; a failed rollback fails the caller's next statement
	rows, err := s.queries.EventAppend(ctx, s.db(savepoint), params)
	if err != nil {
		return 0, time.Time{}, false, err
	}
	if len(rows) < len(params.EventIds) {
		s.logger.DebugContext(ctx, "store: took back a partial batch", "stream_id", params.StreamID,
			"stored", len(rows), "batch", len(params.EventIds))
		return 0, time.Time{}, false, savepoint.Rollback(ctx)
	}
	if err := savepoint.Commit(ctx); err != nil {
		return 0, time.Time{}, false, err
	}
	versions := make([]int64, len(rows))
	for i, row := range rows {
		versions[i] = row.StreamVersion
		recordedAt = row.RecordedAt
	}
	return slices.Min(versions), recordedAt.UTC(), true, nil
}

// The expectation kinds as core.ExpectedVersion.Kind names them.
const (
	kindNoStream     = "no_stream"
	kindExact        = "exact"
	kindStreamExists = "stream_exists"
)

func nonZero(id uuid.UUID) *uuid.UUID {
	if id == uuid.Nil {
		return nil
	}
	return &id
}

// prepareAppend validates and encodes an append. It returns the query
// parameters and the recorded events to report, still without versions.
func (s *EventStore) prepareAppend(streamID string, expected core.ExpectedVersion, events []core.Event) (*dbsqlc.EventAppendParams, []core.RecordedEvent, error) {
	if err := core.ValidateStreamID(streamID); err != nil {
		return nil, nil, err
	}
	if len(events) == 0 {
		return nil, nil, &core.InvalidInputError{Field: "events", Reason: "an append needs at least one event"}
	}
	if err := expected.Validate(len(events)); err != nil {
		return nil, nil, err
	}
	exactVersion, _ := expected.ExactVersion()
	params := &dbsqlc.EventAppendParams{
		StreamID:        streamID,
		Category:        categoryOf(streamID),
		ExpectedKind:    expected.Kind(),
		ExpectedVersion: exactVersion,
		LockSeed:        s.lockSeed,
		EventIds:        make([]uuid.UUID, len(events)),
		EventTypes:      make([]string, len(events)),
		Data:            make([][]byte, len(events)),
		Headers:         make([][]byte, len(events)),
		CorrelationIds:  make([]uuid.UUID, len(events)),
		CausationIds:    make([]uuid.UUID, len(events)),
	}
	recorded := make([]core.RecordedEvent, len(events))
	seen := make(map[uuid.UUID]struct{}, len(events))
	batchBytes := 0
	for i, event := range events {
		if event.Data == nil {
			return nil, nil, &core.InvalidInputError{Field: "event data", Reason: fmt.Sprintf("event %d has no data", i)}
		}
		eventType := event.Data.EventType()
		if err := core.ValidateEventType(eventType); err != nil {
			return nil, nil, err
		}
		data, err := s.registry.Encode(event.Data)
		if err != nil {
			return nil, nil, err
		}
		headers, err := encodeHeaders(eventType, event.Metadata.Headers)
		if err != nil {
			return nil, nil, err
		}
		size := len(data) + len(headers)
		if size > s.config.MaxEventBytes {
			return nil, nil, &core.InvalidInputError{Field: "event data", Value: eventType,
				Reason: fmt.Sprintf("encodes to %d bytes, over the limit of %d", size, s.config.MaxEventBytes)}
		}
		if batchBytes += size; batchBytes > s.config.MaxBatchBytes {
			// Stop here: encoding the rest could take as much memory again.
			return nil, nil, &core.InvalidInputError{Field: "events", Reason: fmt.Sprintf(
				"the first %d of %d events encode to %d bytes, over the batch limit of %d (Config.MaxBatchBytes)",
				i+1, len(events), batchBytes, s.config.MaxBatchBytes)}
		}
		if err := checkJSONB(event.Data, eventType, data, headers); err != nil {
			return nil, nil, err
		}

		metadata := event.Metadata
		if metadata.EventID == uuid.Nil {
			if metadata.EventID, err = uuid.NewV7(); err != nil {
				return nil, nil, fmt.Errorf("mire: generating event id: %w", err)
			}
		}
		if _, dup := seen[metadata.EventID]; dup {
			return nil, nil, &core.InvalidInputError{Field: "event id", Value: metadata.EventID.String(),
				Reason: "appears twice in one append"}
		}
		seen[metadata.EventID] = struct{}{}

		params.EventIds[i] = metadata.EventID
		params.EventTypes[i] = eventType
		params.Data[i] = data
		params.Headers[i] = headers
		params.CorrelationIds[i] = metadata.CorrelationID
		params.CausationIds[i] = metadata.CausationID
		recorded[i] = core.RecordedEvent{StreamID: streamID, EventType: eventType, Data: data, Metadata: metadata}
	}
	return params, recorded, nil
}

// categoryOf returns the category of a stream ID, the part before the first
// separator, or nil for an ID without one.
func categoryOf(streamID string) *string {
	category, _, found := strings.Cut(streamID, core.CategorySeparator)
	if !found {
		return nil
	}
	return &category
}

func encodeHeaders(eventType string, headers map[string]string) ([]byte, error) {
	if len(headers) == 0 {
		return nil, nil
	}
	// encoding/json would replace invalid UTF-8 by U+FFFD, and could so
	// merge two keys into one.
	for key, value := range headers {
		if !utf8.ValidString(key) {
			return nil, &core.InvalidInputError{Field: "event data", Value: eventType,
				Reason: fmt.Sprintf("header key %q is not valid UTF-8", key)}
		}
		if !utf8.ValidString(value) {
			return nil, &core.InvalidInputError{Field: "event data", Value: eventType,
				Reason: fmt.Sprintf("the value of header %q is not valid UTF-8", key)}
		}
	}
	encoded, err := json.Marshal(headers)
	if err != nil {
		return nil, &core.EncodeError{EventType: eventType, Err: fmt.Errorf("headers: %w", err)}
	}
	return encoded, nil
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
func (s *EventStore) resolveRetry(ctx context.Context, exec dbsqlc.DBTX, params *dbsqlc.EventAppendParams) (*core.CommittedEvents, error) {
	rows, err := s.queries.EventFindByIDs(ctx, s.db(exec), &dbsqlc.EventFindByIDsParams{
		EventIds:       params.EventIds,
		EventTypes:     params.EventTypes,
		Data:           params.Data,
		Headers:        params.Headers,
		CorrelationIds: params.CorrelationIds,
		CausationIds:   params.CausationIds,
	})
	if err != nil {
		return nil, s.interpretError(fmt.Sprintf("append to %q", params.StreamID), err)
	}
	reused := func(stored *dbsqlc.Event, reason string) error {
		return &core.EventIDReusedError{EventID: stored.EventID, StreamID: params.StreamID, StoredStreamID: stored.StreamID, Reason: reason}
	}
	committed := &core.CommittedEvents{StreamID: params.StreamID, Duplicate: true}
	for i, row := range rows {
		stored := &row.Event
		switch {
		case stored.StreamID != params.StreamID:
			return nil, reused(stored, "it belongs to another stream")
		case !row.SameContent:
			return nil, reused(stored, "the stored event has different content")
		case i > 0 && stored.StreamVersion != committed.ToVersion+1:
			return nil, reused(stored, "the batch's events are not stored as one contiguous append")
		}
		if i == 0 {
			committed.FromVersion = stored.StreamVersion
		}
		committed.ToVersion = stored.StreamVersion
		recorded, err := recordedFromRow(stored, orZero(row.GlobalPosition))
		if err != nil {
			return nil, err
		}
		committed.Events = append(committed.Events, *recorded)
	}
	if len(rows) != len(params.EventIds) {
		stored := &dbsqlc.Event{StreamID: params.StreamID}
		if len(rows) > 0 {
			stored = &rows[0].Event
		}
		return nil, reused(stored, fmt.Sprintf("only %d of the batch's %d event ids are stored", len(rows), len(params.EventIds)))
	}
	return committed, nil
}
