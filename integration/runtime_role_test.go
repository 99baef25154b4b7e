package integration_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

// newRuntimeRole creates a login role with nothing but PUBLIC's privileges,
// dropped with what it was granted when t ends, and a pool of up to maxConns
// connections logged in as it.
func newRuntimeRole(t *testing.T, maxConns int32) (string, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	var random [6]byte
	if _, err := rand.Read(random[:]); err != nil {
		t.Fatal(err)
	}
	role := "mire_runtime_" + hex.EncodeToString(random[:])
	quoted := pgx.Identifier{role}.Sanitize()
	if _, err := pgenv.Pool(t).Exec(ctx, "CREATE ROLE "+quoted+" LOGIN PASSWORD '"+role+"'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, sql := range []string{"DROP OWNED BY " + quoted, "DROP ROLE " + quoted} {
			if _, err := pgenv.Pool(t).Exec(context.Background(), sql); err != nil {
				t.Errorf("%s: %v", sql, err)
			}
		}
	})
	config, err := pgxpool.ParseConfig(pgenv.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	config.ConnConfig.User, config.ConnConfig.Password = role, role
	config.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(ctx, config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return role, pool
}

// runtimeStore migrates a schema as the owner, grants a new runtime role its
// rights and returns the owner's store and a store on the runtime role's
// pool.
func runtimeStore(t *testing.T, maxConns int32) (owner, runtime *store.EventStore, role string, pool *pgxpool.Pool) {
	t.Helper()
	owner = pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	role, pool = newRuntimeRole(t, maxConns)
	if err := owner.GrantRuntime(context.Background(), role); err != nil {
		t.Fatalf("GrantRuntime: %v", err)
	}
	runtime, err := store.New(pool, &store.Config{Schema: owner.Schema(), Registry: bankRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return owner, runtime, role, pool
}

func assertSQLState(t *testing.T, err error, code, what string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != code {
		t.Errorf("%s: err = %v, want SQLSTATE %s", what, err, code)
	}
}

// The runtime role runs the whole API: appends alone, grouped and batched,
// in its own transactions and in scopes, retries, conflicts, reads of every
// kind, loads, saves, snapshots and sequencing (a Sequencer beside it).
func TestRuntimeRoleRunsTheAPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner, es, role, pool := runtimeStore(t, 8)
	if err := owner.GrantRuntime(ctx, role); err != nil {
		t.Fatalf("GrantRuntime again (idempotent): %v", err)
	}
	sequencer, err := store.NewSequencer(es, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sequencer.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer sequencer.Stop(ctx) //nolint:errcheck // stopped and checked below

	// Grouped single-event appends from many goroutines.
	const writers, appends = 16, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*appends)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range appends {
				if _, err := es.Append(ctx, fmt.Sprintf("account-%d", w%4), core.Any, core.NewEvent(Deposited{Amount: 1})); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("grouped append as the runtime role: %v", err)
	}

	// A batch on the pool, and one in a caller's transaction.
	if _, err := es.Append(ctx, "account-batch", core.NoStream,
		core.NewEvent(Opened{Owner: "ada"}), core.NewEvent(Deposited{Amount: 5})); err != nil {
		t.Fatalf("batch: %v", err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := es.AppendTx(ctx, tx, "account-batch", core.Exact(2),
		core.NewEvent(Deposited{Amount: 1}), core.NewEvent(Deposited{Amount: 2})); err != nil {
		t.Fatalf("batch in a transaction: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	// A conflict is explained, a retry answered as a duplicate.
	_, err = es.Append(ctx, "account-batch", core.Exact(1), core.NewEvent(Deposited{Amount: 1}))
	assertConflict(t, err, &core.VersionConflictError{StreamID: "account-batch", Expected: core.Exact(1), Actual: 4})
	// After a conflict a stream is hot: appends to it run the statements
	// that explain their own refusals (append_refusal inside), and the
	// runtime role may run those too.
	if _, err := es.Append(ctx, "account-hot", core.NoStream, core.NewEvent(Deposited{Amount: 1})); err != nil {
		t.Fatal(err)
	}
	_, err = es.Append(ctx, "account-hot", core.NoStream, core.Event{Data: Deposited{Amount: 1}, Metadata: core.EventMetadata{EventID: uuid.New()}})
	assertConflict(t, err, &core.VersionConflictError{StreamID: "account-hot", Expected: core.NoStream, Actual: 1})
	hotRetry := core.Event{Data: Deposited{Amount: 2}, Metadata: core.EventMetadata{EventID: uuid.New()}}
	if _, err := es.Append(ctx, "account-hot", core.Exact(1), hotRetry); err != nil {
		t.Fatalf("append to a hot stream as the runtime role: %v", err)
	}
	if again, err := es.Append(ctx, "account-hot", core.Exact(1), hotRetry); err != nil || !again.Duplicate {
		t.Fatalf("retry on a hot stream as the runtime role: %+v, %v; want a duplicate", again, err)
	}
	if _, err := es.Append(ctx, "account-hot", core.Any, core.NewEvent(Deposited{Amount: 3})); err != nil {
		t.Fatalf("Any append to a hot stream as the runtime role: %v", err)
	}
	retried := core.Event{Data: Deposited{Amount: 7}, Metadata: core.EventMetadata{EventID: uuid.New()}}
	first, err := es.Append(ctx, "account-retry", core.NoStream, retried)
	if err != nil {
		t.Fatal(err)
	}
	again, err := es.Append(ctx, "account-retry", core.NoStream, retried)
	if err != nil || !again.Duplicate || again.FromVersion != first.FromVersion {
		t.Fatalf("retry as the runtime role: %+v, %v; want a duplicate of %+v", again, err, first)
	}

	// Aggregates, scopes and snapshots.
	account, err := store.LoadOrNew[Account](ctx, es, "runtime")
	if err != nil {
		t.Fatal(err)
	}
	account.Record(Opened{Owner: "bob"})
	if _, err := store.Save(ctx, es, account); err != nil {
		t.Fatalf("save: %v", err)
	}
	if err := es.InScope(ctx, func(scope *store.Scope) error {
		locked, err := store.LoadForUpdate[Account](ctx, scope, "runtime")
		if err != nil {
			return err
		}
		locked.Record(Deposited{Amount: 3})
		_, err = store.Save(ctx, scope, locked)
		return err
	}); err != nil {
		t.Fatalf("scope: %v", err)
	}
	saveDeposits(t, es, "runtime", 12)
	ledger, err := store.LoadSnapshotted[Ledger](ctx, es, "runtime")
	if err != nil || ledger.Version() != 12 || ledger.LoadInfo().SnapshotVersion != 12 || ledger.State().Balance != 12*13/2 {
		t.Fatalf("snapshotted load: version %d, %+v, balance %d, err %v; want 12 from the snapshot at 12", ledger.Version(), ledger.LoadInfo(), ledger.State().Balance, err)
	}

	// Reads of every kind, and the sequencer's work.
	if err := sequencer.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := es.Sequence(ctx); err != nil {
		t.Fatalf("sequence: %v", err)
	}
	const total = writers*appends + 4 + 3 + 1 + 2 + 12 // account-hot holds 3
	entries := readWholeLog(t, es)
	assertGapless(t, entries)
	if len(entries) != total {
		t.Fatalf("the log holds %d events, want %d", len(entries), total)
	}
	if head, err := es.Head(ctx); err != nil || head != total {
		t.Fatalf("Head = %d, %v; want %d", head, err, total)
	}
	category, err := es.ReadEvents(ctx, core.ReadCategory("account"))
	if err != nil || len(category) != total-12 {
		t.Fatalf("category read: %d events, %v; want %d", len(category), err, total-12)
	}
	// Backward, through the other two read functions: the whole log's
	// last 5 from the head, and the category's.
	for _, q := range []core.StreamQuery{core.ReadAll(), core.ReadCategory("account")} {
		q.Direction, q.Limit = core.Backward, 5
		last, err := es.ReadEvents(ctx, q)
		if err != nil || len(last) != 5 || (q.Category == "" && last[0].GlobalPosition != total) {
			t.Fatalf("backward read of %+v: %v, %v", q, last, err)
		}
		for i, e := range last[1:] {
			if e.GlobalPosition >= last[i].GlobalPosition {
				t.Fatalf("backward read of %+v out of order: %v", q, last)
			}
		}
	}
	if version, err := es.StreamVersion(ctx, "account-batch"); err != nil || version != 4 {
		t.Fatalf("StreamVersion = %d, %v; want 4", version, err)
	}
	backwardQuery := core.ReadStream("account-batch")
	backwardQuery.Direction = core.Backward
	backward, err := es.ReadEvents(ctx, backwardQuery)
	if err != nil || len(backward) != 4 || backward[0].GlobalPosition == 0 {
		t.Fatalf("backward stream read: %v, %v", backward, err)
	}
	// A type filter takes the statements that read past a page's range.
	for _, direction := range []core.ReadDirection{core.Forward, core.Backward} {
		filtered := core.ReadStream("account-batch")
		filtered.Direction, filtered.EventTypes = direction, []string{"account.deposited"}
		events, err := es.ReadEvents(ctx, filtered)
		if err != nil || len(events) != 3 || events[0].GlobalPosition == 0 { // versions 2..4
			t.Fatalf("filtered stream read, direction %v: %v, %v", direction, events, err)
		}
	}
}

// What the runtime role must not do: rewrite or hide history, forge an
// event the sequencer would never number, write the log or the sequencer's
// state, or grant itself more. Each statement fails with permission denied.
func TestRuntimeRoleCannotRewriteHistory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner, es, role, pool := runtimeStore(t, 2)
	if _, err := es.Append(ctx, "account-1", core.NoStream, core.NewEvent(Opened{Owner: "ada"})); err != nil {
		t.Fatal(err)
	}
	if _, err := es.Sequence(ctx); err != nil {
		t.Fatal(err)
	}
	schema := pgx.Identifier{owner.Schema()}.Sanitize()
	insert := `INSERT INTO %s.events (stream_id, stream_version, event_id, event_type, data%s)
	           VALUES ('account-1', 2, gen_random_uuid(), 'account.deposited', '{}'%s)`
	for _, sql := range []string{
		`UPDATE %s.events SET data = '{"owner": "mallory"}'`,
		`DELETE FROM %s.events`,
		`TRUNCATE %s.events`,
		fmt.Sprintf(insert, "%s", ", xid", ", '0'"),
		fmt.Sprintf(insert, "%s", ", xid", ", '999999999999'"),
		fmt.Sprintf(insert, "%s", ", seq", ", 1"),
		fmt.Sprintf(insert, "%s", ", recorded_at", ", now() - interval '1 year'"),
		`INSERT INTO %s.event_log (global_position, event_count, stream_id, first_version, bucket) VALUES (1000, 1, 'account-1', 1000, 0)`,
		`UPDATE %s.event_log SET global_position = global_position + 1`,
		`DELETE FROM %s.event_log`,
		`SELECT * FROM %s.sequencer_sweeps`,
		`INSERT INTO %s.sequencer_sweeps VALUES (1000, 0, pg_current_snapshot())`,
		`SELECT %s.restore_sequencer(1, 1)`,
		`SELECT %s.grant_runtime(current_user::regrole)`,
		`DELETE FROM %s.snapshots`,
		`UPDATE %s.schema_migrations SET version = 1`,
		`CREATE TABLE %s.shadow (id int)`,
		`SELECT setval(pg_get_serial_sequence('%s.events', 'seq'), 1)`,
	} {
		sql = fmt.Sprintf(sql, schema)
		_, err := pool.Exec(ctx, sql)
		assertSQLState(t, err, "42501", sql)
	}

	// Nothing changed: one event, at position 1.
	if diff := readWholeLog(t, owner); len(diff) != 1 || diff[0] != (positionedEvent{1, "account-1", 1}) {
		t.Fatalf("log after the attempts: %v, want only account-1 at 1", diff)
	}

	// Revoked, the role can no longer append.
	if err := owner.RevokeRuntime(ctx, role); err != nil {
		t.Fatalf("RevokeRuntime: %v", err)
	}
	_, err := es.Append(ctx, "account-1", core.Exact(1), core.NewEvent(Deposited{Amount: 1}))
	assertDbKind(t, err, core.DBPermissionDenied)
}

// run_start, which appends set so that a batch is one run of the log, is
// the runtime role's to write: whatever it writes there, every event it
// appends is numbered once, gapless, in its stream's order. A forged value
// can only cut runs shorter.
func TestRuntimeRoleRunStartCannotHideEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner, es, _, pool := runtimeStore(t, 2)
	// A real batch as the runtime role: run_start is granted.
	if _, err := es.Append(ctx, "account-1", core.NoStream, deposits(3)...); err != nil {
		t.Fatal(err)
	}
	schema := pgx.Identifier{owner.Schema()}.Sanitize()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	for _, forged := range []struct {
		stream   string
		version  int64
		runStart string
	}{
		{"account-1", 4, "1"}, // claims the first batch's run
		{"account-1", 5, "1"},
		{"account-1", 6, "100"}, // a run that does not exist
		{"account-2", 1, "-5"},
		{"account-1", 7, "NULL"},
		{"account-2", 2, "-5"}, // same claim, other stream in between
		{"account-3", 1, "9"},
		{"account-3", 2, "50"},
		{"account-3", 3, "9"}, // a gap in the claimed batch, another inside it
	} {
		sql := fmt.Sprintf(`INSERT INTO %s.events (stream_id, stream_version, event_id, event_type, data, run_start)
			VALUES ('%s', %d, gen_random_uuid(), 'account.deposited', '{"amount": 1}', %s)`,
			schema, forged.stream, forged.version, forged.runStart)
		if _, err := tx.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := es.Sequence(ctx); err != nil {
		t.Fatal(err)
	}
	entries := readWholeLog(t, owner)
	assertGapless(t, entries)
	want := []positionedEvent{
		{1, "account-1", 1}, {2, "account-1", 2}, {3, "account-1", 3},
		{4, "account-1", 4}, {5, "account-1", 5}, {6, "account-1", 6}, {7, "account-2", 1},
		{8, "account-1", 7}, {9, "account-2", 2}, {10, "account-3", 1}, {11, "account-3", 2}, {12, "account-3", 3},
	}
	if diff := cmp.Diff(want, entries); diff != "" {
		t.Fatalf("log (-want +got):\n%s", diff)
	}
}

// A batch appended in a caller's transaction that runs into a concurrent
// append of some of its versions stores part of itself. Taking that part
// back must not need DELETE, which the runtime role lacks: the append
// retries after the other commits, and the caller's transaction stays
// usable and commits everything once.
func TestRuntimeRolePartialBatchInTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, es, _, pool := runtimeStore(t, 4)
	if _, err := es.Append(ctx, "account-1", core.NoStream, core.NewEvent(Opened{Owner: "ada"})); err != nil {
		t.Fatal(err)
	}

	// Another writer holds version 2, uncommitted.
	other, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback(ctx) //nolint:errcheck // committed below
	if _, err := es.AppendTx(ctx, other, "account-1", core.Exact(1), core.NewEvent(Deposited{Amount: 100})); err != nil {
		t.Fatal(err)
	}

	// The caller's batch of three (versions 2-4 as it sees the stream)
	// waits on version 2; once the other commits, 3 and 4 are stored and 2
	// is not.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // committed below
	done := make(chan error, 1)
	var committed *core.CommittedEvents
	go func() {
		var err error
		committed, err = es.AppendTx(ctx, tx, "account-1", core.Any,
			core.NewEvent(Deposited{Amount: 1}), core.NewEvent(Deposited{Amount: 2}), core.NewEvent(Deposited{Amount: 3}))
		done <- err
	}()
	waitForLockWaiters(t, es, 1)
	if err := other.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("batch in the transaction: %v", err)
	}
	if committed.FromVersion != 3 || committed.ToVersion != 5 {
		t.Fatalf("batch stored at %d..%d, want 3..5 after the other writer's 2", committed.FromVersion, committed.ToVersion)
	}
	// The transaction is still usable.
	if _, err := es.AppendTx(ctx, tx, "account-1", core.Exact(5), core.NewEvent(Deposited{Amount: 4})); err != nil {
		t.Fatalf("append after the retried batch, same transaction: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	events, err := es.ReadEvents(ctx, core.ReadStream("account-1"))
	if err != nil {
		t.Fatal(err)
	}
	var amounts []int64
	for _, e := range events {
		var d Deposited
		if e.EventType == "account.deposited" {
			if err := json.Unmarshal(e.Data, &d); err != nil {
				t.Fatal(err)
			}
			amounts = append(amounts, d.Amount)
		}
	}
	if fmt.Sprint(amounts) != "[100 1 2 3 4]" || len(events) != 6 {
		t.Fatalf("stream holds %d events with deposits %v, want opened then [100 1 2 3 4]", len(events), amounts)
	}
}

// A connection's temporary table named event_log comes first in its
// search_path unless pg_temp is named last: the sequencer, run on that
// connection, would number events into it and store its snapshot, and they
// would be lost from the global log for good.
func TestSequencerIgnoresTemporaryTables(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// One connection, so the temporary tables and every sweep share it.
	owner, es, _, pool := runtimeStore(t, 1)
	schema := pgx.Identifier{owner.Schema()}.Sanitize()
	for _, sql := range []string{
		"CREATE TEMP TABLE event_log (LIKE " + schema + ".event_log INCLUDING ALL)",
		"CREATE TEMP TABLE events (LIKE " + schema + ".events INCLUDING ALL)",
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	for _, stream := range []string{"account-a", "account-b", "account-a"} {
		if _, err := es.Append(ctx, stream, core.Any, core.NewEvent(Deposited{Amount: 1})); err != nil {
			t.Fatal(err)
		}
	}
	if assigned, err := es.Sequence(ctx); err != nil || assigned != 3 {
		t.Fatalf("Sequence on the connection with temporary tables = %d, %v; want 3", assigned, err)
	}
	var shadowed int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_temp.event_log").Scan(&shadowed); err != nil || shadowed != 0 {
		t.Fatalf("the temporary event_log holds %d rows (%v), want none", shadowed, err)
	}
	want := []positionedEvent{{1, "account-a", 1}, {2, "account-b", 1}, {3, "account-a", 2}}
	if got := readWholeLog(t, owner); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("log read by another connection: %v, want %v", got, want)
	}
}
