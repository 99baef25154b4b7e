package store

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"math"

	"github.com/jackc/pgx/v5"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/store/internal/dbsqlc"
)

// Read returns the events q selects, streaming them a page at a time
// (Config.ReadPageSize per round trip) so that a read of any size runs in
// constant memory; no connection is held between pages. Upcasters registered
// in the store's registry are applied to every event.
//
// Category and whole-log reads include only sequenced events, and first
// sequence newly committed ones unless Config.NoSequenceOnRead is set. An
// error ends the sequence; it is yielded with a nil event.
func (s *EventStore) Read(ctx context.Context, q core.StreamQuery) iter.Seq2[*core.RecordedEvent, error] {
	return s.read(ctx, s.pool, q, !s.config.NoSequenceOnRead)
}

// ReadTx is [EventStore.Read] inside the caller's transaction, seeing what
// it sees. It never sequences: that would hold the sequencer's lock until tx
// ends.
func (s *EventStore) ReadTx(ctx context.Context, tx pgx.Tx, q core.StreamQuery) iter.Seq2[*core.RecordedEvent, error] {
	return s.read(ctx, tx, q, false)
}

// ReadEvents collects what [EventStore.Read] yields. Set q.Limit for reads
// that may be large.
func (s *EventStore) ReadEvents(ctx context.Context, q core.StreamQuery) ([]*core.RecordedEvent, error) {
	var events []*core.RecordedEvent
	for event, err := range s.Read(ctx, q) {
		if err != nil {
			return nil, err
		}
		events = append(events, event)
	}
	return events, nil
}

func (s *EventStore) read(ctx context.Context, exec dbsqlc.DBTX, q core.StreamQuery, sequence bool) iter.Seq2[*core.RecordedEvent, error] {
	return func(yield func(*core.RecordedEvent, error) bool) {
		if err := q.Validate(); err != nil {
			yield(nil, err)
			return
		}
		if sequence && !q.IsStream() {
			if _, err := s.Sequence(ctx); err != nil {
				yield(nil, err)
				return
			}
		}
		page := newPager(s, q)
		for {
			rows, err := page.next(ctx, s.db(exec))
			if err != nil {
				yield(nil, s.interpretError("read", err))
				return
			}
			for _, row := range rows {
				recorded, err := recordedFromRow(row.event, row.position)
				if err == nil {
					recorded, err = s.registry.Upcast(recorded)
				}
				if err != nil {
					yield(nil, err)
					return
				}
				if !yield(recorded, nil) {
					return
				}
			}
			if page.exhausted {
				return
			}
		}
	}
}

// pager walks a query with keyset pagination: each page starts after the
// last event of the previous one.
type pager struct {
	store     *EventStore
	query     core.StreamQuery
	types     []string
	from      int64 // next version or position, inclusive
	remaining int   // events still wanted; -1 for no limit
	pageSize  int32
	exhausted bool
}

func newPager(s *EventStore, q core.StreamQuery) *pager {
	p := &pager{store: s, query: q, remaining: -1, pageSize: s.pageSize()}
	if q.Limit > 0 {
		p.remaining = q.Limit
	}
	p.from = q.FromPosition
	if q.IsStream() {
		p.from = q.FromVersion
	}
	if q.Direction == core.Backward && p.from == 0 {
		p.from = math.MaxInt64
	}
	// Events stored under a type's former names are upcast into it, so a
	// filter on the type must match them too.
	for _, t := range q.EventTypes {
		p.types = append(p.types, s.registry.StoredTypes(t)...)
	}
	return p
}

func (p *pager) limit() int32 {
	if p.remaining >= 0 && p.remaining < int(p.pageSize) {
		return int32(p.remaining)
	}
	return p.pageSize
}

// pageSize is Config.ReadPageSize as the queries take it. New bounds it;
// the clamp keeps a conversion that wrapped around from ever reaching them.
func (s *EventStore) pageSize() int32 {
	return int32(min(max(s.config.ReadPageSize, 1), MaxReadPageSize))
}

// positioned is a stored event with its global position, 0 if it has none
// yet.
type positioned struct {
	event    *dbsqlc.Event
	position int64
}

func (p *pager) next(ctx context.Context, db dbsqlc.DBTX) ([]positioned, error) {
	q, limit := p.store.queries, p.limit()
	forward := p.query.Direction == core.Forward
	var rows []positioned
	switch {
	case p.query.IsStream() && forward:
		page, err := q.EventReadStreamForward(ctx, db, &dbsqlc.EventReadStreamForwardParams{
			StreamID: p.query.StreamID, FromVersion: p.from, EventTypes: p.types, MaxEvents: limit})
		if err != nil {
			return nil, err
		}
		rows = eventsOf(page, func(r *dbsqlc.EventReadStreamForwardRow) positioned {
			return positioned{&r.Event, orZero(r.GlobalPosition)}
		})
	case p.query.IsStream():
		page, err := q.EventReadStreamBackward(ctx, db, &dbsqlc.EventReadStreamBackwardParams{
			StreamID: p.query.StreamID, FromVersion: p.from, EventTypes: p.types, MaxEvents: limit})
		if err != nil {
			return nil, err
		}
		rows = eventsOf(page, func(r *dbsqlc.EventReadStreamBackwardRow) positioned {
			return positioned{&r.Event, orZero(r.GlobalPosition)}
		})
	case p.query.Category != "" && forward:
		page, err := q.EventReadCategoryForward(ctx, db, &dbsqlc.EventReadCategoryForwardParams{
			Category: p.query.NormalizedCategory(), FromPosition: p.from, EventTypes: p.types, MaxEvents: limit})
		if err != nil {
			return nil, err
		}
		rows = eventsOf(page, func(r *dbsqlc.EventReadCategoryForwardRow) positioned { return positioned{&r.Event, r.GlobalPosition} })
	case p.query.Category != "":
		page, err := q.EventReadCategoryBackward(ctx, db, &dbsqlc.EventReadCategoryBackwardParams{
			Category: p.query.NormalizedCategory(), FromPosition: p.from, EventTypes: p.types, MaxEvents: limit})
		if err != nil {
			return nil, err
		}
		rows = eventsOf(page, func(r *dbsqlc.EventReadCategoryBackwardRow) positioned { return positioned{&r.Event, r.GlobalPosition} })
	case forward:
		page, err := q.EventReadAllForward(ctx, db, &dbsqlc.EventReadAllForwardParams{
			FromPosition: p.from, EventTypes: p.types, MaxEvents: limit})
		if err != nil {
			return nil, err
		}
		rows = eventsOf(page, func(r *dbsqlc.EventReadAllForwardRow) positioned { return positioned{&r.Event, r.GlobalPosition} })
	default:
		page, err := q.EventReadAllBackward(ctx, db, &dbsqlc.EventReadAllBackwardParams{
			FromPosition: p.from, EventTypes: p.types, MaxEvents: limit})
		if err != nil {
			return nil, err
		}
		rows = eventsOf(page, func(r *dbsqlc.EventReadAllBackwardRow) positioned { return positioned{&r.Event, r.GlobalPosition} })
	}
	if n := len(rows); n > 0 {
		last := rows[n-1]
		key := last.event.StreamVersion
		if !p.query.IsStream() {
			key = last.position
		}
		if forward {
			p.from = key + 1
		} else {
			p.from = key - 1
		}
	}
	if p.remaining >= 0 {
		p.remaining -= len(rows)
	}
	p.exhausted = len(rows) < int(limit) || p.remaining == 0 || (!forward && p.from < 1)
	return rows, nil
}

func eventsOf[R any](page []*R, event func(*R) positioned) []positioned {
	rows := make([]positioned, len(page))
	for i, r := range page {
		rows[i] = event(r)
	}
	return rows
}

func orZero(position *int64) int64 {
	if position == nil {
		return 0
	}
	return *position
}

// recordedFromRow converts a stored row and its global position (0 for none
// yet); times are returned in UTC.
func recordedFromRow(row *dbsqlc.Event, position int64) (*core.RecordedEvent, error) {
	recorded := &core.RecordedEvent{
		StreamID:       row.StreamID,
		StreamVersion:  row.StreamVersion,
		GlobalPosition: position,
		EventType:      row.EventType,
		Data:           json.RawMessage(row.Data),
		RecordedAt:     row.RecordedAt.UTC(),
		Metadata:       core.EventMetadata{EventID: row.EventID},
	}
	if row.CorrelationID != nil {
		recorded.Metadata.CorrelationID = *row.CorrelationID
	}
	if row.CausationID != nil {
		recorded.Metadata.CausationID = *row.CausationID
	}
	if len(row.Headers) > 0 {
		// Append encodes headers from a map[string]string; a row written by
		// other tooling may not fit.
		headers, err := decodeHeaders(row.Headers)
		if err != nil {
			return nil, &core.DecodeError{StreamID: row.StreamID, StreamVersion: row.StreamVersion,
				GlobalPosition: recorded.GlobalPosition, EventType: row.EventType, Err: fmt.Errorf("headers: %w", err)}
		}
		recorded.Metadata.Headers = headers
	}
	return recorded, nil
}
