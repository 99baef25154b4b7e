package store

import (
	"context"
	"iter"
	"math"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
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

func (s *EventStore) read(ctx context.Context, exec executor, q core.StreamQuery, sequence bool) iter.Seq2[*core.RecordedEvent, error] {
	return func(yield func(*core.RecordedEvent, error) bool) {
		if s.instr == nil {
			s.readEach(ctx, exec, q, sequence, yield)
			return
		}
		ctx, op := s.start(ctx, core.Operation{Kind: core.OpRead, Query: q})
		var outcome core.Outcome
		defer func() { op.done(outcome) }()
		s.readEach(ctx, exec, q, sequence, func(event *core.RecordedEvent, err error) bool {
			if err != nil {
				outcome.Err = err
			} else {
				outcome.Events++
			}
			return yield(event, err)
		})
	}
}

// readEach yields the events q selects, or an error, until yield returns
// false.
func (s *EventStore) readEach(ctx context.Context, exec executor, q core.StreamQuery, sequence bool, yield func(*core.RecordedEvent, error) bool) {
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
	pages := s.pages(ctx, exec, q)
	defer pages.stop()
	for {
		events, err := pages.next()
		if err != nil {
			yield(nil, s.interpretError("read", err))
			return
		}
		if events == nil {
			return
		}
		for _, stored := range events {
			recorded, err := s.registry.Upcast(stored)
			if err != nil {
				yield(nil, err)
				return
			}
			// Current from here on: decoding it must not upcast again.
			recorded.Upcasted = true
			if !yield(recorded, nil) {
				return
			}
		}
	}
}

// pageSource hands out a read's pages in order, then nil.
type pageSource struct {
	next func() ([]*core.RecordedEvent, error)
	stop func()
}

// pages returns the pages of q. On the pool, the next page is fetched (on
// another connection) while the caller works through the current one: a
// page costs a round trip and the server's work, which would otherwise
// wait for the caller, and the caller for them (whole-log reads fetch two
// at once: see nextTwo). In a caller's transaction pages are fetched in
// turn: the transaction's connection serves one statement at a time, and
// the caller may use it between pages. At most five pages are held (the
// caller's, two waiting, two being fetched), so memory stays constant.
func (s *EventStore) pages(ctx context.Context, exec executor, q core.StreamQuery) pageSource {
	page := newPager(s, q)
	done := false
	fetch := func(ctx context.Context) ([]*core.RecordedEvent, error) {
		if done {
			return nil, nil
		}
		events, err := page.next(ctx, exec)
		done = err != nil || page.exhausted
		if err == nil && events == nil {
			events = []*core.RecordedEvent{} // an empty last page is not the end marker
		}
		return events, err
	}
	if _, onPool := exec.(*pgxpool.Pool); !onPool {
		return pageSource{next: func() ([]*core.RecordedEvent, error) { return fetch(ctx) }, stop: func() {}}
	}

	// A partition's positions are not contiguous.
	if q.Direction == core.Forward && q.Category == "" && len(page.types) == 0 && !q.IsPartitioned() {
		page.byRange, page.from = true, max(page.from, 1)
	}
	type fetched struct {
		events []*core.RecordedEvent
		err    error
	}
	// quit, not ctx, ends the fetching early: an error, ctx's included,
	// must reach a caller who is still reading.
	fetchCtx, cancel := context.WithCancel(ctx)
	ahead := make(chan fetched, 2)
	quit, stopped := make(chan struct{}), make(chan struct{})
	deliver := func(f fetched) bool {
		select {
		case ahead <- f:
			return true
		case <-quit:
			return false
		}
	}
	go func() {
		defer close(stopped)
		defer close(ahead)
		for page.byRange && !done {
			events, err := page.nextTwo(fetchCtx, exec)
			for _, e := range events {
				if len(e) > 0 && !deliver(fetched{e, nil}) {
					return
				}
			}
			if err != nil {
				deliver(fetched{nil, err})
				return
			}
			done = page.exhausted
		}
		for {
			events, err := fetch(fetchCtx)
			if events == nil && err == nil {
				return
			}
			if !deliver(fetched{events, err}) || err != nil {
				return
			}
		}
	}()
	return pageSource{
		next: func() ([]*core.RecordedEvent, error) {
			f, ok := <-ahead
			if !ok {
				return nil, nil
			}
			return f.events, f.err
		},
		stop: func() {
			close(quit)
			cancel()
			<-stopped
		},
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
	// byRange: pages are ranges of positions, known in advance (see
	// nextTwo).
	byRange bool
	// paired: the first range page came back full, so pages go on two at a
	// time. Until then one: a read that ends within a page (most streams)
	// costs one statement, not two.
	paired bool
}

// nextTwo fetches the next two pages of a read of the whole log or of a
// stream at once, on two connections (the first call fetches one: see
// pager.paired). Positions and a stream's versions
// are gapless, so without a type filter the page after this one starts a
// page later, and need not wait for this one. A page that does not hold
// exactly its range (there is no such page, but the pager does not rely on
// it) ends range paging: pages go on by keyset from the last key
// delivered.
func (p *pager) nextTwo(ctx context.Context, exec executor) ([][]*core.RecordedEvent, error) {
	var sizes [2]int32
	from := p.from
	for i := range sizes {
		sizes[i] = p.pageSize
		if p.remaining >= 0 {
			sizes[i] = int32(min(int64(p.pageSize), int64(p.remaining)-(from-p.from)))
		}
		from += int64(sizes[i])
	}
	if !p.paired {
		sizes[1], p.paired = 0, true
	}
	var pages [2][]*core.RecordedEvent
	var errs [2]error
	var wg sync.WaitGroup
	for i, size := range sizes {
		if size <= 0 {
			continue
		}
		start := p.from + int64(i)*int64(sizes[0])
		wg.Go(func() {
			pages[i], errs[i] = p.store.readPage(ctx, exec, pageRequest{query: p.query, from: start, maxCount: size})
		})
	}
	wg.Wait()
	var out [][]*core.RecordedEvent
	for i, events := range pages {
		if sizes[i] <= 0 {
			break
		}
		if errs[i] != nil {
			return out, errs[i]
		}
		if n := len(events); n > 0 && (p.key(events[0]) != p.from || p.key(events[n-1]) != p.from+int64(n)-1) {
			p.byRange = false
			return out, nil
		}
		out = append(out, events)
		p.from += int64(len(events))
		if p.remaining >= 0 {
			p.remaining -= len(events)
		}
		if len(events) < int(sizes[i]) || p.remaining == 0 {
			p.exhausted = true
			return out, nil
		}
	}
	return out, nil
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

// key is what the pager pages by: a stream's version, or the position.
func (p *pager) key(e *core.RecordedEvent) int64 {
	if p.query.IsStream() {
		return e.StreamVersion
	}
	return e.GlobalPosition
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

func (p *pager) next(ctx context.Context, exec executor) ([]*core.RecordedEvent, error) {
	limit := p.limit()
	events, err := p.store.readPage(ctx, exec, pageRequest{query: p.query, from: p.from, types: p.types, maxCount: limit})
	if err != nil {
		return nil, err
	}
	forward := p.query.Direction == core.Forward
	if n := len(events); n > 0 {
		last := events[n-1]
		key := p.key(last)
		if forward {
			p.from = key + 1
		} else {
			p.from = key - 1
		}
	}
	if p.remaining >= 0 {
		p.remaining -= len(events)
	}
	p.exhausted = len(events) < int(limit) || p.remaining == 0 || (!forward && p.from < 1)
	return events, nil
}
