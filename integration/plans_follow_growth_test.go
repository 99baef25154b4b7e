package integration_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
)

// With autovacuum off, the statistics the store's plans are made from are
// refreshed after a sweep each time the events table has doubled since they
// were taken, so that no cached plan outlives a doubling of the table (see
// migration 13); between doublings they are left alone. The sweeps run as
// the runtime role, which may not ANALYZE the tables itself, and a refresh
// that fails does not fail the sweep.
func TestSweepsRefreshStatisticsAsTheLogDoubles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner, runtime, role, _ := runtimeStore(t, 4)
	tables := map[string]string{}
	for _, table := range []string{"events", "event_log", "snapshots"} {
		tables[table] = pgx.Identifier{owner.Schema(), table}.Sanitize()
		if _, err := owner.Pool().Exec(ctx, "ALTER TABLE "+tables[table]+" SET (autovacuum_enabled = false)"); err != nil {
			t.Fatal(err)
		}
	}
	statistics := func() (relpages int, pages int) { return tableStatistics(t, owner.Pool(), tables["events"]) }
	// appendSome appends n events (rounded up to tens) of about 1 KB, in
	// batches of 10, and sweeps as the runtime role.
	appended := 0
	appendSome := func(n int) {
		t.Helper()
		for end := appended + n; appended < end; appended += 10 {
			batch := make([]core.Event, 10)
			for i := range batch {
				batch[i] = core.NewEvent(Opened{Owner: strings.Repeat(uuid.NewString(), 28)})
			}
			if _, err := runtime.Append(ctx, fmt.Sprintf("account-%d", appended), core.NoStream, batch...); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := runtime.Sequence(ctx); err != nil {
			t.Fatal(err)
		}
	}

	appendSome(10)
	relpages, pages := statisticsFollowDoubling(t, 6, statistics, func(divisor int) { appendSome(appended / divisor) })
	t.Logf("events table of %d pages after %d events, statistics of %d pages", pages, appended, relpages)

	// A refresh that fails leaves the sweep's numbering standing: here the
	// runtime role may no longer run it.
	if _, err := owner.Pool().Exec(ctx, "REVOKE EXECUTE ON FUNCTION "+pgx.Identifier{owner.Schema(), "refresh_statistics"}.Sanitize()+"() FROM "+pgx.Identifier{role}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	for pages < 2*relpages {
		appendSome(appended / 10)
		relpages, pages = statistics()
	}
	if head, err := runtime.Head(ctx); err != nil || head != int64(appended) {
		t.Fatalf("head %d, %v after a sweep whose refresh failed; want %d", head, err, appended)
	}
	if relpages >= pages {
		t.Fatalf("statistics of %d pages, table of %d: taken although the refresh was refused", relpages, pages)
	}
}

// The saga table's statistics are refreshed as it doubles, as the log's
// are (migration 14), by the sweeps the runtime role runs: sagas append
// their journals, so sweeps keep numbering events while sagas accumulate.
// Between doublings they are left alone.
func TestSweepsRefreshSagaStatisticsAsSagasAccumulate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner, runtime, _, _ := runtimeStore(t, 4)
	sagas := pgx.Identifier{owner.Schema(), "saga_instances"}.Sanitize()
	if _, err := owner.Pool().Exec(ctx, "ALTER TABLE "+sagas+" SET (autovacuum_enabled = false)"); err != nil {
		t.Fatal(err)
	}
	statistics := func() (relpages int, pages int) { return tableStatistics(t, owner.Pool(), sagas) }
	// addSagas adds n ended sagas (their rows only: the table is what the
	// test is about) and sweeps a journal entry as the runtime role.
	added := 0
	addSagas := func(n int) {
		t.Helper()
		_, err := owner.Pool().Exec(ctx, "INSERT INTO "+sagas+` (name, id, stream_id, correlation_id, definition_version, status)
			SELECT 'order', 'o-' || n, 'saga.order-o-' || n, gen_random_uuid(), 1, 'completed'
			FROM generate_series($1::int + 1, $1::int + $2::int) AS n`, added, n)
		if err != nil {
			t.Fatal(err)
		}
		added += n
		if _, err := runtime.Append(ctx, fmt.Sprintf("saga.order-o-%d", added), core.Any, core.NewEvent(Deposited{Amount: 1})); err != nil {
			t.Fatal(err)
		}
		if _, err := runtime.Sequence(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// No saga yet: the empty table is never analyzed.
	addSagas(0)
	if relpages, pages := statistics(); relpages != 0 || pages != 0 {
		t.Fatalf("no saga: statistics of %d pages, table of %d; want none taken", relpages, pages)
	}
	addSagas(100)
	relpages, pages := statisticsFollowDoubling(t, 5, statistics, func(divisor int) { addSagas(added / divisor) })
	t.Logf("saga table of %d pages after %d sagas, statistics of %d pages", pages, added, relpages)
}

// tableStatistics returns the size in pages table had when its statistics
// were last taken (pg_class.relpages, which only ANALYZE and VACUUM set)
// and its size now.
func tableStatistics(t *testing.T, pool *pgxpool.Pool, table string) (relpages int, pages int) {
	t.Helper()
	err := pool.QueryRow(context.Background(), "SELECT relpages, pg_relation_size(oid) / current_setting('block_size')::int FROM pg_class WHERE oid = $1::regclass",
		table).Scan(&relpages, &pages)
	if err != nil {
		t.Fatal(err)
	}
	return relpages, pages
}

// statisticsFollowDoubling checks that the first sweep after a table's
// first rows took its statistics, then grows it for rounds rounds and
// checks that the sweeps leave them alone while it has grown by half, and
// retake them once it has doubled. statistics is tableStatistics of the
// table; grow(d) grows it by a d-th of what it holds and sweeps. It
// returns the table's statistics and size at the end.
func statisticsFollowDoubling(t *testing.T, rounds int, statistics func() (relpages, pages int), grow func(divisor int)) (relpages, pages int) {
	t.Helper()
	relpages, pages = statistics()
	if relpages != pages || pages == 0 {
		t.Fatalf("after the first sweep: statistics of %d pages, table of %d; want them taken by the sweep", relpages, pages)
	}
	for round := range rounds {
		// Half as much again: the sweep leaves the statistics alone.
		grow(2)
		before := relpages
		relpages, pages = statistics()
		if pages < 2*before && relpages != before {
			t.Fatalf("round %d: statistics retaken at %d pages, taken at %d before; want them kept below %d pages", round, pages, before, 2*before)
		}
		// Past doubling it: the sweep takes them again.
		for pages < 2*before {
			grow(10)
			relpages, pages = statistics()
		}
		if relpages != pages {
			t.Fatalf("round %d: the table is %d pages, its statistics say %d (taken at %d before); want them retaken once it doubled", round, pages, relpages, before)
		}
	}
	return relpages, pages
}
