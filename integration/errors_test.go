package integration_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

// assertDbKind fails t unless err is a *core.DatabaseError of kind want,
// matching core.ErrDatabase.
func assertDbKind(t *testing.T, err error, want core.DBErrorKind) core.DatabaseError {
	t.Helper()
	var dbErr *core.DatabaseError
	if !errors.As(err, &dbErr) {
		t.Fatalf("err = %v (%T), want *core.DatabaseError of kind %s", err, err, want)
	}
	if kind, ok := core.DBKind(err); !ok || kind != want {
		t.Errorf("core.DBKind(err) = %s, %v; want %s, true (err: %v)", kind, ok, want, err)
	}
	if !errors.Is(err, core.ErrDatabase) {
		t.Errorf("errors.Is(%v, core.ErrDatabase) = false", err)
	}
	if dbErr.Op == "" {
		t.Errorf("DatabaseError.Op is empty: %v", err)
	}
	return *dbErr
}

// waitForLockWaiters blocks until n backends are waiting for a lock while
// running a statement of es (its schema name appears in the statement).
func waitForLockWaiters(t *testing.T, es *store.EventStore, n int) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting int
		err := pgenv.Pool(t).QueryRow(ctx, `
SELECT count(*) FROM pg_stat_activity
WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid() AND strpos(query, $1) > 0`,
			es.Schema()).Scan(&waiting)
		if err != nil {
			t.Fatalf("polling pg_stat_activity: %v", err)
		}
		if waiting >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d backends waiting for a lock in schema %s after 30s, want %d", waiting, es.Schema(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// terminateBackend kills the server process of a connection and waits until
// it is gone.
func terminateBackend(t *testing.T, pid uint32) {
	t.Helper()
	ctx := context.Background()
	var signalled bool
	if err := pgenv.Pool(t).QueryRow(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&signalled); err != nil || !signalled {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, signalled, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var alive bool
		if err := pgenv.Pool(t).QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", pid).Scan(&alive); err != nil {
			t.Fatal(err)
		}
		if !alive {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend %d still alive 30s after pg_terminate_backend", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func backendPID(t *testing.T, tx pgx.Tx) uint32 {
	t.Helper()
	var pid uint32
	if err := tx.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

// Every operation on a store whose schema was never migrated fails with
// ErrSchemaNotMigrated and a hint to run Migrate, and creates nothing.
func TestSchemaNotMigrated(t *testing.T) {
	t.Parallel()
	for _, variant := range []struct {
		name         string
		createSchema bool
	}{
		{"schema missing", false},
		{"schema empty", true},
	} {
		t.Run(variant.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			pool := pgenv.Pool(t)
			schemaName := pgenv.NewSchemaName(t)
			if variant.createSchema {
				if _, err := pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schemaName}.Sanitize()); err != nil {
					t.Fatal(err)
				}
			}
			es, err := store.New(pool, &store.Config{Schema: schemaName, Registry: bankRegistry()})
			if err != nil {
				t.Fatal(err)
			}
			readErr := func(q core.StreamQuery) error {
				_, err := es.ReadEvents(ctx, q)
				return err
			}
			ops := []struct {
				name string
				run  func() error
			}{
				{"append", func() error {
					_, err := es.Append(ctx, "account-1", core.Any, core.NewEvent(Deposited{Amount: 1}))
					return err
				}},
				{"append tx", func() error {
					tx, err := pool.Begin(ctx)
					if err != nil {
						return err
					}
					defer tx.Rollback(ctx) //nolint:errcheck // read-only use
					_, err = es.AppendTx(ctx, tx, "account-1", core.NoStream, core.NewEvent(Deposited{Amount: 1}))
					return err
				}},
				{"save", func() error {
					root := core.NewRoot[*Account]("1", &Account{})
					root.Record(Deposited{Amount: 1})
					_, err := store.Save(ctx, es, root)
					return err
				}},
				{"read stream", func() error { return readErr(core.ReadStream("account-1")) }},
				{"read stream backward", func() error { return readErr(core.StreamQuery{StreamID: "account-1", Direction: core.Backward}) }},
				{"read category", func() error { return readErr(core.ReadCategory("account")) }},
				{"read all", func() error { return readErr(core.ReadAll()) }},
				{"read all without sequencing", func() error {
					tx, err := pool.Begin(ctx)
					if err != nil {
						return err
					}
					defer tx.Rollback(ctx) //nolint:errcheck // read-only use
					for _, err := range es.ReadTx(ctx, tx, core.ReadAll()) {
						if err != nil {
							return err
						}
					}
					return nil
				}},
				{"load", func() error { _, err := store.Load[Account](ctx, es, "1"); return err }},
				{"load or new", func() error { _, err := store.LoadOrNew[Account](ctx, es, "1"); return err }},
				{"stream version", func() error { _, err := es.StreamVersion(ctx, "account-1"); return err }},
				{"sequence", func() error { _, err := es.Sequence(ctx); return err }},
				{"head", func() error { _, err := es.Head(ctx); return err }},
			}
			for _, op := range ops {
				err := op.run()
				if !errors.Is(err, core.ErrSchemaNotMigrated) {
					t.Errorf("%s: err = %v, want ErrSchemaNotMigrated", op.name, err)
					continue
				}
				dbErr := assertDbKind(t, err, core.DBSchemaNotMigrated)
				if !strings.Contains(dbErr.Hint, "Migrate") || !strings.Contains(dbErr.Hint, schemaName) {
					t.Errorf("%s: hint %q should name Migrate and the schema", op.name, dbErr.Hint)
				}
				if !strings.Contains(err.Error(), "Migrate") {
					t.Errorf("%s: message %q has no hint to run Migrate", op.name, err)
				}
				if dbErr.Kind.Transient() {
					t.Errorf("%s: a missing schema is reported as transient", op.name)
				}
			}

			var tables int
			if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = $1", schemaName).Scan(&tables); err != nil {
				t.Fatal(err)
			}
			var schemaExists bool
			if err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schemaName).Scan(&schemaExists); err != nil {
				t.Fatal(err)
			}
			if tables != 0 || schemaExists != variant.createSchema {
				t.Errorf("after failed operations: %d tables, schema exists %v; want none created", tables, schemaExists)
			}
		})
	}
}

// A connection lost in the middle of a caller's transaction fails the next
// append with DBConnection, the transaction's earlier append is not stored,
// and the store recovers on a fresh connection.
func TestConnectionLostDuringTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgenv.NewPool(t, 1)
	es := pgenv.NewStore(t, pool, nil)
	if _, err := es.Append(ctx, "account-1", core.NoStream, core.NewEvent(Opened{Owner: "ada"})); err != nil {
		t.Fatal(err)
	}

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // the connection is dead; cleanup only
	if _, err := es.AppendTx(ctx, tx, "account-1", core.Exact(1), core.NewEvent(Deposited{Amount: 10})); err != nil {
		t.Fatal(err)
	}
	terminateBackend(t, backendPID(t, tx))

	committed, err := es.AppendTx(ctx, tx, "account-1", core.Exact(2), core.NewEvent(Deposited{Amount: 20}))
	if committed != nil {
		t.Errorf("committed = %+v, want nil", committed)
	}
	dbErr := assertDbKind(t, err, core.DBConnection)
	if !dbErr.Kind.Transient() {
		t.Errorf("DBConnection is not transient")
	}
	if err := tx.Commit(ctx); err == nil {
		t.Fatal("commit on a terminated connection succeeded")
	}

	// Observed through the shared pool: only the committed event exists.
	assertStreamVersion(t, es, "account-1", 1)
	assertRowCounts(t, es, rowCounts{Streams: 1, Events: 1})

	// The pool replaces the dead connection.
	recoverCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	committed, err = es.Append(recoverCtx, "account-1", core.Exact(1), core.NewEvent(Deposited{Amount: 30}))
	if err != nil {
		t.Fatalf("append after reconnect: %v", err)
	}
	if committed.ToVersion != 2 {
		t.Errorf("ToVersion = %d, want 2", committed.ToVersion)
	}
}

// A context already ended fails every operation with DBTimeout, matching
// the context's error, and writes nothing.
func TestContextAlreadyDone(t *testing.T) {
	t.Parallel()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()

	for _, c := range []struct {
		name  string
		ctx   context.Context
		cause error
	}{
		{"cancelled", cancelled, context.Canceled},
		{"deadline exceeded", expired, context.DeadlineExceeded},
	} {
		ctx := c.ctx
		ops := map[string]func() error{
			"append": func() error {
				_, err := es.Append(ctx, "account-1", core.Any, core.NewEvent(Deposited{Amount: 1}))
				return err
			},
			"read stream": func() error { _, err := es.ReadEvents(ctx, core.ReadStream("account-1")); return err },
			"read all":    func() error { _, err := es.ReadEvents(ctx, core.ReadAll()); return err },
			"load":        func() error { _, err := store.Load[Account](ctx, es, "1"); return err },
		}
		for name, run := range ops {
			err := run()
			if !errors.Is(err, c.cause) {
				t.Errorf("%s, %s: err = %v, want it to match %v", c.name, name, err, c.cause)
				continue
			}
			assertDbKind(t, err, core.DBTimeout)
		}
	}
	assertRowCounts(t, es, rowCounts{})
}

// startBlockedAppend holds the lock of stream "account-1" (at version 1) in
// a transaction and starts an Any append of events to it under ctx, which
// waits for the lock. It returns the holder and the append's result.
func startBlockedAppend(ctx context.Context, t *testing.T, es *store.EventStore, events ...core.Event) (pgx.Tx, <-chan error) {
	t.Helper()
	bg := context.Background()
	if _, err := es.Append(bg, "account-1", core.NoStream, core.NewEvent(Opened{Owner: "ada"})); err != nil {
		t.Fatal(err)
	}
	holder, err := es.Pool().Begin(bg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Rollback(bg) }) //nolint:errcheck // usually ended by the test
	if _, err := es.AppendTx(bg, holder, "account-1", core.Exact(1), core.NewEvent(Deposited{Amount: 1})); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := es.Append(ctx, "account-1", core.Any, events...)
		done <- err
	}()
	waitForLockWaiters(t, es, 1)
	return holder, done
}

// waitForSchemaQuiet blocks until no backend is running a statement of es,
// so that whatever an abandoned statement was going to do is done.
func waitForSchemaQuiet(t *testing.T, es *store.EventStore) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var busy int
		err := pgenv.Pool(t).QueryRow(ctx, `
SELECT count(*) FROM pg_stat_activity
WHERE state <> 'idle' AND pid <> pg_backend_pid() AND strpos(query, $1) > 0`, es.Schema()).Scan(&busy)
		if err != nil {
			t.Fatal(err)
		}
		if busy == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d backends still busy in schema %s after 30s", busy, es.Schema())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// An append blocked behind another writer's lock returns when its context
// ends, with DBTimeout matching the context's error.
func TestContextEndsWhileAppendWaits(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		cause error
	}{
		{"cancelled", context.Canceled},
		{"deadline exceeded", context.DeadlineExceeded},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			es := pgenv.NewStore(t, pgenv.NewPool(t, 4), nil)
			ctx, cancel := context.WithCancel(context.Background())
			if errors.Is(c.cause, context.DeadlineExceeded) {
				ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
			}
			defer cancel()
			holder, done := startBlockedAppend(ctx, t, es, core.NewEvent(Deposited{Amount: 2}))
			if errors.Is(c.cause, context.Canceled) {
				cancel()
			}
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("append still blocked 30s after its context ended")
			}
			if !errors.Is(err, c.cause) {
				t.Fatalf("err = %v, want it to match %v", err, c.cause)
			}
			if dbErr := assertDbKind(t, err, core.DBTimeout); dbErr.Kind.Transient() {
				t.Error("DBTimeout reported as transient")
			}
			// The holder still has the lock: the abandoned append cannot
			// have written anything yet.
			assertStreamVersion(t, es, "account-1", 1)
			if err := holder.Rollback(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// An append that cannot take the stream's lock within lock_timeout fails
// with DBLockNotAvailable, a transient kind, and stores nothing.
func TestLockTimeout(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name     string
		existing bool
		expected core.ExpectedVersion
	}{
		{"existing stream, exact", true, core.Exact(1)},
		{"existing stream, any", true, core.Any},
		{"existing stream, stream exists", true, core.StreamExists},
		{"new stream, no stream", false, core.NoStream},
		{"new stream, any", false, core.Any},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			es := pgenv.NewStore(t, pgenv.NewPool(t, 4), nil)
			var version int64
			if c.existing {
				version = 1
				if _, err := es.Append(ctx, "account-1", core.NoStream, core.NewEvent(Opened{Owner: "ada"})); err != nil {
					t.Fatal(err)
				}
			}
			holder, err := es.Pool().Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer holder.Rollback(ctx) //nolint:errcheck // rolled back below
			if _, err := es.AppendTx(ctx, holder, "account-1", core.Exact(version), core.NewEvent(Deposited{Amount: 1})); err != nil {
				t.Fatal(err)
			}

			tx, err := es.Pool().Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx) //nolint:errcheck // the tx is aborted
			if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '50ms'"); err != nil {
				t.Fatal(err)
			}
			committed, err := es.AppendTx(ctx, tx, "account-1", c.expected, core.NewEvent(Deposited{Amount: 2}))
			if committed != nil {
				t.Errorf("committed = %+v, want nil", committed)
			}
			dbErr := assertDbKind(t, err, core.DBLockNotAvailable)
			if !dbErr.Kind.Transient() {
				t.Error("DBLockNotAvailable is not transient")
			}
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			if err := holder.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			assertStreamVersion(t, es, "account-1", version)
			assertRowCounts(t, es, rowCounts{Streams: version, Events: version})
		})
	}
}

// A version conflict inside a caller's transaction is a result: the
// transaction stays usable, later appends in it succeed, and its commit
// stores exactly those.
func TestConflictDoesNotAbortTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	if _, err := es.Append(ctx, "account-1", core.NoStream, core.NewEvent(Opened{Owner: "ada"})); err != nil {
		t.Fatal(err)
	}
	stale, err := store.Load[Account](ctx, es, "1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := es.Append(ctx, "account-1", core.Exact(1), core.NewEvent(Deposited{Amount: 5})); err != nil {
		t.Fatal(err)
	}

	tx, err := pgenv.Pool(t).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // committed below

	_, err = es.AppendTx(ctx, tx, "account-1", core.Exact(5), core.NewEvent(Deposited{Amount: 1}))
	assertConflict(t, err, &core.VersionConflictError{StreamID: "account-1", Expected: core.Exact(5), Actual: 2})
	_, err = es.AppendTx(ctx, tx, "account-1", core.NoStream, core.NewEvent(Deposited{Amount: 1}))
	assertConflict(t, err, &core.VersionConflictError{StreamID: "account-1", Expected: core.NoStream, Actual: 2})
	_, err = es.AppendTx(ctx, tx, "account-2", core.StreamExists, core.NewEvent(Deposited{Amount: 1}))
	assertConflict(t, err, &core.VersionConflictError{StreamID: "account-2", Expected: core.StreamExists, Actual: 0})
	stale.Record(Withdrawn{Amount: 1})
	_, err = store.Save(ctx, es.WithTx(tx), stale)
	assertConflict(t, err, &core.VersionConflictError{StreamID: "account-1", Expected: core.Exact(1), Actual: 2})
	if stale.Version() != 1 || len(stale.Pending()) != 1 {
		t.Errorf("stale root after a failed save: version %d, %d pending; want 1, 1", stale.Version(), len(stale.Pending()))
	}

	var one int
	if err := tx.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("tx aborted by a version conflict: %v", err)
	}
	if _, err := es.AppendTx(ctx, tx, "account-1", core.Exact(2), core.NewEvent(Withdrawn{Amount: 2})); err != nil {
		t.Fatalf("append after conflicts: %v", err)
	}
	if _, err := es.AppendTx(ctx, tx, "account-2", core.NoStream, core.NewEvent(Opened{Owner: "bob"})); err != nil {
		t.Fatalf("append to another stream after conflicts: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}

	assertStreamVersion(t, es, "account-1", 3)
	assertStreamVersion(t, es, "account-2", 1)
	assertRowCounts(t, es, rowCounts{Streams: 2, Events: 4})
	root, err := store.Load[Account](ctx, es, "1")
	if err != nil {
		t.Fatal(err)
	}
	if got := root.State().Balance; got != 3 {
		t.Errorf("balance %d, want 3", got)
	}
}
