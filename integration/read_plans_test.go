package integration_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

// A page of the whole log or of a category costs what the page holds,
// whatever the log's size and with no statistics (autovacuum is off here,
// and nothing in this test analyzes). Planned as plain statements, a
// category page was a bitmap scan of every later entry of the category and
// a sort (a read of the category was quadratic in the log's size), and a
// whole-log page could hash-join the log. The read functions keep one plan
// per connection (migration 12): this one's are made on an empty log, as a
// fresh store's first reads make them, and must serve a log of 20,000.
func TestReadPagesCostWhatTheyHold(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	conn, err := pgx.Connect(ctx, pgenv.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx) //nolint:errcheck // a test connection
	schema := pgx.Identifier{es.Schema()}.Sanitize()
	batch := make([]core.Event, 100)
	for i := range batch {
		batch[i] = core.NewEvent(Deposited{Amount: 1})
	}
	appended := 0
	grow := func(to int) {
		for ; appended < to; appended += len(batch) {
			category := []string{"account", "other"}[appended/len(batch)%2]
			if _, err := es.Append(ctx, fmt.Sprintf("%s-%d", category, appended), core.NoStream, batch...); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := es.Sequence(ctx); err != nil {
			t.Fatal(err)
		}
	}
	const pageSize = 50
	pages := map[string]string{
		"category, forward":     "read_category_forward('account', 1, NULL, %d, 0, 0)",
		"category, backward":    "read_category_backward('account', 9223372036854775807, NULL, %d, 0, 0)",
		"whole log, forward":    "read_log_forward(1, NULL, %d, 0, 0)",
		"whole log, backward":   "read_log_backward(9223372036854775807, NULL, %d, 0, 0)",
		"category, filtered":    "read_category_forward('account', 1, ARRAY['account.deposited'], %d, 0, 0)",
		"partition of log":      "read_log_forward(1, NULL, %d, 4, 1)",
		"partition of category": "read_category_forward('account', 1, NULL, %d, 4, 2)",
	}
	measure := func() map[string]int {
		costs := map[string]int{}
		for name, call := range pages {
			// Twice: the first run after the sequencer refreshed the
			// statistics plans the page again, reading the catalog.
			explainBuffers(t, conn, "SELECT * FROM "+schema+"."+fmt.Sprintf(call, pageSize))
			costs[name] = explainBuffers(t, conn, "SELECT * FROM "+schema+"."+fmt.Sprintf(call, pageSize))
		}
		return costs
	}
	measure() // plans the pages on an empty log
	grow(2_000)
	small := measure()
	grow(20_000)
	large := measure()
	for name := range pages {
		t.Logf("%s: a page of %d touched %d buffers in a log of 2,000 events, %d in one of 20,000", name, pageSize, small[name], large[name])
		if large[name] > small[name]+pageSize {
			t.Errorf("%s: a page of %d touched %d buffers in a log of 20,000 events, against %d in one of 2,000",
				name, pageSize, large[name], small[name])
		}
	}

	// As the runtime reads them, too: every page, in order.
	events, err := es.ReadEvents(ctx, core.ReadCategory("account"))
	if err != nil || len(events) != appended/2 {
		t.Fatalf("category read: %d events, %v; want %d", len(events), err, appended/2)
	}
	for i, e := range events[1:] {
		if e.GlobalPosition <= events[i].GlobalPosition {
			t.Fatalf("category read out of order at %d: %d after %d", i+1, e.GlobalPosition, events[i].GlobalPosition)
		}
	}
}

// A read on the pool fetches the next page while the caller works through
// the current one. A caller who stops early leaves no fetching behind, and
// one whose context ends part-way gets the context's error, never a read
// that ends early as if the log ended there.
func TestReadAheadStopsAndReportsErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry(), ReadPageSize: 10})
	batch := make([]core.Event, 100)
	for i := range batch {
		batch[i] = core.NewEvent(Deposited{Amount: 1})
	}
	if _, err := es.Append(ctx, "account-1", core.NoStream, batch...); err != nil {
		t.Fatal(err)
	}
	for _, q := range []core.StreamQuery{core.ReadAll(), core.ReadStream("account-1")} {
		labelled(t, func(labelledCtx context.Context) {
			read := 0
			for _, err := range es.Read(labelledCtx, q) {
				if err != nil {
					t.Fatal(err)
				}
				if read++; read == 15 {
					break
				}
			}
		})
		waitNoGoroutines(t)

		cancelled, cancel := context.WithCancel(ctx)
		read, sawErr := 0, error(nil)
		for _, err := range es.Read(cancelled, q) {
			if err != nil {
				sawErr = err
				break
			}
			if read++; read == 15 {
				cancel()
			}
		}
		cancel()
		if !errors.Is(sawErr, context.Canceled) || read == len(batch) {
			t.Errorf("%+v: a read cancelled after 15 events read %d and ended with %v, want context.Canceled", q, read, sawErr)
		}
	}
}

// A read of the whole log or of a stream on the pool fetches two pages at
// once, as ranges of positions or versions: both are gapless, so the second
// page's start is known before the first arrives. Every event comes once,
// in order, from any start and with any limit; and should the log or the
// stream ever miss one (it never does: only a superuser could delete the
// row), the read goes on by keyset instead of repeating or skipping events.
func TestReadByRanges(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		query func(from int64, limit int) core.StreamQuery
		key   func(*core.RecordedEvent) int64
		gap   string // SQL deleting the 35th event of the read, %s is the store's schema
	}{
		{
			name: "whole log",
			query: func(from int64, limit int) core.StreamQuery {
				q := core.ReadAll()
				q.FromPosition, q.Limit = from, limit
				return q
			},
			key: func(e *core.RecordedEvent) int64 { return e.GlobalPosition },
			// The batch is one run: split it into two around position 35.
			gap: `WITH run AS (DELETE FROM %[1]s.event_log WHERE global_position = 1 RETURNING *)
				INSERT INTO %[1]s.event_log (global_position, event_count, stream_id, first_version, category, bucket)
				SELECT 1, 34, stream_id, 1, category, bucket FROM run
				UNION ALL SELECT 36, 60, stream_id, 36, category, bucket FROM run`,
		},
		{
			name: "stream",
			query: func(from int64, limit int) core.StreamQuery {
				q := core.ReadStream("account-1")
				q.FromVersion, q.Limit = from, limit
				return q
			},
			key: func(e *core.RecordedEvent) int64 { return e.StreamVersion },
			gap: "DELETE FROM %s.events WHERE stream_id = 'account-1' AND stream_version = 35",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry(), ReadPageSize: 10})
			batch := make([]core.Event, 95)
			for i := range batch {
				batch[i] = core.NewEvent(Deposited{Amount: int64(i)})
			}
			if _, err := es.Append(ctx, "account-1", core.NoStream, batch...); err != nil {
				t.Fatal(err)
			}
			check := func(from int64, limit int, want []int64) {
				t.Helper()
				events, err := es.ReadEvents(ctx, c.query(from, limit))
				if err != nil {
					t.Fatalf("from %d, limit %d: %v", from, limit, err)
				}
				got := make([]int64, len(events))
				for i, e := range events {
					got[i] = c.key(e)
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("from %d, limit %d: read %v, want %v", from, limit, got, want)
				}
			}
			keys := func(from, to int64, except ...int64) []int64 {
				var out []int64
				for k := from; k <= to; k++ {
					if !slices.Contains(except, k) {
						out = append(out, k)
					}
				}
				return out
			}
			for _, from := range []int64{0, 1, 7, 9, 10, 11, 20, 90, 95} {
				check(from, 0, keys(max(from, 1), 95))
				check(from, 15, keys(max(from, 1), min(95, max(from, 1)+14)))
			}
			check(96, 0, nil)
			for _, limit := range []int{1, 9, 10, 11, 20, 25, 95, 200} {
				check(3, limit, keys(3, min(95, int64(2+limit))))
			}

			if _, err := pgenv.Pool(t).Exec(ctx, fmt.Sprintf(c.gap, pgx.Identifier{es.Schema()}.Sanitize())); err != nil {
				t.Fatal(err)
			}
			check(0, 0, keys(1, 95, 35))
		})
	}
}

// A stream page reads the range of versions it can hold, and reads on past
// it only for what the range lacked: a type filter that leaves the range
// empty, the stream's end, or versions missing at the range's end (which
// only a superuser could delete). None of them may cut a read short.
func TestStreamPagesReadPastTheirRange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry(), ReadPageSize: 10})
	events := make([]core.Event, 0, 28)
	for i := range 25 {
		events = append(events, core.NewEvent(Deposited{Amount: int64(i + 1)}))
	}
	for range 3 {
		events = append(events, core.NewEvent(Withdrawn{Amount: 1}))
	}
	if _, err := es.Append(ctx, "account-1", core.NoStream, events...); err != nil {
		t.Fatal(err)
	}
	versions := func(q core.StreamQuery) []int64 {
		t.Helper()
		read, err := es.ReadEvents(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, e := range read {
			got = append(got, e.StreamVersion)
		}
		return got
	}
	span := func(from, to int64) []int64 {
		var out []int64
		for v := from; v <= to; v++ {
			out = append(out, v)
		}
		return out
	}

	q := core.ReadStream("account-1")
	q.EventTypes = []string{"account.withdrawn"}
	if diff := cmp.Diff([]int64{26, 27, 28}, versions(q)); diff != "" {
		t.Errorf("withdrawals (-want +got):\n%s", diff)
	}
	q.FromVersion = 27
	if diff := cmp.Diff([]int64{27, 28}, versions(q)); diff != "" {
		t.Errorf("withdrawals from 27 (-want +got):\n%s", diff)
	}
	// Backward, a page's range ends at the stream's last version (or the
	// version asked from), and a filter that empties it reads on below.
	q = core.ReadStream("account-1")
	q.Direction, q.EventTypes = core.Backward, []string{"account.deposited"}
	if diff := cmp.Diff(reversed(span(1, 25)), versions(q)); diff != "" {
		t.Errorf("deposits backward (-want +got):\n%s", diff)
	}
	q.FromVersion, q.Limit = 12, 3
	if diff := cmp.Diff([]int64{12, 11, 10}, versions(q)); diff != "" {
		t.Errorf("deposits backward from 12, limit 3 (-want +got):\n%s", diff)
	}

	superuserExec(t, fmt.Sprintf(`DELETE FROM %s.events WHERE stream_id = 'account-1' AND stream_version BETWEEN 8 AND 10`,
		pgx.Identifier{es.Schema()}.Sanitize()))
	want := append(span(1, 7), span(11, 28)...)
	if diff := cmp.Diff(want, versions(core.ReadStream("account-1"))); diff != "" {
		t.Errorf("after deleting versions 8..10 (-want +got):\n%s", diff)
	}
	q = core.ReadStream("account-1")
	q.FromVersion, q.Limit = 5, 6
	if diff := cmp.Diff([]int64{5, 6, 7, 11, 12, 13}, versions(q)); diff != "" {
		t.Errorf("from 5, limit 6 (-want +got):\n%s", diff)
	}
	q.Direction, q.FromVersion, q.Limit = core.Backward, 14, 6
	if diff := cmp.Diff([]int64{14, 13, 12, 11, 7, 6}, versions(q)); diff != "" {
		t.Errorf("backward from 14, limit 6 (-want +got):\n%s", diff)
	}
	q.FromVersion, q.Limit = 0, 0
	if diff := cmp.Diff(reversed(want), versions(q)); diff != "" {
		t.Errorf("backward after deleting versions 8..10 (-want +got):\n%s", diff)
	}
}

func reversed(versions []int64) []int64 {
	out := slices.Clone(versions)
	slices.Reverse(out)
	return out
}
