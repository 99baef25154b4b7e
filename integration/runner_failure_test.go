package integration_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/runner"
	"github.com/mire-go/mire/store"
)

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func statusOf(t *testing.T, c *runner.Control, name string) []runner.LeaseStatus {
	t.Helper()
	statuses, err := c.Status(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return statuses
}

func waitFor(t *testing.T, r *runner.Runner, name string, committed *core.CommittedEvents) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := r.WaitFor(ctx, name, committed); err != nil {
		t.Fatalf("WaitFor: %v", err)
	}
}

// A handler that fails a few times and then succeeds is retried with
// backoff; the transactional read model counts the event once.
func TestRunnerRetriesTransientFailures(t *testing.T) {
	t.Parallel()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	model := newBalances(t, es)
	var failures atomic.Int32
	inner := model.handler()
	handler := func(ctx context.Context, scope *store.Scope, e runner.HandledEvent) error {
		if e.Recorded.StreamVersion == 2 && failures.Add(1) <= 3 {
			return errors.New("transient")
		}
		return inner(ctx, scope, e)
	}
	r := startRunner(t, es, fastRunner("a"), runner.Subscription{Name: "balances", TxHandler: handler})
	appendDeposit(t, es, "account-1", 1)
	last := appendDeposit(t, es, "account-1", 2)
	waitFor(t, r, "balances", last)
	if balance, events := model.get(t, "account-1"); balance != 3 || events != 2 {
		t.Errorf("balance %d after %d events, want 3 after 2", balance, events)
	}
	if n := failures.Load(); n != 4 {
		t.Errorf("handler failed %d times and then succeeded; want 3 failures and a success", n)
	}
}

// Under the default Stop policy, an event that fails every attempt stops
// its partition in a durable failed state: WaitFor reports it, another
// runner does not take it up, nothing after it is handled, and Resume tries
// it again.
func TestRunnerStopPolicy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	model := newBalances(t, es)
	var broken atomic.Bool
	broken.Store(true)
	var calls atomic.Int32
	inner := model.handler()
	handler := func(ctx context.Context, scope *store.Scope, e runner.HandledEvent) error {
		if e.Recorded.StreamID == "account-poison" && broken.Load() {
			calls.Add(1)
			return errors.New("cannot handle this one")
		}
		return inner(ctx, scope, e)
	}
	config := fastRunner("a")
	config.MaxAttempts = 3
	sub := runner.Subscription{Name: "balances", TxHandler: handler}
	r := startRunner(t, es, config, sub)

	appendDeposit(t, es, "account-1", 1)
	poison := appendDeposit(t, es, "account-poison", 1)
	after := appendDeposit(t, es, "account-1", 1)
	ctx2, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := r.WaitFor(ctx2, "balances", after); !errors.Is(err, runner.ErrSubscriptionFailed) {
		t.Fatalf("WaitFor = %v, want ErrSubscriptionFailed", err)
	}
	status := statusOf(t, r.Control(), "balances")[0]
	if status.State != runner.StateFailed || status.ErrorPosition != 2 || status.Checkpoint != 1 ||
		status.LastError != "cannot handle this one" {
		t.Errorf("status = %+v, want failed at position 2 with the handler's error, checkpoint 1", status)
	}
	// MaxAttempts on its own, and once more if it first failed in a batch.
	calledBeforeRestart := calls.Load()
	if calledBeforeRestart < 3 || calledBeforeRestart > 4 {
		t.Errorf("the poison event was tried %d times, want MaxAttempts (3), or 4 if a batch held it", calledBeforeRestart)
	}

	// Another replica does not take the failed partition up and fail in
	// turn, even once the first one is gone.
	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	r2 := startRunner(t, es, config, sub)
	time.Sleep(300 * time.Millisecond)
	if n := calls.Load(); n != calledBeforeRestart {
		t.Errorf("after a restart the poison event was tried again (%d calls, %d before)", n, calledBeforeRestart)
	}
	if _, events := model.get(t, "account-1"); events != 1 {
		t.Errorf("account-1 has %d events handled, want 1: nothing after the failure", events)
	}

	broken.Store(false)
	if err := r2.Control().Resume(ctx, "balances"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, r2, "balances", after)
	waitFor(t, r2, "balances", poison)
	if total := model.totalEvents(t); total != 3 {
		t.Errorf("read model counted %d events, want 3", total)
	}
}

// A transactional batch that fails is retried one event at a time: the
// events before the poison one commit, and the failure names it exactly.
func TestRunnerIsolatesPoisonInBatch(t *testing.T) {
	t.Parallel()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	model := newBalances(t, es)
	inner := model.handler()
	handler := func(ctx context.Context, scope *store.Scope, e runner.HandledEvent) error {
		if e.Recorded.GlobalPosition == 30 {
			return errors.New("poison")
		}
		return inner(ctx, scope, e)
	}
	events := make([]core.Event, 50)
	for i := range events {
		events[i] = core.NewEvent(Deposited{Amount: 1})
	}
	if _, err := es.Append(context.Background(), "account-1", core.NoStream, events...); err != nil {
		t.Fatal(err)
	}
	config := fastRunner("a")
	config.MaxAttempts = 2
	r := startRunner(t, es, config, runner.Subscription{Name: "balances", TxHandler: handler})
	eventually(t, 20*time.Second, "the partition fails", func() bool {
		return statusOf(t, r.Control(), "balances")[0].State == runner.StateFailed
	})
	status := statusOf(t, r.Control(), "balances")[0]
	if status.ErrorPosition != 30 || status.Checkpoint != 29 {
		t.Errorf("failed at %d with checkpoint %d, want 30 and 29", status.ErrorPosition, status.Checkpoint)
	}
	if _, n := model.get(t, "account-1"); n != 29 {
		t.Errorf("read model has %d events, want the 29 before the poison one", n)
	}
}

// Attempts are stored before each dispatch: a handler that takes its
// process down with it is not redelivered forever. Here each "crash" is a
// runner whose database connections die and whose process stops while its
// handler runs (nothing returns from it, nothing is cleaned up); after
// MaxAttempts such runs, the next runner marks the partition failed
// without calling the handler again. A runner stopped gracefully mid-batch,
// by contrast, takes its attempt back.
func TestRunnerCrashLoopingHandlerStops(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	appendDeposit(t, es, "account-1", 1)
	const maxAttempts = 3
	var calls atomic.Int32
	attempts := func() int {
		var n int
		if err := es.Pool().QueryRow(ctx, fmt.Sprintf("SELECT attempts FROM %s.subscriptions WHERE name = 'crashy'",
			pgx.Identifier{es.Schema()}.Sanitize())).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	run := func(name string, crash bool) {
		t.Helper()
		started := make(chan struct{})
		var once sync.Once
		handler := func(ctx context.Context, _ runner.HandledEvent) error {
			calls.Add(1)
			once.Do(func() { close(started) })
			<-ctx.Done() // no result, no checkpoint
			return ctx.Err()
		}
		config := fastRunner("")
		config.MaxAttempts = maxAttempts
		rep := newReplica(t, es.Schema(), name, config, runner.Subscription{Name: "crashy", Handler: handler})
		select {
		case <-started:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: the handler was not called", name)
		}
		if crash {
			rep.paused.Store(true)
			rep.kill(t)
		}
		stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = rep.runner.Stop(stopCtx) // a crashed one cannot clean up
	}

	run("graceful", false)
	if n := attempts(); n != 0 {
		t.Errorf("a graceful stop mid-batch left %d attempts counted, want 0", n)
	}
	for i := range maxAttempts {
		run(fmt.Sprintf("crash-%d", i), true)
	}
	if n := attempts(); n != maxAttempts {
		t.Errorf("%d crashes left %d attempts counted", maxAttempts, n)
	}
	config := fastRunner("")
	config.MaxAttempts = maxAttempts
	final := newReplica(t, es.Schema(), "final", config, runner.Subscription{Name: "crashy",
		Handler: func(context.Context, runner.HandledEvent) error { calls.Add(1); return nil }})
	eventually(t, 20*time.Second, "the partition fails", func() bool {
		return statusOf(t, final.runner.Control(), "crashy")[0].State == runner.StateFailed
	})
	if n := calls.Load(); n != maxAttempts+1 {
		t.Errorf("the handler ran %d times, want once gracefully stopped and MaxAttempts (%d) crashed", n, maxAttempts)
	}
	status := statusOf(t, runner.NewControl(es), "crashy")[0]
	if status.ErrorPosition != 1 || status.Checkpoint != 0 {
		t.Errorf("status = %+v, want failed at position 1, checkpoint 0", status)
	}
}

// A panicking handler is a failing handler: retried, then stopped.
func TestRunnerHandlerPanicIsAFailure(t *testing.T) {
	t.Parallel()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	handler := func(context.Context, runner.HandledEvent) error { panic("boom") }
	config := fastRunner("a")
	config.MaxAttempts = 2
	r := startRunner(t, es, config, runner.Subscription{Name: "panics", Handler: handler})
	appendDeposit(t, es, "account-1", 1)
	eventually(t, 20*time.Second, "the partition fails", func() bool {
		return statusOf(t, r.Control(), "panics")[0].State == runner.StateFailed
	})
	if status := statusOf(t, r.Control(), "panics")[0]; !containsAll(status.LastError, "panicked", "boom") {
		t.Errorf("last error %q does not say the handler panicked", status.LastError)
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// Under the Park policy a failing stream is set aside: other streams flow,
// its later events wait, WaitFor says so; a retry handles the held events
// in order once the handler is fixed, and a skip records its reason.
func TestRunnerParkRetryAndSkip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	model := newBalances(t, es)
	var mu sync.Mutex
	poison := map[string]bool{"account-x:2": true, "account-y:1": true}
	inner := model.handler()
	handler := func(ctx context.Context, scope *store.Scope, e runner.HandledEvent) error {
		mu.Lock()
		bad := poison[fmt.Sprintf("%s:%d", e.Recorded.StreamID, e.Recorded.StreamVersion)]
		mu.Unlock()
		if bad {
			return errors.New("bad event")
		}
		return inner(ctx, scope, e)
	}
	config := fastRunner("a")
	config.MaxAttempts = 2
	r := startRunner(t, es, config, runner.Subscription{Name: "balances", TxHandler: handler, OnFailure: runner.Park})
	c := r.Control()

	appendDeposit(t, es, "account-x", 1)
	appendDeposit(t, es, "account-x", 2) // fails: x parked at 2
	appendDeposit(t, es, "account-y", 5) // fails: y parked at 1
	heldX := appendDeposit(t, es, "account-x", 3)
	appendDeposit(t, es, "account-y", 6)
	other := appendDeposit(t, es, "account-z", 7)
	waitFor(t, r, "balances", other)
	if err := r.WaitFor(ctx, "balances", heldX); !errors.Is(err, runner.ErrStreamParked) {
		t.Errorf("WaitFor on a parked stream = %v, want ErrStreamParked", err)
	}
	parked, err := c.ParkedStreams(ctx, "balances")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, p := range parked {
		got[p.StreamID] = p.StreamVersion
		if p.Error != "bad event" {
			t.Errorf("parked %s with error %q", p.StreamID, p.Error)
		}
	}
	if len(got) != 2 || got["account-x"] != 2 || got["account-y"] != 1 {
		t.Fatalf("parked = %+v, want account-x at 2 and account-y at 1", parked)
	}
	if b, n := model.get(t, "account-x"); b != 1 || n != 1 {
		t.Errorf("account-x: %d after %d events; its held events must wait", b, n)
	}
	if status := statusOf(t, c, "balances")[0]; status.ParkedStreams != 2 || status.State != runner.StateRunning {
		t.Errorf("status = %+v, want running with 2 parked streams", status)
	}

	// Fixed: a retry handles x's held events, in order.
	mu.Lock()
	delete(poison, "account-x:2")
	mu.Unlock()
	if ok, err := c.RetryParked(ctx, "balances", "account-x"); err != nil || !ok {
		t.Fatalf("RetryParked = %v, %v", ok, err)
	}
	eventually(t, 20*time.Second, "account-x is released", func() bool {
		b, n := model.get(t, "account-x")
		return b == 6 && n == 3
	})
	// y's first event stays bad: skip it with a reason; its later one is
	// handled.
	if ok, err := c.SkipParked(ctx, "balances", "account-y", "refund handled by hand, ticket 42"); err != nil || !ok {
		t.Fatalf("SkipParked = %v, %v", ok, err)
	}
	eventually(t, 20*time.Second, "account-y is released", func() bool {
		b, n := model.get(t, "account-y")
		return b == 6 && n == 1
	})
	skipped, err := c.SkippedEvents(ctx, "balances")
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) != 1 || skipped[0].StreamID != "account-y" || skipped[0].StreamVersion != 1 ||
		skipped[0].Reason != "refund handled by hand, ticket 42" || skipped[0].Error != "bad event" {
		t.Errorf("skipped = %+v", skipped)
	}
	// Released streams flow with the log again.
	last := appendDeposit(t, es, "account-x", 10)
	waitFor(t, r, "balances", last)
	if b, n := model.get(t, "account-x"); b != 16 || n != 4 {
		t.Errorf("account-x: %d after %d events, want 16 after 4", b, n)
	}
	if parked, err := c.ParkedStreams(ctx, "balances"); err != nil || len(parked) != 0 {
		t.Errorf("parked after release = %+v, %v", parked, err)
	}
}

// Pause stops dispatching until Resume; Reset to 0 rebuilds the read model,
// whose hook truncates it in the reset's transaction.
func TestRunnerPauseResumeReset(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	model := newBalances(t, es)
	r := startRunner(t, es, fastRunner("a"), runner.Subscription{Name: "balances", TxHandler: model.handler()})
	c := r.Control()
	first := appendDeposit(t, es, "account-1", 1)
	waitFor(t, r, "balances", first)

	if err := c.Pause(ctx, "balances"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "paused", func() bool { return statusOf(t, c, "balances")[0].State == runner.StatePaused })
	second := appendDeposit(t, es, "account-1", 2)
	time.Sleep(300 * time.Millisecond)
	if _, n := model.get(t, "account-1"); n != 1 {
		t.Errorf("a paused subscription handled events: %d", n)
	}
	if err := c.Resume(ctx, "balances"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, r, "balances", second)

	fenceBefore := statusOf(t, c, "balances")[0].FenceToken
	truncate := func(ctx context.Context, scope *store.Scope) error {
		_, err := scope.Tx().Exec(ctx, "TRUNCATE "+model.table)
		return err
	}
	if err := c.Reset(ctx, "balances", 0, &runner.ResetOpts{Hook: truncate}); err != nil {
		t.Fatal(err)
	}
	third := appendDeposit(t, es, "account-1", 4)
	waitFor(t, r, "balances", third)
	if b, n := model.get(t, "account-1"); b != 7 || n != 3 {
		t.Errorf("after a rebuild account-1 has %d after %d events, want 7 after 3", b, n)
	}
	if fence := statusOf(t, c, "balances")[0].FenceToken; fence <= fenceBefore {
		t.Errorf("fence %d after the reset, %d before: a reset must fence the leader", fence, fenceBefore)
	}
	if err := c.Pause(ctx, "nonesuch"); !errors.Is(err, runner.ErrUnknownSubscription) {
		t.Errorf("Pause of an unknown subscription = %v", err)
	}
}

// A batch that began before a Pause must not commit after it: the leader
// learns of a pause at its next renewal, so the checkpoint itself refuses a
// partition that is no longer running. Here the pause reaches the table
// without telling the leader, whose renewals are far apart: its next batch
// rolls back, it waits paused, and Resume hands it the event again.
// It runs as the owner and as a runtime role, whose runner reads the
// partition's state (LeaseState) when a checkpoint is refused.
func TestRunnerBatchDoesNotCommitAfterPause(t *testing.T) {
	t.Parallel()
	t.Run("owner", func(t *testing.T) {
		t.Parallel()
		es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
		batchDoesNotCommitAfterPause(t, es, newBalances(t, es))
	})
	t.Run("runtime role", func(t *testing.T) {
		t.Parallel()
		owner, es, role, _ := runtimeStore(t, 4)
		model := newBalances(t, owner)
		superuserExec(t, fmt.Sprintf("GRANT SELECT, INSERT, UPDATE ON %s TO %s", model.table, pgx.Identifier{role}.Sanitize()))
		batchDoesNotCommitAfterPause(t, es, model)
	})
}

func batchDoesNotCommitAfterPause(t *testing.T, es *store.EventStore, model *balances) {
	ctx := context.Background()
	config := fastRunner("a")
	config.LeaseTTL, config.RecheckInterval = time.Hour, 30*time.Minute
	r := startRunner(t, es, config, runner.Subscription{Name: "balances", TxHandler: model.handler()})
	c := r.Control()
	first := appendDeposit(t, es, "account-1", 1)
	waitFor(t, r, "balances", first)
	before := statusOf(t, c, "balances")[0].Checkpoint

	superuserExec(t, fmt.Sprintf(`UPDATE %s.subscriptions SET state = 'paused' WHERE name = 'balances'`,
		pgx.Identifier{es.Schema()}.Sanitize()))
	second := appendDeposit(t, es, "account-1", 2)
	time.Sleep(500 * time.Millisecond)
	if _, n := model.get(t, "account-1"); n != 1 {
		t.Fatalf("a batch committed after the pause: %d events handled, want 1", n)
	}
	status := statusOf(t, c, "balances")[0]
	if status.Checkpoint != before || status.State != runner.StatePaused {
		t.Fatalf("after the pause: %+v, want paused at checkpoint %d", status, before)
	}
	if err := c.Resume(ctx, "balances"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, r, "balances", second)
	if b, n := model.get(t, "account-1"); b != 3 || n != 2 {
		t.Errorf("after Resume account-1 has %d after %d events, want 3 after 2", b, n)
	}
}

// A filtered subscription that finds nothing moves its checkpoint to the
// head, so it does not scan the same events on every poll.
func TestRunnerSparseFilterAdvancesToHead(t *testing.T) {
	t.Parallel()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	var handled atomic.Int32
	handler := func(context.Context, runner.HandledEvent) error { handled.Add(1); return nil }
	r := startRunner(t, es, fastRunner("a"), runner.Subscription{Name: "withdrawals", EventTypes: []string{"account.withdrawn"}, Handler: handler})
	var last *core.CommittedEvents
	for i := range 30 {
		last = appendDeposit(t, es, fmt.Sprintf("account-%d", i), 1)
	}
	waitFor(t, r, "withdrawals", last)
	eventually(t, 10*time.Second, "the checkpoint reaches the head", func() bool {
		s := statusOf(t, r.Control(), "withdrawals")[0]
		return s.Checkpoint == 30 && s.Lag == 0
	})
	if n := handled.Load(); n != 0 {
		t.Errorf("handled %d events of a type the filter excludes", n)
	}
	w, err := es.Append(context.Background(), "account-1", core.Any, core.NewEvent(Withdrawn{Amount: 1}))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, r, "withdrawals", w)
	if n := handled.Load(); n != 1 {
		t.Errorf("handled %d events, want the one withdrawal", n)
	}
}

// StartAtHead skips what the log held when the subscription first started.
func TestRunnerStartAtHead(t *testing.T) {
	t.Parallel()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	appendDeposit(t, es, "account-1", 1)
	appendDeposit(t, es, "account-2", 1)
	var seen []int64
	var mu sync.Mutex
	handler := func(_ context.Context, e runner.HandledEvent) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, e.Recorded.GlobalPosition)
		return nil
	}
	r := startRunner(t, es, fastRunner("a"), runner.Subscription{Name: "new-only", StartAt: runner.StartAtHead, Handler: handler})
	last := appendDeposit(t, es, "account-3", 1)
	waitFor(t, r, "new-only", last)
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(seen, []int64{3}) {
		t.Errorf("handled positions %v, want [3]", seen)
	}
}

// Invalid options are errors naming the field.
func TestRunnerValidatesOptions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	noop := func(context.Context, runner.HandledEvent) error { return nil }
	for _, tc := range []struct {
		config runner.Config
		field  string
	}{
		{runner.Config{LeaseTTL: time.Millisecond}, "runner.Config.LeaseTTL"},
		{runner.Config{BatchSize: runner.MaxBatchSize + 1}, "runner.Config.BatchSize"},
		{runner.Config{MaxAttempts: -1}, "runner.Config.MaxAttempts"},
		{runner.Config{PollInterval: -1}, "runner.Config.PollInterval"},
	} {
		var invalid *core.InvalidInputError
		if _, err := runner.New(es, &tc.config); !errors.As(err, &invalid) || invalid.Field != tc.field {
			t.Errorf("New(%+v) = %v, want an invalid %s", tc.config, err, tc.field)
		}
	}
	r, err := runner.New(es, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sub   runner.Subscription
		field string
	}{
		{runner.Subscription{Name: "", Handler: noop}, "runner.Subscription.Name"},
		{runner.Subscription{Name: "has space", Handler: noop}, "runner.Subscription.Name"},
		{runner.Subscription{Name: "none"}, "runner.Subscription.Handler"},
		{runner.Subscription{Name: "both", Handler: noop, TxHandler: func(context.Context, *store.Scope, runner.HandledEvent) error { return nil }}, "runner.Subscription.Handler"},
		{runner.Subscription{Name: "parts", Handler: noop, Partitions: core.StreamBuckets + 1}, "runner.Subscription.Partitions"},
		{runner.Subscription{Name: "cat", Handler: noop, Category: "bad-category"}, "category"},
	} {
		var invalid *core.InvalidInputError
		if err := r.Add(tc.sub); !errors.As(err, &invalid) || invalid.Field != tc.field {
			t.Errorf("Add(%q) = %v, want an invalid %s", tc.sub.Name, err, tc.field)
		}
	}
	if err := r.Add(runner.Subscription{Name: "twice", Handler: noop}); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(runner.Subscription{Name: "twice", Handler: noop}); !errors.Is(err, core.ErrInvalidInput) {
		t.Errorf("adding a name twice = %v", err)
	}

	// A subscription stored with 2 partitions does not start with 3.
	r1 := startRunner(t, es, fastRunner("a"), runner.Subscription{Name: "split", Handler: noop, Partitions: 2})
	if err := r1.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	r2, err := runner.New(es, fastRunner("b"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.Add(runner.Subscription{Name: "split", Handler: noop, Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	var invalid *core.InvalidInputError
	if err := r2.Start(ctx); !errors.As(err, &invalid) || invalid.Field != "runner.Subscription.Partitions" {
		t.Errorf("Start with another partition count = %v", err)
	}
}
