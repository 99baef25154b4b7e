package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/store/internal/dbsqlc"
)

// This file is the typed layer between the store's logic and the code sqlc
// generates from queries/store: the store speaks mire's types, and only
// here are generated parameters built and generated rows read. Errors come
// back from the driver as they are; callers add what they were doing.
// (The migration code in migrate*.go and schemacheck.go speaks to its
// administrative statements directly.)

// executor is where a statement runs: the pool or a caller's transaction.
type executor = dbsqlc.DBTX

// appendResult is the outcome of one append statement: stored, or refused
// (expectation not met, versions or event ids taken).
type appendResult struct {
	stored     bool
	from       int64 // the stream version of the first event
	recordedAt time.Time

	// lost: not stored, and certainly a conflict, the stream being at
	// least at version current (see appendGroups.run).
	lost    bool
	current int64

	// group: the appends in the group commit that stored it (0: alone).
	group int16

	// why: why the statement stored nothing, when it says (the single-event
	// statements for hot streams do).
	why *refusal
}

// appended reads a plain single-event statement's row: no row is a
// refusal, which the store asks about afterwards.
func appended(version int64, recordedAt time.Time, err error) (appendResult, error) {
	if errors.Is(err, pgx.ErrNoRows) {
		return appendResult{}, nil
	}
	if err != nil {
		return appendResult{}, err
	}
	return appendResult{stored: true, from: version, recordedAt: recordedAt.UTC()}, nil
}

// explained reads the row of an explaining single-event statement (for a
// hot stream): the stored version, or why it stored nothing (see refusal).
func explained(version *int64, recordedAt *time.Time, current int64, duplicateIDs bool) appendResult {
	if version != nil && recordedAt != nil {
		return appendResult{stored: true, from: *version, recordedAt: recordedAt.UTC()}
	}
	return appendResult{why: &refusal{currentVersion: current, duplicateIDs: duplicateIDs}}
}

// expectedKind is an expectation as the batch and group statements take it.
func expectedKind(e core.ExpectedVersion) string {
	switch {
	case e.IsNoStream():
		return "no_stream"
	case e.IsStreamExists():
		return "stream_exists"
	case e.IsAny():
		return "any"
	}
	return "exact"
}

// nullableID is an optional id as a statement takes it: NULL for uuid.Nil.
func nullableID(id uuid.UUID) *[16]byte {
	if id == uuid.Nil {
		return nil
	}
	b := [16]byte(id)
	return &b
}

// batchColumns are a request's events as the batch statements take them,
// one array per column (the statements map the all-zero uuid to NULL).
type batchColumns struct {
	ids, correlationIDs, causationIDs [][16]byte
	types                             []string
	data, headers                     [][]byte
}

func columnsOf(events []encodedEvent) batchColumns {
	c := batchColumns{
		ids:            make([][16]byte, len(events)),
		correlationIDs: make([][16]byte, len(events)),
		causationIDs:   make([][16]byte, len(events)),
		types:          make([]string, len(events)),
		data:           make([][]byte, len(events)),
		headers:        make([][]byte, len(events)),
	}
	for i, e := range events {
		c.ids[i], c.correlationIDs[i], c.causationIDs[i] = e.id, e.correlationID, e.causationID // uuid.UUID is a [16]byte
		c.types[i], c.data[i], c.headers[i] = e.eventType, e.data, e.headers
	}
	return c
}

// insertOne stores a single-event request with the statement for its
// expectation.
func (s *EventStore) insertOne(ctx context.Context, exec executor, r *appendRequest, explain bool) (appendResult, error) {
	db, e := s.db(exec), r.events[0]
	exact, isExact := r.expected.ExactVersion()
	switch {
	case r.expected.IsNoStream():
		row, err := s.queries.EventAppendNew(ctx, db, &dbsqlc.EventAppendNewParams{
			StreamID: r.streamID, Category: r.category, EventID: e.id, EventType: e.eventType,
			Data: e.data, Headers: e.headers,
			CorrelationID: nullableID(e.correlationID), CausationID: nullableID(e.causationID),
		})
		if err != nil {
			return appended(0, time.Time{}, err)
		}
		return appended(row.StreamVersion, row.RecordedAt, nil)
	case isExact && explain:
		row, err := s.queries.EventAppendExactExplained(ctx, db, &dbsqlc.EventAppendExactExplainedParams{
			StreamID: r.streamID, NextVersion: exact + 1, ExpectedVersion: exact, LockSeed: s.lockSeed,
			Category: r.category, EventID: e.id, EventType: e.eventType, Data: e.data, Headers: e.headers,
			CorrelationID: nullableID(e.correlationID), CausationID: nullableID(e.causationID),
		})
		if err != nil {
			return appendResult{}, err
		}
		return explained(row.StreamVersion, row.RecordedAt, row.CurrentVersion, row.DuplicateIds), nil
	case isExact:
		row, err := s.queries.EventAppendExact(ctx, db, &dbsqlc.EventAppendExactParams{
			StreamID: r.streamID, NextVersion: exact + 1, ExpectedVersion: exact, LockSeed: s.lockSeed,
			Category: r.category, EventID: e.id, EventType: e.eventType, Data: e.data, Headers: e.headers,
			CorrelationID: nullableID(e.correlationID), CausationID: nullableID(e.causationID),
		})
		if err != nil {
			return appended(0, time.Time{}, err)
		}
		return appended(row.StreamVersion, row.RecordedAt, nil)
	}
	// Any, StreamExists
	var minVersion int64
	if r.expected.IsStreamExists() {
		minVersion = 1
	}
	if explain {
		row, err := s.queries.EventAppendNextExplained(ctx, db, &dbsqlc.EventAppendNextExplainedParams{
			StreamID: r.streamID, MinVersion: minVersion, LockSeed: s.lockSeed,
			Category: r.category, EventID: e.id, EventType: e.eventType, Data: e.data, Headers: e.headers,
			CorrelationID: nullableID(e.correlationID), CausationID: nullableID(e.causationID),
		})
		if err != nil {
			return appendResult{}, err
		}
		return explained(row.StreamVersion, row.RecordedAt, row.CurrentVersion, row.DuplicateIds), nil
	}
	row, err := s.queries.EventAppendNext(ctx, db, &dbsqlc.EventAppendNextParams{
		StreamID: r.streamID, MinVersion: minVersion, LockSeed: s.lockSeed,
		Category: r.category, EventID: e.id, EventType: e.eventType, Data: e.data, Headers: e.headers,
		CorrelationID: nullableID(e.correlationID), CausationID: nullableID(e.causationID),
	})
	if err != nil {
		return appended(0, time.Time{}, err)
	}
	return appended(row.StreamVersion, row.RecordedAt, nil)
}

// insertBatchOnPool stores a batch in a transaction of its own, with a
// statement that fails whole on a conflict: nothing of it stays.
func (s *EventStore) insertBatchOnPool(ctx context.Context, r *appendRequest) (appendResult, error) {
	c := columnsOf(r.events)
	exact, _ := r.expected.ExactVersion()
	row, err := s.queries.EventAppendAtomic(ctx, s.db(s.pool), &dbsqlc.EventAppendAtomicParams{
		StreamID: r.streamID, Category: r.category, ExpectedKind: expectedKind(r.expected), ExpectedVersion: exact,
		LockSeed: s.lockSeed, EventIds: c.ids, EventTypes: c.types, Data: c.data, Headers: c.headers,
		CorrelationIds: c.correlationIDs, CausationIds: c.causationIDs,
	})
	switch {
	case isUniqueViolation(err) || (err == nil && row.Appended == 0):
		return appendResult{}, nil
	case err != nil:
		return appendResult{}, err
	case row.Appended != int64(len(r.events)):
		return appendResult{}, fmt.Errorf("mire: append to %q stored %d of %d events", r.streamID, row.Appended, len(r.events))
	}
	return appendResult{stored: true, from: row.FromVersion, recordedAt: row.RecordedAt.UTC()}, nil
}

// insertBatchInTx stores a batch in the caller's transaction, under a
// savepoint. ON CONFLICT DO NOTHING keeps a lost race from aborting the
// transaction, but can store part of a batch when a concurrent append took
// some of its versions (or it reuses stored event ids); rolling back to the
// savepoint takes that part back without DELETE, which the runtime role does
// not have.
func (s *EventStore) insertBatchInTx(ctx context.Context, tx pgx.Tx, r *appendRequest) (appendResult, error) {
	savepoint, err := tx.Begin(ctx)
	if err != nil {
		return appendResult{}, err
	}
	defer savepoint.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit; a failed rollback fails the caller's next statement
	c := columnsOf(r.events)
	exact, _ := r.expected.ExactVersion()
	rows, err := s.queries.EventAppend(ctx, s.db(savepoint), &dbsqlc.EventAppendParams{
		StreamID: r.streamID, Category: r.category, ExpectedKind: expectedKind(r.expected), ExpectedVersion: exact,
		LockSeed: s.lockSeed, EventIds: c.ids, EventTypes: c.types, Data: c.data, Headers: c.headers,
		CorrelationIds: c.correlationIDs, CausationIds: c.causationIDs,
	})
	if err != nil {
		return appendResult{}, err
	}
	if len(rows) < len(r.events) {
		s.logger.DebugContext(ctx, "store: took back a partial batch", "stream_id", r.streamID,
			"stored", len(rows), "batch", len(r.events))
		return appendResult{}, savepoint.Rollback(ctx)
	}
	if err := savepoint.Commit(ctx); err != nil {
		return appendResult{}, err
	}
	result := appendResult{stored: true, from: rows[0].StreamVersion}
	for _, row := range rows {
		result.from = min(result.from, row.StreamVersion)
		result.recordedAt = row.RecordedAt.UTC()
	}
	return result, nil
}

// insertGroup stores single-event requests of different callers in one
// statement (see EventAppendGroup) and returns the outcome of those it
// stored, by event id. Event ids must be distinct.
func (s *EventStore) insertGroup(ctx context.Context, group []*appendRequest) (map[uuid.UUID]appendResult, error) {
	params := &dbsqlc.EventAppendGroupParams{
		LockTimeout:      groupLockTimeout,
		LockSeed:         s.lockSeed,
		StreamIds:        make([]string, len(group)),
		ExpectedKinds:    make([]string, len(group)),
		ExpectedVersions: make([]int64, len(group)),
	}
	events := make([]encodedEvent, len(group))
	for i, r := range group {
		params.StreamIds[i] = r.streamID
		params.ExpectedKinds[i] = expectedKind(r.expected)
		params.ExpectedVersions[i], _ = r.expected.ExactVersion()
		events[i] = r.events[0]
	}
	c := columnsOf(events)
	params.EventIds, params.EventTypes, params.Data, params.Headers = c.ids, c.types, c.data, c.headers
	params.CorrelationIds, params.CausationIds = c.correlationIDs, c.causationIDs
	rows, err := s.queries.EventAppendGroup(ctx, s.db(s.pool), params)
	if err != nil {
		return nil, err
	}
	results := make(map[uuid.UUID]appendResult, len(rows))
	for _, row := range rows {
		results[uuid.UUID(row.EventID)] = appendResult{stored: true, from: row.StreamVersion, recordedAt: row.RecordedAt.UTC()}
	}
	return results, nil
}

// refusal says why an append wrote nothing, as of a snapshot taken after
// the refused insert (so after any append it waited for had committed): the
// stream's version then, and whether any of its event ids is stored.
type refusal struct {
	currentVersion int64
	duplicateIDs   bool
}

func (s *EventStore) appendRefusal(ctx context.Context, exec executor, r *appendRequest) (*refusal, error) {
	row, err := s.queries.EventAppendRefused(ctx, s.db(exec), &dbsqlc.EventAppendRefusedParams{
		StreamID: r.streamID, EventIds: columnsOf(r.events).ids})
	if err != nil {
		return nil, err
	}
	return &refusal{currentVersion: row.CurrentVersion, duplicateIDs: row.DuplicateIds}, nil
}

// storedEvent is an event found stored by its id, and whether it has the
// content of the request's event with that id.
type storedEvent struct {
	event       *core.RecordedEvent
	sameContent bool
}

// findStored returns the stored events among a request's event ids, in the
// request's order.
//
// Trace headers are no part of the content compared: see
// core.TraceParentHeader.
func (s *EventStore) findStored(ctx context.Context, exec executor, r *appendRequest) ([]storedEvent, error) {
	c := columnsOf(r.events)
	rows, err := s.queries.EventFindByIDs(ctx, s.db(exec), &dbsqlc.EventFindByIDsParams{
		EventIds: c.ids, EventTypes: c.types, Data: c.data, Headers: c.headers,
		CorrelationIds: c.correlationIDs, CausationIds: c.causationIDs, TraceHeaders: traceHeaders,
	})
	if err != nil {
		return nil, err
	}
	found := make([]storedEvent, len(rows))
	for i, row := range rows {
		stored := sequenced(&row.PositionedEvent)
		event, err := recordedEvent(&stored.event, stored.position, nil)
		if err != nil {
			return nil, err
		}
		found[i] = storedEvent{event: event, sameContent: row.SameContent}
	}
	return found, nil
}

// readPage is one page of a read: the events of pageRequest's statement
// from p.from on (or down), in order.
type pageRequest struct {
	query    core.StreamQuery // which events, in which direction
	from     int64            // version or position, inclusive
	types    []string         // stored event types to keep; none: all
	maxCount int32
}

// readStatement runs one of the read statements and returns its rows as
// stored events with their positions (0: none yet), decoding repeated
// header strings once through seen.
type readStatement func(ctx context.Context, q *dbsqlc.Queries, db dbsqlc.DBTX, p pageRequest, seen *stringTable) ([]*core.RecordedEvent, error)

type positionedRow struct {
	event    dbsqlc.Event
	position int64
}

type readKey struct {
	scope   readScope
	forward bool
}

type readScope uint8

const (
	readStream readScope = iota
	readCategory
	readAll
)

// readStatements holds the six read statements: a stream, a category or
// the whole log, forward or backward.
var readStatements = map[readKey]readStatement{
	{readStream, true}:  readStreamPage,
	{readStream, false}: readStreamPage,
	{readCategory, true}: func(ctx context.Context, q *dbsqlc.Queries, db dbsqlc.DBTX, p pageRequest, seen *stringTable) ([]*core.RecordedEvent, error) {
		rows, err := q.EventReadCategoryForward(ctx, db, &dbsqlc.EventReadCategoryForwardParams{
			Category: p.query.NormalizedCategory(), FromPosition: p.from, EventTypes: p.types, MaxEvents: p.maxCount,
			PartitionCount: partitionCount(p.query), PartitionIndex: partitionIndex(p.query)})
		return recordedEvents(rows, err, seen, sequenced)
	},
	{readCategory, false}: func(ctx context.Context, q *dbsqlc.Queries, db dbsqlc.DBTX, p pageRequest, seen *stringTable) ([]*core.RecordedEvent, error) {
		rows, err := q.EventReadCategoryBackward(ctx, db, &dbsqlc.EventReadCategoryBackwardParams{
			Category: p.query.NormalizedCategory(), FromPosition: p.from, EventTypes: p.types, MaxEvents: p.maxCount,
			PartitionCount: partitionCount(p.query), PartitionIndex: partitionIndex(p.query)})
		return recordedEvents(rows, err, seen, sequenced)
	},
	{readAll, true}: func(ctx context.Context, q *dbsqlc.Queries, db dbsqlc.DBTX, p pageRequest, seen *stringTable) ([]*core.RecordedEvent, error) {
		rows, err := q.EventReadAllForward(ctx, db, &dbsqlc.EventReadAllForwardParams{
			FromPosition: p.from, EventTypes: p.types, MaxEvents: p.maxCount,
			PartitionCount: partitionCount(p.query), PartitionIndex: partitionIndex(p.query)})
		return recordedEvents(rows, err, seen, sequenced)
	},
	{readAll, false}: func(ctx context.Context, q *dbsqlc.Queries, db dbsqlc.DBTX, p pageRequest, seen *stringTable) ([]*core.RecordedEvent, error) {
		rows, err := q.EventReadAllBackward(ctx, db, &dbsqlc.EventReadAllBackwardParams{
			FromPosition: p.from, EventTypes: p.types, MaxEvents: p.maxCount,
			PartitionCount: partitionCount(p.query), PartitionIndex: partitionIndex(p.query)})
		return recordedEvents(rows, err, seen, sequenced)
	},
}

// readStreamPage reads a page of a stream, either way. Without a type
// filter it reads the page's range of versions alone; only when that range
// lacks versions (deleted under mire) does it read the page again with the
// statement that reads on past the range, as a filtered page always does.
func readStreamPage(ctx context.Context, q *dbsqlc.Queries, db dbsqlc.DBTX, p pageRequest, seen *stringTable) ([]*core.RecordedEvent, error) {
	forward, stream := p.query.Direction == core.Forward, p.query.StreamID
	if len(p.types) == 0 {
		var rows streamRows
		var err error
		if forward {
			rows, err = streamRowsOf(q.EventReadStreamRangeForward(ctx, db, &dbsqlc.EventReadStreamRangeForwardParams{
				StreamID: stream, FromVersion: p.from, MaxEvents: p.maxCount}))
		} else {
			rows, err = streamRowsOf(q.EventReadStreamRangeBackward(ctx, db, &dbsqlc.EventReadStreamRangeBackwardParams{
				StreamID: stream, FromVersion: p.from, MaxEvents: p.maxCount}))
		}
		if err != nil {
			return nil, err
		}
		page, head, err := streamPage(stream, forward, rows.n, rows.row, seen)
		// The versions the range holds, by the stream's last version (head):
		// from..head forward, 1..min(from, head) backward.
		inRange := head - p.from + 1
		if !forward {
			inRange = min(p.from, head)
		}
		if err != nil || int64(len(page)) == min(max(inRange, 0), int64(p.maxCount)) {
			return page, err
		}
	}
	var rows streamRows
	var err error
	if forward {
		rows, err = streamRowsOf(q.EventReadStreamForward(ctx, db, &dbsqlc.EventReadStreamForwardParams{
			StreamID: stream, FromVersion: p.from, EventTypes: p.types, MaxEvents: p.maxCount}))
	} else {
		rows, err = streamRowsOf(q.EventReadStreamBackward(ctx, db, &dbsqlc.EventReadStreamBackwardParams{
			StreamID: stream, FromVersion: p.from, EventTypes: p.types, MaxEvents: p.maxCount}))
	}
	if err != nil {
		return nil, err
	}
	page, _, err := streamPage(stream, forward, rows.n, rows.row, seen)
	return page, err
}

// streamRow is a row of any of the four stream statements, which return the
// same columns.
type streamRow interface {
	dbsqlc.EventReadStreamForwardRow | dbsqlc.EventReadStreamBackwardRow |
		dbsqlc.EventReadStreamRangeForwardRow | dbsqlc.EventReadStreamRangeBackwardRow
}

// streamRows are a stream statement's n rows as EventReadStreamForward's:
// row(i) copies row i into one row it reuses, so a page costs no copy of
// its rows (the pointer is good until the next call).
type streamRows struct {
	n   int
	row func(i int) *dbsqlc.EventReadStreamForwardRow
}

func streamRowsOf[R streamRow](rows []*R, err error) (streamRows, error) {
	var current dbsqlc.EventReadStreamForwardRow
	return streamRows{n: len(rows), row: func(i int) *dbsqlc.EventReadStreamForwardRow {
		current = dbsqlc.EventReadStreamForwardRow(*rows[i])
		return &current
	}}, err
}

// partitionCount and partitionIndex are a query's partition as the read
// statements take it. Validate bounds both by core.StreamBuckets.
func partitionCount(q core.StreamQuery) int32 { return int32(min(q.Partitions, core.StreamBuckets)) }

func partitionIndex(q core.StreamQuery) int32 { return int32(min(q.Partition, core.StreamBuckets)) }

// sequenced is a row of positioned_events: of a whole-log or category page,
// or an event found stored by its id.
func sequenced(r *dbsqlc.PositionedEvent) positionedRow {
	return positionedRow{event: dbsqlc.Event{
		Seq: r.Seq, StreamID: r.StreamID, StreamVersion: r.StreamVersion, Category: r.Category,
		EventID: r.EventID, EventType: r.EventType, Data: r.Data, Headers: r.Headers,
		CorrelationID: r.CorrelationID, CausationID: r.CausationID, RecordedAt: r.RecordedAt, Xid: r.Xid,
	}, position: r.GlobalPosition}
}

func recordedEvents[R any](rows []*R, err error, seen *stringTable, positioned func(*R) positionedRow) ([]*core.RecordedEvent, error) {
	if err != nil {
		return nil, err
	}
	out := make([]*core.RecordedEvent, len(rows))
	for i, r := range rows {
		row := positioned(r)
		if out[i], err = recordedEvent(&row.event, row.position, seen); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readPage returns one page of a read, as stored (not upcast).
func (s *EventStore) readPage(ctx context.Context, exec executor, p pageRequest) ([]*core.RecordedEvent, error) {
	key := readKey{scope: readAll, forward: p.query.Direction == core.Forward}
	switch {
	case p.query.IsStream():
		key.scope = readStream
	case p.query.Category != "":
		key.scope = readCategory
	}
	var seen stringTable
	return readStatements[key](ctx, s.queries, s.db(exec), p, &seen)
}

// recordedEvent converts a stored row and its global position (0 for none
// yet); times are returned in UTC. seen may be nil (see decodeHeaders).
func recordedEvent(row *dbsqlc.Event, position int64, seen *stringTable) (*core.RecordedEvent, error) {
	recorded := &core.RecordedEvent{
		StreamID:       row.StreamID,
		StreamVersion:  row.StreamVersion,
		GlobalPosition: position,
		EventType:      row.EventType,
		Data:           json.RawMessage(row.Data),
		RecordedAt:     row.RecordedAt.UTC(),
		Metadata:       core.EventMetadata{EventID: uuid.UUID(row.EventID)},
	}
	if row.CorrelationID != nil {
		recorded.Metadata.CorrelationID = uuid.UUID(*row.CorrelationID)
	}
	if row.CausationID != nil {
		recorded.Metadata.CausationID = uuid.UUID(*row.CausationID)
	}
	if len(row.Headers) > 0 {
		// Append encodes headers from a map[string]string; a row written by
		// other tooling may not fit.
		headers, err := decodeHeaders(row.Headers, seen)
		if err != nil {
			return nil, &core.DecodeError{StreamID: row.StreamID, StreamVersion: row.StreamVersion,
				GlobalPosition: recorded.GlobalPosition, EventType: row.EventType, Err: fmt.Errorf("headers: %w", err)}
		}
		recorded.Metadata.Headers = headers
	}
	return recorded, nil
}

// streamPage is the page of a stream read's rows: its events, in the
// read's order, each placed in the log by the runs that came with them
// (see EventReadStreamForward), and the stream's last version if a row
// said it (EventReadStreamRangeForward), else -1. The zero id stands for
// none. The statements leave the stream's id out, which every row would
// repeat (streams are matched exactly, so it is the one asked for).
func streamPage(stream string, forward bool, n int, row func(i int) *dbsqlc.EventReadStreamForwardRow, seen *stringTable) (page []*core.RecordedEvent, head int64, err error) {
	var runs []logRun
	head = -1
	events := 0
	for i := range n {
		switch r := row(i); {
		case r.RunEvents > 0:
			runs = append(runs, logRun{firstVersion: r.StreamVersion, position: r.GlobalPosition, events: int64(r.RunEvents)})
		case r.RunEvents < 0:
			head = r.StreamVersion
		default:
			events++
		}
	}
	slices.SortFunc(runs, func(a, b logRun) int { return cmp.Compare(a.firstVersion, b.firstVersion) })
	page = make([]*core.RecordedEvent, 0, events)
	for i := range n {
		r := row(i)
		if r.RunEvents != 0 {
			continue
		}
		position := r.GlobalPosition
		if position == 0 {
			position = placeInRuns(runs, r.StreamVersion)
		}
		event, err := recordedEvent(&dbsqlc.Event{StreamID: stream, StreamVersion: r.StreamVersion, EventID: r.EventID,
			EventType: r.EventType, Data: r.Data, Headers: r.Headers, CorrelationID: nonZeroID(&r.CorrelationID),
			CausationID: nonZeroID(&r.CausationID), RecordedAt: r.RecordedAt}, position, seen)
		if err != nil {
			return nil, head, err
		}
		page = append(page, event)
	}
	// SQL orders the events among themselves but not against the other
	// rows: PostgreSQL returns the branches of a UNION ALL one after the
	// other, which nothing promises.
	byVersion := func(a, b *core.RecordedEvent) int { return cmp.Compare(a.StreamVersion, b.StreamVersion) }
	if !forward {
		byVersion = func(a, b *core.RecordedEvent) int { return cmp.Compare(b.StreamVersion, a.StreamVersion) }
	}
	if !slices.IsSortedFunc(page, byVersion) {
		slices.SortFunc(page, byVersion)
	}
	return page, head, nil
}

// logRun is an event_log row of one stream: events firstVersion to
// firstVersion+events-1, at consecutive positions from position.
type logRun struct {
	firstVersion, position, events int64
}

// placeInRuns returns the position of a stream's version from the stream's
// runs in order of version, 0 when none holds it (not numbered yet). A
// stream's runs never overlap: the version's run is the last one starting
// at or before it, if the version is in it.
func placeInRuns(runs []logRun, version int64) int64 {
	i, found := slices.BinarySearchFunc(runs, version, func(r logRun, v int64) int { return cmp.Compare(r.firstVersion, v) })
	if !found {
		i--
	}
	if i < 0 || version >= runs[i].firstVersion+runs[i].events {
		return 0
	}
	return runs[i].position + version - runs[i].firstVersion
}

// nonZeroID is id, or nil for the zero id, which stands for none.
func nonZeroID(id *[16]byte) *[16]byte {
	if *id == [16]byte{} {
		return nil
	}
	return id
}

// loadedEvent is what replaying an aggregate needs of a stored event.
type loadedEvent struct {
	version   int64
	eventType string
	data      []byte
}

// loadPage returns up to maxCount of a stream's events with versions from
// from to to, and the stream's version as of the same statement (0 when the
// page is empty: unknown).
func (s *EventStore) loadPage(ctx context.Context, exec executor, streamID string, from, to int64, maxCount int32) (head int64, events []loadedEvent, err error) {
	rows, err := s.queries.EventLoadStream(ctx, s.db(exec), &dbsqlc.EventLoadStreamParams{
		StreamID: streamID, FromVersion: from, ToVersion: to, MaxEvents: maxCount})
	if err != nil {
		return 0, nil, err
	}
	events = make([]loadedEvent, len(rows))
	for i, row := range rows {
		head = row.StreamHead
		events[i] = loadedEvent{version: row.StreamVersion, eventType: row.EventType, data: row.Data}
	}
	return head, events, nil
}

func (s *EventStore) streamVersion(ctx context.Context, exec executor, streamID string) (int64, error) {
	return s.queries.StreamVersion(ctx, s.db(exec), streamID)
}

// lockStream takes a stream's lock for the rest of tx and returns its
// version once held.
func (s *EventStore) lockStream(ctx context.Context, tx executor, streamID string) (int64, error) {
	return s.queries.StreamLock(ctx, s.db(tx), &dbsqlc.StreamLockParams{StreamID: streamID, LockSeed: s.lockSeed})
}

// storedSnapshot is a stream's latest snapshot.
type storedSnapshot struct {
	version       int64
	schemaVersion int
	state         []byte
}

// loadSnapshot returns a stream's snapshot, and false when it has none.
func (s *EventStore) loadSnapshot(ctx context.Context, exec executor, streamID string) (storedSnapshot, bool, error) {
	row, err := s.queries.SnapshotGet(ctx, s.db(exec), streamID)
	if errors.Is(err, pgx.ErrNoRows) {
		return storedSnapshot{}, false, nil
	}
	if err != nil {
		return storedSnapshot{}, false, err
	}
	return storedSnapshot{version: row.StreamVersion, schemaVersion: int(row.SchemaVersion), state: row.State}, true, nil
}

func (s *EventStore) storeSnapshot(ctx context.Context, exec executor, streamID string, snapshot storedSnapshot) error {
	return s.queries.SnapshotSave(ctx, s.db(exec), &dbsqlc.SnapshotSaveParams{
		StreamID: streamID, StreamVersion: snapshot.version,
		SchemaVersion: int32(snapshot.schemaVersion), State: snapshot.state,
	})
}

// setLockTimeout bounds the rest of tx's waits for a lock.
func (s *EventStore) setLockTimeout(ctx context.Context, tx executor, timeout time.Duration) error {
	return s.queries.TxSetLockTimeout(ctx, s.db(tx), fmt.Sprintf("%dms", timeout.Milliseconds()))
}

// sequence runs a sweep of the sequencer (sequence_events) on the pool, and
// reports whether the statistics are due a refresh (statistics_stale).
func (s *EventStore) sequence(ctx context.Context) (*dbsqlc.EventSequenceRow, error) {
	return s.queries.EventSequence(ctx, s.db(s.pool))
}

// refreshStatistics runs refresh_statistics on the pool and reports whether
// it analyzed the tables.
func (s *EventStore) refreshStatistics(ctx context.Context) (bool, error) {
	return s.queries.StatisticsRefresh(ctx, s.db(s.pool))
}

// head is the log's highest position, 0 for an empty log.
func (s *EventStore) head(ctx context.Context) (int64, error) {
	return s.queries.EventHead(ctx, s.db(s.pool))
}

func (s *EventStore) grantRuntime(ctx context.Context, role string) error {
	return s.queries.RuntimeGrant(ctx, s.db(s.pool), role)
}

func (s *EventStore) revokeRuntime(ctx context.Context, role string) error {
	return s.queries.RuntimeRevoke(ctx, s.db(s.pool), role)
}
