package integration_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

// The torture test of ../shared/design/ordering.md. Writers race on a few
// streams with every kind of transaction — quick, slow, rolled back, killed,
// losing optimistic races, writing another table first — while a subscriber
// follows the log by position and a stranger holds an unrelated transaction
// open throughout. It proves:
//
//  1. no skips: every committed event is delivered, exactly once, and
//     positions are gapless;
//  2. per-stream order: each stream is delivered as versions 1, 2, 3, ...;
//  3. causal order: an append that began after another committed is
//     delivered after it;
//  4. no stalls from strangers: the subscriber catches up with every commit
//     while the stranger's transaction is still open;
//  5. nothing rolled back or killed is ever delivered.
//
// A sixth of the appends use a transaction scope that appends to one stream
// and then to another that concurrent writers also append to.
func TestOrderingTorture(t *testing.T) {
	t.Parallel()
	const (
		writers  = 12
		streams  = 40
		duration = 4 * time.Second
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool := pgenv.NewPool(t, writers+8)
	es := pgenv.NewStore(t, pool, nil)
	if _, err := pool.Exec(ctx, fmt.Sprintf("CREATE TABLE %s.side_effects (id bigserial PRIMARY KEY, note text)",
		pgx.Identifier{es.Schema()}.Sanitize())); err != nil {
		t.Fatal(err)
	}
	sideTable := pgx.Identifier{es.Schema(), "side_effects"}.Sanitize()

	// The stranger: a transaction with an xid that never touches events,
	// open from before the first append until the subscriber has caught up.
	stranger, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stranger.Exec(ctx, "INSERT INTO "+sideTable+" (note) VALUES ('stranger')"); err != nil {
		t.Fatal(err)
	}
	defer stranger.Rollback(ctx) //nolint:errcheck // released below; this covers failures

	rec := &appendLog{}
	sub := newSubscriber(es)
	subCtx, stopSub := context.WithCancel(ctx)
	subDone := make(chan error, 1)
	go func() { subDone <- sub.follow(subCtx) }()

	deadline := time.Now().Add(duration)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if err := tortureStep(ctx, rng, pool, es, sideTable, streams, rec); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		stopSub()
		return
	}

	committed := rec.committedEvents()
	// Invariant 4: the subscriber reaches every committed event while the
	// stranger is still open. An xid-horizon design would wait forever here.
	caughtUp := sub.waitFor(ctx, len(committed), 30*time.Second)
	if _, err := stranger.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("stranger transaction was not open throughout: %v", err)
	}
	if !caughtUp {
		stopSub()
		t.Fatalf("subscriber delivered %d of %d committed events while an unrelated transaction was open", sub.count(), len(committed))
	}
	if err := stranger.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// Let any late (wrong) delivery show up before checking.
	if _, err := es.Append(ctx, "sentinel-1", core.NoStream, core.NewEvent(Deposited{Amount: 1})); err != nil {
		t.Fatal(err)
	}
	sub.waitFor(ctx, len(committed)+1, 30*time.Second)
	stopSub()
	if err := <-subDone; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("subscriber: %v", err)
	}

	delivered := sub.deliveredEvents()
	stats := rec.stats()
	t.Logf("appends: %+v; delivered %d events, max delivery latency %v", stats, len(delivered), sub.maxLatency(rec))
	if stats.committed < 100 || stats.conflicts == 0 || stats.rolledBack == 0 || stats.killed == 0 || stats.slow == 0 || stats.sideWrites == 0 || stats.scopes == 0 {
		t.Fatalf("the run did not exercise every kind of append: %+v", stats)
	}

	// 1 and 5: exactly the committed events, each once, gapless positions.
	position := map[uuid.UUID]int64{}
	for i, d := range delivered {
		if d.GlobalPosition != int64(i+1) {
			t.Fatalf("delivery %d has position %d: positions are not gapless", i, d.GlobalPosition)
		}
		if _, dup := position[d.Metadata.EventID]; dup {
			t.Fatalf("event %s delivered twice", d.Metadata.EventID)
		}
		position[d.Metadata.EventID] = d.GlobalPosition
	}
	for _, id := range rec.abortedEvents() {
		if _, ok := position[id]; ok {
			t.Fatalf("event %s of a rolled-back or killed transaction was delivered", id)
		}
	}
	for _, id := range committed {
		if _, ok := position[id]; !ok {
			t.Fatalf("committed event %s was never delivered", id)
		}
	}
	if len(delivered) != len(committed)+1 {
		t.Fatalf("delivered %d events, want the %d committed plus the sentinel", len(delivered), len(committed))
	}

	// 2: each stream in version order, no version missing.
	versions := map[string]int64{}
	for _, d := range delivered {
		if d.StreamVersion != versions[d.StreamID]+1 {
			t.Fatalf("stream %s: version %d delivered after version %d", d.StreamID, d.StreamVersion, versions[d.StreamID])
		}
		versions[d.StreamID] = d.StreamVersion
	}

	// 3: causal order.
	if err := rec.checkCausalOrder(position); err != nil {
		t.Fatal(err)
	}
}

// tortureStep makes one append of a random kind.
func tortureStep(ctx context.Context, rng *rand.Rand, pool *pgxpool.Pool, es *store.EventStore, sideTable string, streams int, rec *appendLog) error {
	streamID := fmt.Sprintf("torture-%d", rng.IntN(streams))
	version, err := es.StreamVersion(ctx, streamID)
	if err != nil {
		return err
	}
	// Sometimes use a stale version, to lose the optimistic race for sure.
	if version > 0 && rng.IntN(10) == 0 {
		version--
	}
	events := make([]core.Event, 1+rng.IntN(3))
	ids := make([]uuid.UUID, len(events))
	for i := range events {
		ids[i] = uuid.New()
		events[i] = core.Event{Data: Deposited{Amount: int64(i)}, Metadata: core.EventMetadata{EventID: ids[i]}}
	}
	kind := rng.IntN(12)
	began := time.Now()

	if kind >= 10 { // a transaction scope writing two streams
		return tortureScope(ctx, rng, es, streamID, version, events, streams, rec)
	}

	if kind < 4 { // a plain append in its own transaction
		_, err := es.Append(ctx, streamID, core.Exact(version), events...)
		return rec.settle(began, ids, err, "")
	}

	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after commit this is a no-op
	var note string
	if kind == 4 || kind == 5 { // write another table first, then wait
		note = "side"
		if _, err := tx.Exec(ctx, "INSERT INTO "+sideTable+" (note) VALUES ('writer')"); err != nil {
			return err
		}
		time.Sleep(time.Duration(rng.IntN(50)) * time.Millisecond)
	}
	if _, err := es.AppendTx(ctx, tx, streamID, core.Exact(version), events...); err != nil {
		return rec.settle(began, ids, err, note)
	}
	switch kind {
	case 6: // roll back
		rec.abort(ids, "rollback")
		return tx.Rollback(ctx)
	case 7: // killed: the backend dies before commit
		var pid int32
		if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			return err
		}
		if _, err := pool.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
			return err
		}
		if err := tx.Commit(ctx); err == nil {
			return fmt.Errorf("commit after pg_terminate_backend succeeded")
		}
		rec.abort(ids, "killed")
		return nil
	case 8, 9: // slow: hold the stream lock, then commit
		note = "slow"
		time.Sleep(time.Duration(100+rng.IntN(700)) * time.Millisecond)
	}
	return rec.settle(began, ids, tx.Commit(ctx), note)
}

// tortureScope appends to one stream, then, in the same scope, to another
// that concurrent writers are appending to as well.
func tortureScope(ctx context.Context, rng *rand.Rand, es *store.EventStore, streamID string, version int64, events []core.Event, streams int, rec *appendLog) error {
	began := time.Now()
	scope, err := es.Begin(ctx)
	if err != nil {
		return err
	}
	defer scope.Rollback(ctx) //nolint:errcheck // after commit this is a no-op
	ids := eventIDs(events)
	if _, err := scope.Append(ctx, streamID, core.Exact(version), events...); err != nil {
		return rec.settle(began, ids, err, "")
	}
	time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
	other := fmt.Sprintf("torture-%d", rng.IntN(streams))
	otherVersion, err := es.StreamVersion(ctx, other)
	if err != nil {
		return err
	}
	more := []core.Event{{Data: Deposited{Amount: 7}, Metadata: core.EventMetadata{EventID: uuid.New()}}}
	ids = append(ids, eventIDs(more)...)
	if _, err := scope.Append(ctx, other, core.Exact(otherVersion), more...); err != nil {
		// Two scopes that append to the same two streams in opposite
		// orders can wait for each other's versions: PostgreSQL breaks the
		// deadlock by aborting one of them, whose events are then never
		// delivered (a rare outcome, but a correct one).
		if kind, _ := core.DBKind(err); kind == core.DBDeadlock {
			rec.abort(ids, "deadlock")
			return nil
		}
		return rec.settle(began, ids, err, "scope")
	}
	return rec.settle(began, ids, scope.Commit(ctx), "scope")
}

func eventIDs(events []core.Event) []uuid.UUID {
	ids := make([]uuid.UUID, len(events))
	for i, e := range events {
		ids[i] = e.Metadata.EventID
	}
	return ids
}

// appendLog records what the writers did.
type appendLog struct {
	mu      sync.Mutex
	appends []committedAppend
	aborted []uuid.UUID
	counts  tortureStats
}

type committedAppend struct {
	began, committed time.Time
	ids              []uuid.UUID
}

type tortureStats struct {
	committed, conflicts, rolledBack, killed, slow, sideWrites, scopes int
}

func (l *appendLog) settle(began time.Time, ids []uuid.UUID, err error, note string) error {
	committedAt := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if errors.Is(err, core.ErrConcurrency) {
		l.counts.conflicts++
		l.aborted = append(l.aborted, ids...)
		return nil
	}
	if err != nil {
		return err
	}
	l.counts.committed++
	switch note {
	case "slow":
		l.counts.slow++
	case "side":
		l.counts.sideWrites++
	case "scope":
		l.counts.scopes++
	}
	l.appends = append(l.appends, committedAppend{began: began, committed: committedAt, ids: ids})
	return nil
}

func (l *appendLog) abort(ids []uuid.UUID, why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.aborted = append(l.aborted, ids...)
	if why == "killed" {
		l.counts.killed++
	} else {
		l.counts.rolledBack++
	}
}

func (l *appendLog) stats() tortureStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts
}

func (l *appendLog) committedEvents() []uuid.UUID {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ids []uuid.UUID
	for _, a := range l.appends {
		ids = append(ids, a.ids...)
	}
	return ids
}

func (l *appendLog) abortedEvents() []uuid.UUID {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.aborted)
}

// checkCausalOrder verifies that every append that began after another had
// committed was delivered entirely after it.
func (l *appendLog) checkCausalOrder(position map[uuid.UUID]int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	span := func(a committedAppend) (lo, hi int64) {
		lo, hi = position[a.ids[0]], position[a.ids[0]]
		for _, id := range a.ids {
			lo, hi = min(lo, position[id]), max(hi, position[id])
		}
		return lo, hi
	}
	byBegin := slices.Clone(l.appends)
	slices.SortFunc(byBegin, func(a, b committedAppend) int { return a.began.Compare(b.began) })
	byCommit := slices.Clone(l.appends)
	slices.SortFunc(byCommit, func(a, b committedAppend) int { return a.committed.Compare(b.committed) })

	var latestBefore int64 // highest position among appends committed before the current one began
	next := 0
	for _, a := range byBegin {
		for next < len(byCommit) && byCommit[next].committed.Before(a.began) {
			_, hi := span(byCommit[next])
			latestBefore = max(latestBefore, hi)
			next++
		}
		if lo, _ := span(a); lo <= latestBefore {
			return fmt.Errorf("append that began at %v was delivered at position %d, before an append committed earlier (position %d)",
				a.began.Format(time.StampMicro), lo, latestBefore)
		}
	}
	return nil
}

// subscriber follows the whole log by position, as a projection would.
type subscriber struct {
	es        *store.EventStore
	mu        sync.Mutex
	delivered []*core.RecordedEvent
	seenAt    map[uuid.UUID]time.Time
	n         atomic.Int64
}

func newSubscriber(es *store.EventStore) *subscriber {
	return &subscriber{es: es, seenAt: map[uuid.UUID]time.Time{}}
}

func (s *subscriber) follow(ctx context.Context) error {
	var checkpoint int64
	for {
		got := 0
		for event, err := range s.es.Read(ctx, core.StreamQuery{FromPosition: checkpoint + 1, Limit: 1000}) {
			if err != nil {
				return err
			}
			now := time.Now()
			s.mu.Lock()
			s.delivered = append(s.delivered, event)
			s.seenAt[event.Metadata.EventID] = now
			s.mu.Unlock()
			s.n.Add(1)
			checkpoint = event.GlobalPosition
			got++
		}
		if got == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
}

func (s *subscriber) count() int { return int(s.n.Load()) }

func (s *subscriber) waitFor(ctx context.Context, n int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for s.count() < n {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

func (s *subscriber) deliveredEvents() []*core.RecordedEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.delivered)
}

// maxLatency is the longest time from an append's commit to its delivery.
func (s *subscriber) maxLatency(l *appendLog) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	var worst time.Duration
	for _, a := range l.appends {
		for _, id := range a.ids {
			if seen, ok := s.seenAt[id]; ok {
				worst = max(worst, seen.Sub(a.committed))
			}
		}
	}
	return worst
}
