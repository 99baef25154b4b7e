package integration_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

func latestMigration(t *testing.T) uint {
	t.Helper()
	files, err := schemaMigrations()
	if err != nil {
		t.Fatal(err)
	}
	return uint(len(files))
}

func TestMigrateUpDownUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es, err := store.New(pgenv.Pool(t), &store.Config{Schema: pgenv.NewSchemaName(t)})
	if err != nil {
		t.Fatal(err)
	}
	latest := latestMigration(t)

	for round := range 2 {
		if err := es.Migrate(ctx); err != nil {
			t.Fatalf("round %d: migrate up: %v", round, err)
		}
		if err := es.Migrate(ctx); err != nil {
			t.Fatalf("round %d: migrate up again (idempotent): %v", round, err)
		}
		if version, dirty, err := es.MigrationVersion(ctx); err != nil || version != latest || dirty {
			t.Fatalf("round %d: version %d dirty %v err %v, want %d clean", round, version, dirty, err, latest)
		}
		if _, err := es.Append(ctx, "account-1", core.NoStream, core.NewEvent(Deposited{Amount: 1})); err != nil {
			t.Fatalf("round %d: append after migrate: %v", round, err)
		}
		if err := es.MigrateDown(ctx); err != nil {
			t.Fatalf("round %d: migrate down: %v", round, err)
		}
		if version, _, err := es.MigrationVersion(ctx); err != nil || version != 0 {
			t.Fatalf("round %d: after down: version %d err %v, want 0", round, version, err)
		}
		_, err := es.Append(ctx, "account-1", core.Any, core.NewEvent(Deposited{Amount: 1}))
		if !errors.Is(err, core.ErrSchemaNotMigrated) {
			t.Fatalf("round %d: append after down: err = %v, want ErrSchemaNotMigrated", round, err)
		}
	}
}

// Several processes starting at once all migrate the same fresh schema.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema := pgenv.NewSchemaName(t)
	pool := pgenv.NewPool(t, 8)
	const migrators = 6

	var wg sync.WaitGroup
	errs := make([]error, migrators)
	start := make(chan struct{})
	for i := range migrators {
		wg.Add(1)
		go func() {
			defer wg.Done()
			es, err := store.New(pool, &store.Config{Schema: schema})
			if err != nil {
				errs[i] = err
				return
			}
			<-start
			errs[i] = es.Migrate(ctx)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("migrator %d: %v", i, err)
		}
	}
	es, err := store.New(pool, &store.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	if version, dirty, err := es.MigrationVersion(ctx); err != nil || version != latestMigration(t) || dirty {
		t.Fatalf("version %d dirty %v err %v", version, dirty, err)
	}
}

// Two stores in different schemas of one database are independent.
func TestSchemasAreIsolated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := pgenv.NewStore(t, nil, nil)
	b := pgenv.NewStore(t, nil, nil)
	if _, err := a.Append(ctx, "account-1", core.NoStream, core.NewEvent(Deposited{Amount: 1})); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Append(ctx, "account-1", core.NoStream, core.NewEvent(Deposited{Amount: 2})); err != nil {
		t.Fatalf("same stream in another schema: %v", err)
	}
	events, err := b.ReadEvents(ctx, core.ReadAll())
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || string(events[0].Data) != `{"amount": 2}` {
		t.Fatalf("schema b sees %d events (%v), want only its own", len(events), events)
	}
}
