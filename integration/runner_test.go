package integration_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/runner"
	"github.com/mire-go/mire/store"
)

// fastRunner is a runner config for tests: short leases and rechecks, so
// that failovers happen in test time.
func fastRunner(worker string) *runner.Config {
	return &runner.Config{WorkerID: worker, LeaseTTL: 2 * time.Second, RecheckInterval: 100 * time.Millisecond,
		PollInterval: 200 * time.Millisecond, RetryBackoff: time.Millisecond, MaxRetryBackoff: 10 * time.Millisecond}
}

// balances is a read model kept by a transactional handler: one row per
// account, with the count of events applied, in a table of the test's
// schema.
type balances struct {
	es    *store.EventStore
	table string
}

func newBalances(t *testing.T, es *store.EventStore) *balances {
	t.Helper()
	b := &balances{es: es, table: pgx.Identifier{es.Schema(), "balances"}.Sanitize()}
	_, err := es.Pool().Exec(context.Background(), fmt.Sprintf(
		`CREATE TABLE %s (account text PRIMARY KEY, balance bigint NOT NULL, events bigint NOT NULL, last_version bigint NOT NULL)`, b.table))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// handler applies an event to the read model and refuses one out of
// order: each account's events must arrive in version order, once.
func (b *balances) handler() runner.TransactionalEventHandler {
	return func(ctx context.Context, scope *store.Scope, event runner.HandledEvent) error {
		var amount int64
		switch e := event.Event().(type) {
		case Deposited:
			amount = e.Amount
		case Withdrawn:
			amount = -e.Amount
		}
		tag, err := scope.Tx().Exec(ctx, fmt.Sprintf(`INSERT INTO %s AS b (account, balance, events, last_version) VALUES ($1, $2, 1, $3)
			ON CONFLICT (account) DO UPDATE SET balance = b.balance + $2, events = b.events + 1, last_version = $3
			WHERE b.last_version = $3 - 1`, b.table), event.Recorded.StreamID, amount, event.Recorded.StreamVersion)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("event %s@%d out of order or twice", event.Recorded.StreamID, event.Recorded.StreamVersion)
		}
		return nil
	}
}

func (b *balances) get(t *testing.T, account string) (balance, events int64) {
	t.Helper()
	err := b.es.Pool().QueryRow(context.Background(), fmt.Sprintf(`SELECT balance, events FROM %s WHERE account = $1`, b.table), account).
		Scan(&balance, &events)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatal(err)
	}
	return balance, events
}

func (b *balances) totalEvents(t *testing.T) int64 {
	t.Helper()
	var n int64
	if err := b.es.Pool().QueryRow(context.Background(), fmt.Sprintf(`SELECT coalesce(sum(events), 0) FROM %s`, b.table)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func startRunner(t *testing.T, es *store.EventStore, config *runner.Config, subs ...runner.Subscription) *runner.Runner {
	t.Helper()
	r, err := runner.New(es, config)
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range subs {
		if err := r.Add(sub); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Stop(ctx); err != nil {
			t.Errorf("stopping the runner: %v", err)
		}
	})
	return r
}

func appendDeposit(t *testing.T, es *store.EventStore, account string, amount int64) *core.CommittedEvents {
	t.Helper()
	committed, err := es.Append(context.Background(), account, core.Any, core.NewEvent(Deposited{Amount: amount}))
	if err != nil {
		t.Fatal(err)
	}
	return committed
}

// A transactional read model is current after WaitFor, counts each event
// once, and goes on from its checkpoint after a restart.
func TestRunnerTransactionalProjection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	model := newBalances(t, es)
	sub := runner.Subscription{Name: "balances", Category: "account", TxHandler: model.handler()}

	for i := range 20 {
		appendDeposit(t, es, fmt.Sprintf("account-%d", i%4), 10)
	}
	r := startRunner(t, es, fastRunner("a"), sub)
	last := appendDeposit(t, es, "account-1", 5)
	if err := r.WaitFor(ctx, "balances", last); err != nil {
		t.Fatal(err)
	}
	if balance, events := model.get(t, "account-1"); balance != 55 || events != 6 {
		t.Errorf("account-1: balance %d after %d events, want 55 after 6", balance, events)
	}
	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	last = appendDeposit(t, es, "account-2", 1)
	r2 := startRunner(t, es, fastRunner("b"), sub)
	if err := r2.WaitFor(ctx, "balances", last); err != nil {
		t.Fatal(err)
	}
	if total := model.totalEvents(t); total != 22 {
		t.Errorf("the read model counted %d events, want 22", total)
	}
	statuses, err := r2.Control().Status(ctx, "balances")
	if err != nil {
		t.Fatal(err)
	}
	if len(statuses) != 1 || statuses[0].Worker != "b" || statuses[0].FenceToken != 2 || statuses[0].Checkpoint != 22 ||
		statuses[0].State != runner.StateRunning {
		t.Errorf("status = %+v, want worker b, fence 2, checkpoint 22, running", statuses)
	}
}

// An at-least-once handler sees every event of a whole-log subscription,
// in global order.
func TestRunnerEventHandlerSeesLogInOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	var mu sync.Mutex
	var positions []int64
	handler := func(_ context.Context, e runner.HandledEvent) error {
		mu.Lock()
		defer mu.Unlock()
		positions = append(positions, e.Recorded.GlobalPosition)
		return nil
	}
	r := startRunner(t, es, fastRunner("a"), runner.Subscription{Name: "all", Handler: handler})
	var last *core.CommittedEvents
	for i := range 50 {
		last = appendDeposit(t, es, fmt.Sprintf("account-%d", i%7), 1)
	}
	if err := r.WaitFor(ctx, "all", last); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, p := range positions {
		if p != int64(i+1) {
			t.Fatalf("event %d handled has position %d: %v", i, p, positions)
		}
	}
	if len(positions) != 50 {
		t.Errorf("handled %d events, want 50", len(positions))
	}
}
