package integration_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

// The saga engine's statements cost the same with 50,000 ended sagas in
// saga_instances as with one, with the plans PostgreSQL made while the
// table held one saga: the plans a connection opened early keeps. The
// table keeps a row per saga once it ends, and with statistics taken while
// it held a handful (an ANALYZE early, then autovacuum off) the generic
// plan of each of these statements scanned the whole table; migration 14
// has the sweeps refresh its statistics as it doubles, as migration 13 did
// for the log. Without statistics the planner takes the indexes anyway.
func TestSagaStatementsCostTheSameAsSagasAccumulate(t *testing.T) {
	t.Parallel()
	for _, early := range []struct {
		name     string
		analyzed bool
	}{
		{name: "without statistics"},
		{name: "with one saga's statistics", analyzed: true},
	} {
		t.Run(early.name, func(t *testing.T) {
			t.Parallel()
			sagaStatementsCostTheSame(t, early.analyzed)
		})
	}
}

func sagaStatementsCostTheSame(t *testing.T, analyzed bool) {
	ctx := context.Background()
	pool, recorded := recordingPool(t)
	es := pgenv.NewStore(t, pool, &store.Config{Registry: sagaRegistry()})
	table := pgx.Identifier{es.Schema(), "saga_instances"}.Sanitize()
	conn := genericPlansConn(t)
	if _, err := conn.Exec(ctx, "ALTER TABLE "+table+" SET (autovacuum_enabled = false)"); err != nil {
		t.Fatal(err)
	}
	env := newSagaEnv(t, es, fastSagas("plans"), nil)

	// run runs an order saga to its end and returns the last call of each
	// statement sent meanwhile: the engine's claims, wake-ups, lookups and
	// releases, and the router's routing of the replies.
	run := func(id string) map[string]recordedStatement {
		t.Helper()
		recorded.start()
		h, err := orderSaga.Start(ctx, env.engine, id, PlaceOrder{SKU: "apple", Qty: 1, Amount: 10})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := result(t, h); err != nil {
			t.Fatal(err)
		}
		return recorded.stop()
	}
	// Every statement the engine and the router send that reads the table
	// with a plan of its own. SagaCreate inserts a row by its values: it
	// has no plan to choose, and it costs a level more in each of the
	// table's five indexes.
	statements := []string{"SagaClaim", "SagaNextWake", "SagaGet", "SagaLock", "SagaRelease", "SagaRouteTo"}

	first := run("first")
	if analyzed {
		if _, err := conn.Exec(ctx, "ANALYZE "+table); err != nil {
			t.Fatal(err)
		}
	}
	costs := map[string]int{}
	for _, name := range statements {
		statement, ok := first[name]
		if !ok {
			t.Fatalf("%s: not sent while the first saga ran", name)
		}
		if _, err := conn.Exec(ctx, fmt.Sprintf("PREPARE %s AS %s", pgx.Identifier{name}.Sanitize(), statement.sql)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// Twice: a statement's first run also reads what the session
		// caches (index metapages).
		explainExecute(t, conn, name, statement.args)
		costs[name] = explainExecute(t, conn, name, statement.args)
	}

	// Ended sagas keep their rows.
	_, err := conn.Exec(ctx, "INSERT INTO "+table+` (name, id, stream_id, correlation_id, definition_version, status)
		SELECT 'order', 'ended-' || n, 'saga.order-ended-' || n, gen_random_uuid(), 1, 'completed'
		FROM generate_series(1, 50000) AS n`)
	if err != nil {
		t.Fatal(err)
	}
	// The next saga's journal is swept, and the sweep refreshes the
	// statistics the table has outgrown.
	last := run("last")
	for _, name := range statements {
		statement, ok := last[name]
		if !ok {
			t.Errorf("%s: not sent while the last saga ran", name)
			continue
		}
		cost := explainExecute(t, conn, name, statement.args)
		t.Logf("%s: %d buffers with one saga, %d with 50,001", name, costs[name], cost)
		// An index level more is all the larger table may cost; a scan of
		// it reads its 700-odd pages.
		if cost > 3*costs[name]+10 {
			t.Errorf("%s: %d buffers with 50,001 sagas, against %d with one", name, cost, costs[name])
		}
	}
}
