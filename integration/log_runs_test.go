package integration_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

// logRuns is the log's rows: one per run, a stream's events that one
// transaction appended one after another.
func logRuns(t *testing.T, es *store.EventStore) []string {
	t.Helper()
	rows, err := pgenv.Pool(t).Query(context.Background(), fmt.Sprintf(
		"SELECT format('%%s %%s v%%s+%%s', global_position, stream_id, first_version, event_count) FROM %s ORDER BY global_position",
		storeTable(es, "event_log")))
	if err != nil {
		t.Fatal(err)
	}
	var runs []string
	for rows.Next() {
		var run string
		if err := rows.Scan(&run); err != nil {
			t.Fatal(err)
		}
		runs = append(runs, run)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return runs
}

func deposits(n int) []core.Event {
	events := make([]core.Event, n)
	for i := range events {
		events[i] = core.NewEvent(Deposited{Amount: int64(i + 1)})
	}
	return events
}

// The sequencer numbers runs: a batch is one log row, a transaction's
// events keep the order they were appended in, and every read, from any
// position and in either direction, returns each event at its own position.
func TestLogRunsKeepAppendOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})

	if _, err := es.Append(ctx, "account-a", core.NoStream, deposits(4)...); err != nil {
		t.Fatal(err)
	}
	// One transaction: b, a, a, b, c: each batch a run of its own.
	err := es.InScope(ctx, func(sc *store.Scope) error {
		for _, step := range []struct {
			stream string
			n      int
		}{{"account-b", 2}, {"account-a", 1}, {"account-a", 2}, {"account-b", 1}, {"other-c", 1}} {
			if _, err := sc.Append(ctx, step.stream, core.Any, deposits(step.n)...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := es.Sequence(ctx); err != nil {
		t.Fatal(err)
	}
	wantRuns := []string{
		"1 account-a v1+4", "5 account-b v1+2", "7 account-a v5+1", "8 account-a v6+2", "10 account-b v3+1", "11 other-c v1+1",
	}
	if diff := cmp.Diff(wantRuns, logRuns(t, es)); diff != "" {
		t.Fatalf("runs (-want +got):\n%s", diff)
	}
	wantLog := []positionedEvent{
		{1, "account-a", 1}, {2, "account-a", 2}, {3, "account-a", 3}, {4, "account-a", 4},
		{5, "account-b", 1}, {6, "account-b", 2},
		{7, "account-a", 5}, {8, "account-a", 6}, {9, "account-a", 7},
		{10, "account-b", 3}, {11, "other-c", 1},
	}
	if diff := cmp.Diff(wantLog, readWholeLog(t, es)); diff != "" {
		t.Fatalf("log (-want +got):\n%s", diff)
	}
	positionOf := map[string]int64{}
	for _, e := range wantLog {
		positionOf[fmt.Sprintf("%s/%d", e.Stream, e.Version)] = e.Position
	}

	read := func(q core.StreamQuery) []positionedEvent {
		t.Helper()
		events, err := es.ReadEvents(ctx, q)
		if err != nil {
			t.Fatalf("%+v: %v", q, err)
		}
		var got []positionedEvent
		for _, e := range events {
			got = append(got, positionedEvent{e.GlobalPosition, e.StreamID, e.StreamVersion})
		}
		return got
	}
	// Every start, inside runs and on their edges, both ways, with limits.
	for from := int64(0); from <= 12; from++ {
		for _, limit := range []int{0, 1, 2, 5} {
			var want []positionedEvent
			for _, e := range wantLog {
				if e.Position >= from && (limit == 0 || len(want) < limit) {
					want = append(want, e)
				}
			}
			q := core.ReadAll()
			q.FromPosition, q.Limit = from, limit
			if diff := cmp.Diff(want, read(q)); diff != "" {
				t.Errorf("forward from %d, limit %d (-want +got):\n%s", from, limit, diff)
			}

			want = nil
			for i := len(wantLog) - 1; i >= 0; i-- {
				// Backward from 0 is from the head.
				if e := wantLog[i]; (from == 0 || e.Position <= from) && (limit == 0 || len(want) < limit) {
					want = append(want, e)
				}
			}
			q.Direction = core.Backward
			if diff := cmp.Diff(want, read(q)); diff != "" {
				t.Errorf("backward from %d, limit %d (-want +got):\n%s", from, limit, diff)
			}

			want = nil
			for _, e := range wantLog {
				if e.Stream != "other-c" && e.Position >= from && (limit == 0 || len(want) < limit) {
					want = append(want, e)
				}
			}
			q = core.ReadCategory("account")
			q.FromPosition, q.Limit = from, limit
			if diff := cmp.Diff(want, read(q)); diff != "" {
				t.Errorf("category forward from %d, limit %d (-want +got):\n%s", from, limit, diff)
			}
		}
	}
	// A stream read finds each event's position in the run that holds it.
	for _, stream := range []string{"account-a", "account-b"} {
		for _, direction := range []core.ReadDirection{core.Forward, core.Backward} {
			q := core.ReadStream(stream)
			q.Direction = direction
			if direction == core.Backward {
				q.FromVersion = 100
			}
			for _, e := range read(q) {
				if want := positionOf[fmt.Sprintf("%s/%d", e.Stream, e.Version)]; e.Position != want {
					t.Errorf("%s version %d read at position %d, want %d", e.Stream, e.Version, e.Position, want)
				}
			}
		}
	}
	// Not yet numbered: position 0, in a stream read, until a sweep.
	if _, err := es.Append(ctx, "account-a", core.Exact(7), deposits(2)...); err != nil {
		t.Fatal(err)
	}
	q := core.ReadStream("account-a")
	q.FromVersion = 7
	if diff := cmp.Diff([]positionedEvent{{9, "account-a", 7}, {0, "account-a", 8}, {0, "account-a", 9}}, read(q)); diff != "" {
		t.Errorf("stream read before the sweep (-want +got):\n%s", diff)
	}
}

// Transactions open at the same time are numbered one after the other, in
// the order of their last events: a transaction that wrote before and after
// another committed comes after it, as its later events may depend on it.
func TestLogRunsOrderConcurrentTransactions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})

	long, err := es.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer long.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	if _, err := long.Append(ctx, "account-long", core.NoStream, deposits(2)...); err != nil {
		t.Fatal(err)
	}
	if _, err := es.Append(ctx, "account-short", core.NoStream, deposits(3)...); err != nil {
		t.Fatal(err)
	}
	// The long transaction reads what the short one committed, then writes.
	if _, err := long.Append(ctx, "account-long", core.Exact(2), deposits(1)...); err != nil {
		t.Fatal(err)
	}
	if err := long.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := es.Sequence(ctx); err != nil {
		t.Fatal(err)
	}
	want := []positionedEvent{
		{1, "account-short", 1}, {2, "account-short", 2}, {3, "account-short", 3},
		{4, "account-long", 1}, {5, "account-long", 2}, {6, "account-long", 3},
	}
	if diff := cmp.Diff(want, readWholeLog(t, es)); diff != "" {
		t.Fatalf("log (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"1 account-short v1+3", "4 account-long v1+2", "6 account-long v3+1"}, logRuns(t, es)); diff != "" {
		t.Fatalf("runs (-want +got):\n%s", diff)
	}
}

// A stream read gives every event its run's position whatever page it lands
// on: pages of any size cut runs anywhere, both ways, with and without a
// type filter, from every version, and events not yet numbered read at 0.
// Stream pages find positions in the runs of their range of versions, and
// events outside it (a type filter reads past the range) one by one.
func TestStreamReadPositionsOnEveryPage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})

	mixed := func(types ...string) []core.Event {
		events := make([]core.Event, len(types))
		for i, kind := range types {
			if kind == "w" {
				events[i] = core.NewEvent(Withdrawn{Amount: int64(i + 1)})
			} else {
				events[i] = core.NewEvent(Deposited{Amount: int64(i + 1)})
			}
		}
		return events
	}
	// Runs of 3, 1, 1 and 4 events of account-x, around other streams'.
	if _, err := es.Append(ctx, "account-x", core.NoStream, mixed("d", "w", "d")...); err != nil {
		t.Fatal(err)
	}
	err := es.InScope(ctx, func(sc *store.Scope) error {
		for _, step := range []struct {
			stream string
			kinds  []string
		}{{"account-x", []string{"w"}}, {"account-y", []string{"d", "d"}}, {"account-x", []string{"d"}}} {
			if _, err := sc.Append(ctx, step.stream, core.Any, mixed(step.kinds...)...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, kinds := range [][]string{{"d"}, {"w", "d", "d", "w"}} {
		if _, err := es.Append(ctx, "account-y", core.Any, deposits(1)...); err != nil {
			t.Fatal(err)
		}
		if _, err := es.Append(ctx, "account-x", core.Any, mixed(kinds...)...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := es.Sequence(ctx); err != nil {
		t.Fatal(err)
	}

	type event struct {
		Position, Version int64
		Type              string
	}
	all, err := es.ReadEvents(ctx, core.ReadAll())
	if err != nil {
		t.Fatal(err)
	}
	positionOf := map[int64]int64{}
	for _, e := range all {
		if e.StreamID == "account-x" {
			positionOf[e.StreamVersion] = e.GlobalPosition
		}
	}
	// Two more, not numbered yet (a whole-log read numbers what is there).
	if _, err := es.Append(ctx, "account-x", core.Any, mixed("w", "d")...); err != nil {
		t.Fatal(err)
	}
	var stream []event // account-x as it must read, in version order
	for version := int64(1); version <= 12; version++ {
		stored, err := es.ReadEvents(ctx, core.StreamQuery{StreamID: "account-x", FromVersion: version, Limit: 1})
		if err != nil || len(stored) != 1 {
			t.Fatalf("version %d: %v, %d events", version, err, len(stored))
		}
		stream = append(stream, event{positionOf[version], version, stored[0].EventType})
	}
	if positionOf[10] == 0 || positionOf[11] != 0 || len(positionOf) != 10 {
		t.Fatalf("positions %v: want versions 1-10 numbered, 11 and 12 not", positionOf)
	}

	for _, pageSize := range []int{1, 2, 3, 4, 7, 500} {
		paged, err := store.New(pgenv.Pool(t), &store.Config{Schema: es.Schema(), Registry: bankRegistry(), ReadPageSize: pageSize})
		if err != nil {
			t.Fatal(err)
		}
		for _, direction := range []core.ReadDirection{core.Forward, core.Backward} {
			for _, types := range [][]string{nil, {withdrawn}} {
				for from := int64(0); from <= 14; from++ {
					for _, limit := range []int{0, 1, 3} {
						q := core.StreamQuery{StreamID: "account-x", FromVersion: from, Direction: direction, EventTypes: types, Limit: limit}
						var want []event
						for i := range stream {
							e := stream[i]
							if direction == core.Backward {
								e = stream[len(stream)-1-i]
							}
							inRange := from == 0 || (direction == core.Forward && e.Version >= from) || (direction == core.Backward && e.Version <= from)
							if inRange && (types == nil || e.Type == withdrawn) && (limit == 0 || len(want) < limit) {
								want = append(want, e)
							}
						}
						events, err := paged.ReadEvents(ctx, q)
						if err != nil {
							t.Fatalf("%+v: %v", q, err)
						}
						var got []event
						for _, e := range events {
							got = append(got, event{e.GlobalPosition, e.StreamVersion, e.EventType})
						}
						if diff := cmp.Diff(want, got); diff != "" {
							t.Errorf("page size %d, %+v (-want +got):\n%s", pageSize, q, diff)
						}
					}
				}
			}
		}
	}
}

// loggedEvent is one element of log_runs' argument.
type loggedEvent struct {
	seq, xid, version int64
	stream            string
	runStart          *int64
}

func (e loggedEvent) String() string {
	run := "alone"
	if e.runStart != nil {
		run = fmt.Sprintf("run from v%d", *e.runStart)
	}
	return fmt.Sprintf("seq %d xid %d %s v%d %s", e.seq, e.xid, e.stream, e.version, run)
}

// randomFreshEvents is what a sweep could find: transactions, interleaved
// by seq, each appending single events and batches to a few streams, some
// of them cut or out of order as only deleted rows or hand-made inserts
// could leave them.
func randomFreshEvents(r *rand.Rand) (fresh []loggedEvent, irregular bool) {
	versions := map[string]int64{}
	var transactions [][]loggedEvent
	for xid := int64(1000); xid < 1000+int64(1+r.IntN(5)); xid++ {
		var events []loggedEvent
		for range 1 + r.IntN(4) {
			stream := []string{"a-1", "a-2", "b-1", "nocategory"}[r.IntN(4)]
			n := int64(1)
			var runStart *int64
			if r.IntN(2) == 0 {
				n = 1 + r.Int64N(4)
				start := versions[stream] + 1
				runStart = &start
			}
			for range n {
				versions[stream]++
				events = append(events, loggedEvent{xid: xid, stream: stream, version: versions[stream], runStart: runStart})
			}
		}
		switch r.IntN(8) {
		case 0: // an event deleted
			i := r.IntN(len(events))
			events = append(events[:i], events[i+1:]...)
			irregular = true
		case 1: // two events in the other order
			i, j := r.IntN(len(events)), r.IntN(len(events))
			events[i], events[j] = events[j], events[i]
			irregular = i != j
		}
		transactions = append(transactions, events)
	}
	// Seqs in one order across transactions, each transaction's in its own.
	next := make([]int, len(transactions))
	for seq := int64(1); ; seq++ {
		var open []int
		for i, events := range transactions {
			if next[i] < len(events) {
				open = append(open, i)
			}
		}
		if len(open) == 0 {
			return fresh, irregular
		}
		i := open[r.IntN(len(open))]
		event := transactions[i][next[i]]
		next[i]++
		event.seq = seq
		fresh = append(fresh, event)
	}
}

// log_runs gives what migration 9's gave for any events (migration 11 made
// it inlinable and takes transactions without batches straight to runs of
// one): the same runs, the same order.
func TestLogRunsAsMigration9Did(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	migration, err := os.ReadFile("../schema/migrations/000009_log_runs.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(migration), "CREATE FUNCTION log_runs(")
	body, _, found := strings.Cut(rest, "\n$$;")
	if !found {
		t.Fatal("migration 9 has no log_runs")
	}
	before := pgx.Identifier{es.Schema(), "log_runs_before"}.Sanitize()
	conn, err := pgenv.Pool(t).Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SET search_path = "+pgx.Identifier{es.Schema()}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, "RESET search_path") //nolint:errcheck // the pool's next user sets its own
	if _, err := conn.Exec(ctx, "CREATE FUNCTION "+before+"("+body+"\n$$"); err != nil {
		t.Fatal(err)
	}
	runs := func(function string, fresh []loggedEvent) []string {
		t.Helper()
		var seqs, xids, versions []int64
		var streams []string
		var runStarts []*int64
		for _, e := range fresh {
			seqs, xids, versions = append(seqs, e.seq), append(xids, e.xid), append(versions, e.version)
			streams, runStarts = append(streams, e.stream), append(runStarts, e.runStart)
		}
		rows, err := conn.Query(ctx, `
			SELECT format('%s %s %s+%s %s %s', r.transaction_last_seq, r.stream_id, r.first_version,
			              r.event_count, r.category, r.first_seq)
			FROM `+function+`(ARRAY(
				SELECT ROW(seq, xid::text::xid8, stream, version, run_start,
				           nullif(split_part(stream, '-', 1), stream))::logged_event
				FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[])
				     AS e(seq, xid, stream, version, run_start))) AS r
			ORDER BY r.transaction_last_seq, r.first_seq`,
			seqs, xids, streams, versions, runStarts)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	r := rand.New(rand.NewPCG(11, uint64(time.Now().UnixNano())))
	batched, irregular := 0, 0
	for range 400 {
		fresh, odd := randomFreshEvents(r)
		want := runs(before, fresh)
		if diff := cmp.Diff(want, runs("log_runs", fresh)); diff != "" {
			t.Fatalf("log_runs(%v) (-migration 9 +now):\n%s", fresh, diff)
		}
		for _, run := range want {
			if !strings.Contains(run, "+1 ") {
				batched++
			}
		}
		if odd {
			irregular++
		}
	}
	if batched == 0 || irregular == 0 {
		t.Fatalf("%d runs of batches, %d irregular inputs: the test needs both", batched, irregular)
	}
}
