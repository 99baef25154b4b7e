package integration_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/schema"
	"github.com/mire-go/mire/store"
)

// A retried append answered as a duplicate reports the positions its events
// have by then, as any CommittedEvents does once they are assigned.
func TestDuplicateCarriesPositions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	events := []core.Event{
		{Data: Opened{Owner: "ada"}, Metadata: core.EventMetadata{EventID: uuid.New()}},
		{Data: Deposited{Amount: 5}, Metadata: core.EventMetadata{EventID: uuid.New()}},
	}
	if _, err := es.Append(ctx, "account-0", core.NoStream, core.NewEvent(Opened{Owner: "first"})); err != nil {
		t.Fatal(err)
	}
	if _, err := es.Append(ctx, "account-1", core.NoStream, events...); err != nil {
		t.Fatal(err)
	}
	before, err := es.Append(ctx, "account-1", core.NoStream, events...)
	if err != nil || !before.Duplicate {
		t.Fatalf("retry before sequencing: %+v, %v", before, err)
	}
	for _, e := range before.Events {
		if e.GlobalPosition != 0 {
			t.Fatalf("retry before sequencing reports position %d, want 0 (none yet)", e.GlobalPosition)
		}
	}
	if _, err := es.Sequence(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := es.Append(ctx, "account-1", core.NoStream, events...)
	if err != nil || !after.Duplicate {
		t.Fatalf("retry after sequencing: %+v, %v", after, err)
	}
	for i, e := range after.Events {
		if want := int64(i + 2); e.GlobalPosition != want {
			t.Errorf("retried event %d reports position %d, want %d", i, e.GlobalPosition, want)
		}
	}
}

// poolWithIsolation returns a pool whose connections default to isolation.
func poolWithIsolation(t *testing.T, isolation string, maxConns int32) *pgxpool.Pool {
	t.Helper()
	config, err := pgxpool.ParseConfig(pgenv.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	config.ConnConfig.RuntimeParams["default_transaction_isolation"] = isolation
	config.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// On a pool whose connections default to REPEATABLE READ or SERIALIZABLE,
// sweeps saw one snapshot for their whole transaction and failed with
// unique violations on the log, and racing appends failed with
// serialization errors. The store runs its own statements as they need:
// racing writers only ever see version conflicts, sequencing and reads run
// beside them, and the log ends gapless with every event once.
func TestPoolDefaultIsolation(t *testing.T) {
	t.Parallel()
	for _, isolation := range []string{"repeatable read", "serializable"} {
		t.Run(isolation, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			pool := poolWithIsolation(t, isolation, 12)
			es := pgenv.NewStore(t, pool, &store.Config{Registry: bankRegistry()})
			sequencer, err := store.NewSequencer(es, &store.SequencerConfig{Interval: 1})
			if err != nil {
				t.Fatal(err)
			}
			if err := sequencer.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer sequencer.Stop(ctx) //nolint:errcheck // stopped and checked below

			const writers, appends, streams = 8, 25, 3
			for i := range streams {
				if _, err := es.Append(ctx, fmt.Sprintf("account-%d", i), core.NoStream, core.NewEvent(Opened{Owner: "ada"})); err != nil {
					t.Fatal(err)
				}
			}
			var wg sync.WaitGroup
			var conflicts atomic.Int64
			errs := make(chan error, writers+1)
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range appends {
						id := fmt.Sprint((w + i) % streams)
						stream := "account-" + id
						for {
							// Alternately exact expectations (re-read after a
							// conflict), Any, and a locking scope.
							var err error
							switch i % 3 {
							case 0:
								var version int64
								if version, err = es.StreamVersion(ctx, stream); err == nil {
									_, err = es.Append(ctx, stream, core.Exact(version), core.NewEvent(Deposited{Amount: 1}))
								}
							case 1:
								_, err = es.Append(ctx, stream, core.Any, core.NewEvent(Deposited{Amount: 1}), core.NewEvent(Deposited{Amount: 1}))
							default:
								err = es.InScope(ctx, func(scope *store.Scope) error {
									root, err := store.LoadForUpdate[Account](ctx, scope, id)
									if err != nil {
										return err
									}
									root.Record(Deposited{Amount: 1})
									_, err = store.Save(ctx, scope, root)
									return err
								})
							}
							if errors.Is(err, core.ErrConcurrency) {
								conflicts.Add(1)
								continue
							}
							if err != nil {
								errs <- fmt.Errorf("writer %d, append %d: %w", w, i, err)
								return
							}
							break
						}
					}
				}()
			}
			wg.Add(1)
			go func() { // a reader of the whole log, sequencing as it reads
				defer wg.Done()
				for range 20 {
					if _, err := es.ReadEvents(ctx, core.ReadAll()); err != nil {
						errs <- fmt.Errorf("reader: %w", err)
						return
					}
				}
			}()
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if err := sequencer.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			entries := readWholeLog(t, es)
			assertGapless(t, entries)
			// Every third append is a batch of two.
			perWriter := appends + appends/3
			if i := appends % 3; i > 1 {
				perWriter++
			}
			if want := streams + writers*perWriter; len(entries) != want {
				t.Fatalf("the log holds %d events, want %d", len(entries), want)
			}
			t.Logf("%d conflicts retried", conflicts.Load())
		})
	}
}

// A store refuses to run against a schema at another migration version
// than its code's, or left dirty, with a typed error naming both versions;
// it runs again once the schema is migrated.
func TestSchemaVersionMismatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	want := schema.LatestVersion()
	es, err := store.New(pgenv.Pool(t), &store.Config{Schema: pgenv.NewSchemaName(t), Registry: bankRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := es.MigrateTo(ctx, want-1); err != nil {
		t.Fatal(err)
	}
	setVersion := func(version uint, dirty bool) {
		t.Helper()
		if _, err := pgenv.Pool(t).Exec(ctx, fmt.Sprintf("UPDATE %s SET version = $1, dirty = $2", storeTable(es, store.MigrationsTable)),
			version, dirty); err != nil {
			t.Fatal(err)
		}
	}
	append := func() error {
		_, err := es.Append(ctx, "account-1", core.Any, core.NewEvent(Deposited{Amount: 1}))
		return err
	}
	for _, c := range []struct {
		name       string
		arrange    func()
		wantBehind bool
	}{
		{"older", func() {}, true},
		{"newer", func() { setVersion(want+1, false) }, false},
		{"dirty", func() { setVersion(want, true) }, true},
	} {
		c.arrange()
		err := append()
		var versionErr *core.SchemaVersionError
		if !errors.As(err, &versionErr) || !errors.Is(err, core.ErrSchemaVersion) {
			t.Fatalf("%s schema: append err = %v, want a SchemaVersionError", c.name, err)
		}
		if versionErr.Want != want || versionErr.Schema != es.Schema() {
			t.Errorf("%s schema: %+v, want Want %d and schema %s", c.name, versionErr, want, es.Schema())
		}
		if errors.Is(err, core.ErrSchemaNotMigrated) != c.wantBehind {
			t.Errorf("%s schema: errors.Is(err, ErrSchemaNotMigrated) = %v, want %v (%v)", c.name, !c.wantBehind, c.wantBehind, err)
		}
		if _, err := es.ReadEvents(ctx, core.ReadAll()); !errors.As(err, &versionErr) {
			t.Errorf("%s schema: read err = %v, want a SchemaVersionError", c.name, err)
		}
	}
	var stored int
	if err := pgenv.Pool(t).QueryRow(ctx, "SELECT count(*) FROM "+storeTable(es, "events")).Scan(&stored); err != nil || stored != 0 {
		t.Fatalf("%d events stored (%v), want none", stored, err)
	}

	setVersion(want-1, false)
	if err := es.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := append(); err != nil {
		t.Fatalf("append once migrated: %v", err)
	}
}
