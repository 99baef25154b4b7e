package integration_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

func randomName(t *testing.T, prefix string) string {
	t.Helper()
	var random [6]byte
	if _, err := rand.Read(random[:]); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(random[:])
}

// newAppPool returns a pool of its own whose connections carry a unique
// application_name, for finding them in pg_stat_activity, and log in as user
// when it is not empty.
func newAppPool(t *testing.T, maxConns int32, user string) (*pgxpool.Pool, string) {
	t.Helper()
	config, err := pgxpool.ParseConfig(pgenv.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	config.MaxConns = maxConns
	if user != "" {
		config.ConnConfig.User = user
	}
	appName := randomName(t, "mire_test_app_")
	config.ConnConfig.RuntimeParams["application_name"] = appName
	pool, err := pgxpool.NewWithConfig(context.Background(), config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, appName
}

func adminExec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := pgenv.Pool(t).Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func quoteIdent(name string) string { return pgx.Identifier{name}.Sanitize() }

// catalogOf lists a schema's relations, columns (with type and collation)
// and functions, sorted, so that two schemas can be compared.
func catalogOf(t *testing.T, schemaName string) []string {
	t.Helper()
	rows, err := pgenv.Pool(t).Query(context.Background(), `
SELECT 'relation ' || c.relname || ' ' || c.relkind::text
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = $1
UNION ALL
SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || coalesce(' collate ' || co.collname, '') || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
FROM pg_attribute AS a
JOIN pg_class AS c ON c.oid = a.attrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_collation AS co ON co.oid = a.attcollation AND a.attcollation <> 0
WHERE n.nspname = $1 AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
-- Types of the schema (log_runs takes one) are named with it: leave it out.
-- A digest of the definition tells a migration that replaced a function's
-- body or settings from one that did not; the schema's name (in
-- search_path) is left out of it too.
SELECT 'function ' || p.proname || '(' || replace(pg_get_function_identity_arguments(p.oid), $1 || '.', '') || ') '
       || md5(replace(p.prosrc || ' ' || coalesce(array_to_string(p.proconfig, ','), '') || ' ' || p.prosecdef::text,
                      $1, '<schema>'))
FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
WHERE n.nspname = $1`, schemaName)
	if err != nil {
		t.Fatal(err)
	}
	objects, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(objects)
	return objects
}

// migratedCatalog is the catalog of a schema migrated to the latest version
// in one go.
func migratedCatalog(t *testing.T) []string {
	t.Helper()
	return catalogOf(t, pgenv.NewStore(t, nil, nil).Schema())
}

// markDirty records version as the schema's migration version, dirty, as
// golang-migrate leaves it when a migration's connection is lost.
func markDirty(t *testing.T, schemaName string, version int) {
	t.Helper()
	table := quoteIdent(schemaName) + "." + quoteIdent(store.MigrationsTable)
	adminExec(t, "TRUNCATE "+table)
	adminExec(t, "INSERT INTO "+table+" (version, dirty) VALUES ($1, true)", version)
}

func assertVersion(t *testing.T, es *store.EventStore, want uint) {
	t.Helper()
	version, dirty, err := es.MigrationVersion(context.Background())
	if err != nil || version != want || dirty {
		t.Fatalf("MigrationVersion = %d, dirty %v, err %v; want %d, clean", version, dirty, err, want)
	}
}

// For every migration V, a dirty version is resolved from the catalog
// whatever the interrupted migration did: an up migration to V that rolled
// back (the schema is at V-1: V runs again) or committed (at V: V is marked
// done), and a down migration from V that rolled back (dirty V-1, the schema
// at V). The schema then ends exactly as a normal migration leaves it. A
// migration that mire has no catalog objects for fails here.
func TestMigrateResolvesDirtyVersionOfEveryMigration(t *testing.T) {
	t.Parallel()
	latest := int(latestMigration(t))
	want := migratedCatalog(t)
	type dirtyCase struct {
		name  string
		at    int // the version the schema is at
		dirty int // the dirty version recorded; -1 is golang-migrate's "none"
	}
	var cases []dirtyCase
	for v := 1; v <= latest; v++ {
		cases = append(cases,
			dirtyCase{fmt.Sprintf("up to %d rolled back", v), v - 1, v},
			dirtyCase{fmt.Sprintf("up to %d committed", v), v, v},
			dirtyCase{fmt.Sprintf("down from %d rolled back", v), v, v - 1},
		)
	}
	for _, c := range cases {
		if c.dirty == 0 {
			c.dirty = -1
		}
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			es, err := store.New(pgenv.Pool(t), &store.Config{Schema: pgenv.NewSchemaName(t)})
			if err != nil {
				t.Fatal(err)
			}
			if c.at == 0 {
				// Leaves the schema and an empty migrations table.
				if err := es.MigrateTo(ctx, 1); err != nil {
					t.Fatal(err)
				}
				if err := es.MigrateDown(ctx); err != nil {
					t.Fatal(err)
				}
			} else if err := es.MigrateTo(ctx, uint(c.at)); err != nil {
				t.Fatal(err)
			}
			markDirty(t, es.Schema(), c.dirty)

			if err := es.Migrate(ctx); err != nil {
				t.Fatalf("Migrate with version %d dirty at version %d: %v", c.dirty, c.at, err)
			}
			assertVersion(t, es, uint(latest))
			if diff := cmp.Diff(want, catalogOf(t, es.Schema())); diff != "" {
				t.Errorf("catalog differs from a normal migration (-want +got):\n%s", diff)
			}
		})
	}
}

// A dirty version whose migration left only some of its changes behind is
// not guessed at: Migrate returns a DirtyMigrationError and changes nothing,
// and ForceMigrationVersion records the version once the schema is repaired
// by hand.
func TestMigrateUnresolvableDirtyVersionAndForce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es, err := store.New(pgenv.Pool(t), &store.Config{Schema: pgenv.NewSchemaName(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := es.MigrateTo(ctx, 2); err != nil {
		t.Fatal(err)
	}
	// Half of migration 3, as if it had been run statement by statement.
	adminExec(t, "CREATE TABLE "+quoteIdent(es.Schema())+".event_log (global_position bigint PRIMARY KEY)")
	markDirty(t, es.Schema(), 3)

	err = es.Migrate(ctx)
	var dirtyErr *core.DirtyMigrationError
	if !errors.As(err, &dirtyErr) || !errors.Is(err, core.ErrDirtyMigration) {
		t.Fatalf("Migrate = %v (%T), want a *core.DirtyMigrationError", err, err)
	}
	if dirtyErr.Schema != es.Schema() || dirtyErr.Version != 3 || !strings.Contains(err.Error(), "ForceMigrationVersion") {
		t.Errorf("error %+v should name the schema, version 3 and ForceMigrationVersion", dirtyErr)
	}
	if version, dirty, err := es.MigrationVersion(ctx); err != nil || version != 3 || !dirty {
		t.Fatalf("after refusing: version %d dirty %v err %v, want 3 dirty", version, dirty, err)
	}

	if err := es.ForceMigrationVersion(ctx, latestMigration(t)+1); !errors.Is(err, core.ErrInvalidInput) {
		t.Errorf("ForceMigrationVersion(latest+1) = %v, want ErrInvalidInput", err)
	}
	adminExec(t, "DROP TABLE "+quoteIdent(es.Schema())+".event_log")
	if err := es.ForceMigrationVersion(ctx, 2); err != nil {
		t.Fatal(err)
	}
	assertVersion(t, es, 2)
	if err := es.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	assertVersion(t, es, latestMigration(t))
	if diff := cmp.Diff(migratedCatalog(t), catalogOf(t, es.Schema())); diff != "" {
		t.Errorf("catalog differs from a normal migration (-want +got):\n%s", diff)
	}

	// Version 0 is "nothing applied".
	if err := es.ForceMigrationVersion(ctx, 0); err != nil {
		t.Fatal(err)
	}
	assertVersion(t, es, 0)
}

// waitForMigrationLockWait returns the pid of the backend of appName that
// waits for a relation lock (migration 3's LOCK TABLE) or an advisory lock
// (another migration holds the schema's migration lock).
func waitForMigrationLockWait(t *testing.T, appName, lockType string) uint32 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var pids []uint32
		rows, err := pgenv.Pool(t).Query(context.Background(), `
SELECT DISTINCT a.pid FROM pg_stat_activity AS a JOIN pg_locks AS l ON l.pid = a.pid AND NOT l.granted
WHERE a.application_name = $1 AND l.locktype = $2`, appName, lockType)
		if err == nil {
			pids, err = pgx.CollectRows(rows, pgx.RowTo[uint32])
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) == 1 {
			return pids[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d backends of %s wait for a %s lock after 30s, want 1", len(pids), appName, lockType)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// holdEventsLock opens a transaction that reads events, so holds the ACCESS
// SHARE lock migration 3's LOCK TABLE waits for, until release is called.
func holdEventsLock(t *testing.T, schemaName string) (release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := pgenv.Pool(t).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT count(*) FROM "+quoteIdent(schemaName)+".events"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { _ = tx.Rollback(ctx) }) }
	t.Cleanup(release)
	return release
}

// seedVersion2 stores two events the way version 2 of the schema stores
// them, unsequenced, and returns what reading them back must give.
func seedVersion2(t *testing.T, schemaName string) []*core.RecordedEvent {
	t.Helper()
	q := quoteIdent(schemaName)
	adminExec(t, "INSERT INTO "+q+".streams (stream_id, version) VALUES ('account-1', 2)")
	adminExec(t, "INSERT INTO "+q+`.events (stream_id, stream_version, category, event_id, event_type, data) VALUES
		('account-1', 1, 'account', gen_random_uuid(), 'account.deposited', '{"amount": 1}'),
		('account-1', 2, 'account', gen_random_uuid(), 'account.deposited', '{"amount": 2}')`)
	return []*core.RecordedEvent{
		{GlobalPosition: 1, StreamID: "account-1", StreamVersion: 1, EventType: "account.deposited", Data: json.RawMessage(`{"amount": 1}`)},
		{GlobalPosition: 2, StreamID: "account-1", StreamVersion: 2, EventType: "account.deposited", Data: json.RawMessage(`{"amount": 2}`)},
	}
}

func assertEvents(t *testing.T, es *store.EventStore, want []*core.RecordedEvent) {
	t.Helper()
	got, err := es.ReadEvents(context.Background(), core.ReadAll())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range got {
		if !e.Upcasted {
			t.Errorf("event %d read without Upcasted set", e.GlobalPosition)
		}
		e.Upcasted = false // compared with events as appended
	}
	ignore := cmp.FilterPath(func(p cmp.Path) bool {
		name := p.Last().String()
		return name == ".Metadata" || name == ".RecordedAt"
	}, cmp.Ignore())
	if diff := cmp.Diff(want, got, ignore); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// A migration whose backend is killed while it runs leaves its version
// dirty; the next Migrate sees from the catalog that it rolled back, runs it
// again, and the schema ends fully migrated with every event kept.
func TestMigrateRecoversFromKilledMigration(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, appName := newAppPool(t, 2, "")
	es, err := store.New(pool, &store.Config{Schema: pgenv.NewSchemaName(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := es.MigrateTo(ctx, 2); err != nil {
		t.Fatal(err)
	}
	want := seedVersion2(t, es.Schema())

	release := holdEventsLock(t, es.Schema())
	migrated := make(chan error, 1)
	go func() { migrated <- es.Migrate(ctx) }()
	terminateBackend(t, waitForMigrationLockWait(t, appName, "relation"))
	release()
	if err := <-migrated; err == nil {
		t.Fatal("Migrate succeeded although its backend was killed")
	}

	// golang-migrate marked 3 dirty before running it; its transaction
	// rolled back.
	if version, dirty, err := es.MigrationVersion(ctx); err != nil || version != 3 || !dirty {
		t.Fatalf("after the kill: version %d dirty %v err %v, want 3 dirty", version, dirty, err)
	}
	if err := es.Migrate(ctx); err != nil {
		t.Fatalf("Migrate after the kill: %v", err)
	}
	assertVersion(t, es, latestMigration(t))
	if diff := cmp.Diff(migratedCatalog(t), catalogOf(t, es.Schema())); diff != "" {
		t.Errorf("catalog differs from a normal migration (-want +got):\n%s", diff)
	}
	assertEvents(t, es, want)
	if _, err := es.Append(ctx, "account-1", core.Exact(2), core.NewEvent(Deposited{Amount: 3})); err != nil {
		t.Fatalf("append after recovery: %v", err)
	}
}

// Migrate gives up when ctx ends, while waiting for a table lock inside a
// migration and while waiting for another process's migration, and leaves
// the schema clean and migratable.
func TestMigrateHonoursContext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, appName := newAppPool(t, 4, "")
	es, err := store.New(pool, &store.Config{Schema: pgenv.NewSchemaName(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := es.MigrateTo(ctx, 2); err != nil {
		t.Fatal(err)
	}
	want := seedVersion2(t, es.Schema())
	release := holdEventsLock(t, es.Schema())

	const deadline, bound = 300 * time.Millisecond, 10 * time.Second
	migrateWithDeadline := func(what string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, deadline)
		defer cancel()
		result := make(chan error, 1)
		go func() { result <- es.Migrate(ctx) }()
		var err error
		select {
		case err = <-result:
		case <-time.After(bound):
			release()
			t.Fatalf("%s: Migrate with a %v deadline still running after %v", what, deadline, bound)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: Migrate = %v, want context.DeadlineExceeded", what, err)
		}
		assertDbKind(t, err, core.DBTimeout)
	}

	// Blocked by the reader in migration 3's LOCK TABLE.
	migrateWithDeadline("waiting for a table lock")
	assertVersion(t, es, 2)

	// Blocked by a migration that is itself blocked by the reader.
	blocked := make(chan error, 1)
	go func() { blocked <- es.Migrate(ctx) }()
	waitForMigrationLockWait(t, appName, "relation")
	migrateWithDeadline("waiting for the migration lock")

	release()
	if err := <-blocked; err != nil {
		t.Fatalf("the blocked migration: %v", err)
	}
	assertVersion(t, es, latestMigration(t))
	if err := es.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	assertEvents(t, es, want)
}

// A role that owns its schema but may not create schemas in the database
// can migrate it and ask its version.
func TestMigrateSchemaOwnerWithoutCreateOnDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	role := randomName(t, "mire_test_role_")
	adminExec(t, "CREATE ROLE "+quoteIdent(role)+" LOGIN")
	t.Cleanup(func() { adminExec(t, "DROP ROLE IF EXISTS "+quoteIdent(role)) })
	schemaName := pgenv.NewSchemaName(t)
	adminExec(t, "CREATE SCHEMA "+quoteIdent(schemaName)+" AUTHORIZATION "+quoteIdent(role))
	pool, _ := newAppPool(t, 2, role)

	var canCreate bool
	if err := pool.QueryRow(ctx, "SELECT has_database_privilege(current_database(), 'CREATE')").Scan(&canCreate); err != nil || canCreate {
		t.Fatalf("role has CREATE on the database: %v, %v; the test needs it without", canCreate, err)
	}
	es, err := store.New(pool, &store.Config{Schema: schemaName})
	if err != nil {
		t.Fatal(err)
	}
	if version, dirty, err := es.MigrationVersion(ctx); err != nil || version != 0 || dirty {
		t.Fatalf("MigrationVersion before Migrate = %d, %v, %v", version, dirty, err)
	}
	if err := es.Migrate(ctx); err != nil {
		t.Fatalf("Migrate as the schema's owner: %v", err)
	}
	assertVersion(t, es, latestMigration(t))
	if _, err := es.Append(ctx, "account-1", core.NoStream, core.NewEvent(Deposited{Amount: 1})); err != nil {
		t.Fatal(err)
	}
}

// Migrate refuses public, information_schema and a schema that holds other
// objects, unless Config.AllowSharedSchema says otherwise, and creates
// nothing in a schema it refuses.
func TestMigrateRefusesSharedSchemas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	assertRefused := func(t *testing.T, err error, schemaName string) {
		t.Helper()
		var invalid *core.InvalidInputError
		if !errors.As(err, &invalid) || invalid.Field != "Config.Schema" || invalid.Value != schemaName ||
			!strings.Contains(invalid.Reason, "AllowSharedSchema") {
			t.Fatalf("err = %v (%T), want an InvalidInputError on Config.Schema naming AllowSharedSchema", err, err)
		}
	}

	if _, err := store.New(pgenv.Pool(t), &store.Config{Schema: "information_schema", AllowSharedSchema: true}); !errors.Is(err, core.ErrInvalidInput) {
		t.Errorf("store.New with information_schema: err = %v, want ErrInvalidInput", err)
	}

	public, err := store.New(pgenv.Pool(t), &store.Config{Schema: "public"})
	if err != nil {
		t.Fatal(err)
	}
	for name, op := range map[string]func() error{
		"Migrate":          func() error { return public.Migrate(ctx) },
		"MigrateDown":      func() error { return public.MigrateDown(ctx) },
		"MigrationVersion": func() error { _, _, err := public.MigrationVersion(ctx); return err },
	} {
		t.Run("public "+name, func(t *testing.T) { assertRefused(t, op(), "public") })
	}

	schemaName := pgenv.NewSchemaName(t)
	adminExec(t, "CREATE SCHEMA "+quoteIdent(schemaName))
	adminExec(t, "CREATE TABLE "+quoteIdent(schemaName)+".orders (id bigint PRIMARY KEY)")
	before := catalogOf(t, schemaName)
	es, err := store.New(pgenv.Pool(t), &store.Config{Schema: schemaName})
	if err != nil {
		t.Fatal(err)
	}
	assertRefused(t, es.Migrate(ctx), schemaName)
	if diff := cmp.Diff(before, catalogOf(t, schemaName)); diff != "" {
		t.Errorf("refused Migrate changed the schema (-before +after):\n%s", diff)
	}

	shared, err := store.New(pgenv.Pool(t), &store.Config{Schema: schemaName, AllowSharedSchema: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := shared.Migrate(ctx); err != nil {
		t.Fatalf("Migrate with AllowSharedSchema: %v", err)
	}
	// Once mire's migrations table is there the schema is mire's too.
	if err := es.Migrate(ctx); err != nil {
		t.Fatalf("Migrate of a schema mire migrated: %v", err)
	}
}

// Migrations run on the store's pool: 20 stores migrating at once on a pool
// of 4 never have more than 4 server connections, and all succeed.
func TestMigrateStaysWithinPool(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const stores, maxConns = 20, 4
	pool, appName := newAppPool(t, maxConns, "")

	var peak atomic.Int64
	stopWatching := make(chan struct{})
	watched := make(chan error, 1)
	go func() {
		for {
			var n int64
			err := pgenv.Pool(t).QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", appName).Scan(&n)
			if err != nil {
				watched <- err
				return
			}
			if n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stopWatching:
				watched <- nil
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()

	var wg sync.WaitGroup
	errs := make([]error, stores)
	for i := range stores {
		es, err := store.New(pool, &store.Config{Schema: pgenv.NewSchemaName(t)})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = es.Migrate(ctx)
		}()
	}
	wg.Wait()
	close(stopWatching)
	if err := <-watched; err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if err != nil {
			t.Errorf("store %d: %v", i, err)
		}
	}
	if got := peak.Load(); got > maxConns || got == 0 {
		t.Errorf("peak of %d server connections for a pool of %d", got, maxConns)
	}
}

// The pool connection a migration ran on goes back with its own
// search_path, after a migration that succeeded and after one that failed.
func TestMigrateRestoresSearchPath(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	config, err := pgxpool.ParseConfig(pgenv.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	config.MaxConns = 1
	const searchPath = `app, "$user", public`
	config.ConnConfig.RuntimeParams["search_path"] = searchPath
	pool, err := pgxpool.NewWithConfig(ctx, config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	assertSearchPath := func(what string) {
		t.Helper()
		var got string
		if err := pool.QueryRow(ctx, "SHOW search_path").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != searchPath {
			t.Errorf("%s: search_path of the pool's connection = %q, want %q", what, got, searchPath)
		}
	}
	var pid uint32
	if err := pool.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}

	es, err := store.New(pool, &store.Config{Schema: pgenv.NewSchemaName(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := es.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var after uint32
	if err := pool.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != pid {
		t.Errorf("the pool's connection was replaced (pid %d, then %d): Migrate did not use it", pid, after)
	}
	assertSearchPath("after Migrate")
	if _, _, err := es.MigrationVersion(ctx); err != nil {
		t.Fatal(err)
	}
	assertSearchPath("after MigrationVersion")

	// Migration 9 half undone: a dirty version mire will not resolve.
	if err := es.MigrateTo(ctx, 9); err != nil {
		t.Fatal(err)
	}
	assertSearchPath("after MigrateTo")
	adminExec(t, "DROP INDEX "+quoteIdent(es.Schema())+".event_log_stream_version_key")
	markDirty(t, es.Schema(), 9)
	if err := es.Migrate(ctx); !errors.Is(err, core.ErrDirtyMigration) {
		t.Fatalf("Migrate = %v, want ErrDirtyMigration", err)
	}
	assertSearchPath("after a failed Migrate")
}
