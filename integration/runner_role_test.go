package integration_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/runner"
	"github.com/mire-go/mire/saga"
	"github.com/mire-go/mire/store"
)

// The runtime role runs the runner end to end (subscriptions created,
// leases, checkpoints, a read model written in the checkpoint transaction,
// parking, retries and skips, pause, resume and reset), and cannot rewrite
// what the runner keeps as a record: it may not delete subscriptions, nor
// rewrite or delete skipped events.
func TestRuntimeRoleRunsTheRunner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner, es, role, _ := runtimeStore(t, 8)
	table := pgx.Identifier{owner.Schema(), "role_model"}.Sanitize()
	for _, sql := range []string{
		fmt.Sprintf("CREATE TABLE %s (stream_id text, version bigint, PRIMARY KEY (stream_id, version))", table),
		fmt.Sprintf("GRANT SELECT, INSERT, DELETE ON %s TO %s", table, pgx.Identifier{role}.Sanitize()),
	} {
		if _, err := owner.Pool().Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	handler := func(ctx context.Context, scope *store.Scope, e runner.HandledEvent) error {
		if e.Recorded.StreamID == "account-bad" && e.Recorded.StreamVersion == 1 {
			return errors.New("bad")
		}
		_, err := scope.Tx().Exec(ctx, "INSERT INTO "+table+" VALUES ($1, $2)", e.Recorded.StreamID, e.Recorded.StreamVersion)
		return err
	}
	config := fastRunner("runtime")
	config.MaxAttempts = 1
	r := startRunner(t, es, config, runner.Subscription{Name: "role", TxHandler: handler, OnFailure: runner.Park, Partitions: 2})
	c := r.Control()
	count := func() int {
		var n int
		if err := owner.Pool().QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	appendDeposit(t, es, "account-bad", 1)
	appendDeposit(t, es, "account-bad", 1)
	var last *core.CommittedEvents
	for i := range 10 {
		last = appendDeposit(t, es, fmt.Sprintf("account-%d", i), 1)
	}
	waitFor(t, r, "role", last) // last's partition; the other may trail
	eventually(t, 10*time.Second, "both partitions handle their events", func() bool { return count() == 10 })
	eventually(t, 10*time.Second, "account-bad is parked", func() bool {
		parked, err := c.ParkedStreams(ctx, "role")
		return err == nil && len(parked) == 1
	})
	if ok, err := c.SkipParked(ctx, "role", "account-bad", "known bad"); err != nil || !ok {
		t.Fatalf("SkipParked as the runtime role: %v, %v", ok, err)
	}
	eventually(t, 10*time.Second, "the parked stream is released", func() bool { return count() == 11 })
	if err := c.Pause(ctx, "role"); err != nil {
		t.Fatal(err)
	}
	if err := c.Resume(ctx, "role"); err != nil {
		t.Fatal(err)
	}
	truncate := func(ctx context.Context, scope *store.Scope) error {
		_, err := scope.Tx().Exec(ctx, "DELETE FROM "+table)
		return err
	}
	if err := c.Reset(ctx, "role", 0, &runner.ResetOpts{Hook: truncate}); err != nil {
		t.Fatal(err)
	}
	// The rebuild meets account-bad's first event again, and parks it again.
	eventually(t, 10*time.Second, "the rebuild", func() bool { return count() == 10 })
	if _, err := c.Status(ctx, "role"); err != nil {
		t.Fatal(err)
	}

	if _, err := c.Drop(ctx, "role"); !errors.Is(err, core.ErrDatabase) || !isKind(err, core.DBPermissionDenied) {
		t.Errorf("Drop as the runtime role = %v, want permission denied", err)
	}
	for _, sql := range []string{
		"DELETE FROM %s.skipped_events",
		"UPDATE %s.skipped_events SET reason = 'rewritten'",
		"DELETE FROM %s.subscriptions",
	} {
		_, err := es.Pool().Exec(ctx, fmt.Sprintf(sql, pgx.Identifier{owner.Schema()}.Sanitize()))
		assertSQLState(t, err, "42501", sql)
	}
	// The owner may drop it.
	if ok, err := runner.NewControl(owner).Drop(ctx, "role"); err != nil || !ok {
		t.Errorf("Drop as the owner = %v, %v", ok, err)
	}
}

func isKind(err error, kind core.DBErrorKind) bool {
	k, ok := core.DBKind(err)
	return ok && k == kind
}

// A stopped runner leaves no goroutine behind. Not parallel: goleak looks
// at every goroutine of the process.
func TestRunnerLeavesNoGoroutines(t *testing.T) {
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	model := newBalances(t, es)
	for range 2 {
		r, err := runner.New(es, fastRunner("leaky"))
		if err != nil {
			t.Fatal(err)
		}
		for _, sub := range []runner.Subscription{
			{Name: "a", TxHandler: model.handler()},
			{Name: "b", Partitions: 3, Handler: func(context.Context, runner.HandledEvent) error { return nil }},
		} {
			if err := r.Add(sub); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		started := r.Started()
		go func() { done <- r.Run(ctx) }()
		<-started
		last := appendDeposit(t, es, "account-1", 1)
		waitFor(t, r, "a", last)
		waitFor(t, r, "b", last)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	// Leases were released on the way out.
	for _, s := range statusOf(t, runner.NewControl(es), "") {
		if s.Worker != "" {
			t.Errorf("%s/%d still held by %s after Run returned", s.Subscription, s.Partition, s.Worker)
		}
	}
}

// The runtime role runs sagas end to end: starts, the inbox router, the
// executors, participants' replies, compensation and operations.
func TestRuntimeRoleRunsSagas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner, es, _, _ := runtimeStore(t, 12)
	rt, err := store.New(es.Pool(), &store.Config{Schema: owner.Schema(), Registry: sagaRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	env := newSagaEnv(t, rt, fastSagas("runtime"), nil)
	done, err := orderSaga.Start(ctx, env.engine, "ok", PlaceOrder{SKU: "apple", Qty: 1, Amount: 5})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := result(t, done); err != nil {
		t.Fatalf("a saga run as the runtime role: %v", err)
	}
	declined, err := orderSaga.Start(ctx, env.engine, "declined", PlaceOrder{SKU: "pear", Qty: 1, Amount: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := result(t, declined); err == nil {
		t.Fatal("a declined payment completed")
	}
	if _, err := env.engine.List(ctx, saga.ListOpts{Status: saga.StatusCompensated}); err != nil {
		t.Fatal(err)
	}
	// The runtime role cannot rewrite the journals, which are events.
	_, err = rt.Pool().Exec(ctx, fmt.Sprintf("DELETE FROM %s.events WHERE stream_id = $1", pgx.Identifier{owner.Schema()}.Sanitize()),
		saga.JournalStream("order", "ok"))
	assertSQLState(t, err, "42501", "deleting a journal")
}
