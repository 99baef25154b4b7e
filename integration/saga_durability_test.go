package integration_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/runner"
	"github.com/mire-go/mire/saga"
	"github.com/mire-go/mire/store"
)

// startEngine runs an engine (no runner: nothing to route) that the test
// stops itself.
func startEngine(t *testing.T, es *store.EventStore, config *saga.Config, defs ...saga.AnyDefinition) *saga.Engine {
	t.Helper()
	engine, err := saga.New(es, nil, config, defs...)
	if err != nil {
		t.Fatal(err)
	}
	if err := engine.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = engine.Stop(ctx)
	})
	return engine
}

func stepEntries(t *testing.T, e *saga.Engine, name, id string) int {
	t.Helper()
	n := 0
	for _, ty := range journalTypes(t, e, name, id) {
		if ty == "saga.stepped" {
			n++
		}
	}
	return n
}

// An executor that dies after a Step's side effect and before its journal
// commits: the next executor runs the step again with the same idempotency
// key (at least once), and a StepTx that died before its commit leaves
// nothing behind and runs once more (exactly once).
func TestSagaCrashMidStep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: sagaRegistry()})
	table := pgx.Identifier{es.Schema(), "ledger"}.Sanitize()
	if _, err := es.Pool().Exec(ctx, "CREATE TABLE "+table+" (entry text PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var keys []string
	crash := make(chan struct{}) // closed by the first attempt: the process dies
	var crashOnce sync.Once
	def := saga.Define("crashy", 1, func(c *saga.Context, _ struct{}) (int, error) {
		if _, err := saga.Step(c, "charge", func(ctx context.Context, info saga.StepInfo) (string, error) {
			mu.Lock()
			keys = append(keys, info.IdempotencyKey)
			first := len(keys) == 1
			mu.Unlock()
			if first {
				crashOnce.Do(func() { close(crash) })
				<-ctx.Done() // dies before its result is journaled
			}
			return "charged", nil
		}); err != nil {
			return 0, err
		}
		return saga.StepTx(c, "ledger", func(ctx context.Context, scope *store.Scope) (int, error) {
			_, err := scope.Tx().Exec(ctx, "INSERT INTO "+table+" VALUES ('charge')")
			return 1, err
		})
	})
	a, err := saga.New(es, nil, fastSagas("a"), def)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := def.Start(ctx, a, "s-1", struct{}{}); err != nil {
		t.Fatal(err)
	}
	<-crash
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := a.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	// Its claim lapses; another executor takes the saga over.
	b := startEngine(t, es, fastSagas("b"), def)
	if got, err := result(t, def.Handle(b, "s-1")); err != nil || got != 1 {
		t.Fatalf("Result = %v, %v", got, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(keys) != 2 || keys[0] != keys[1] {
		t.Errorf("the step ran with keys %v: want twice, with one key", keys)
	}
	var rows int
	if err := es.Pool().QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&rows); err != nil || rows != 1 {
		t.Errorf("ledger has %d rows (%v), want 1", rows, err)
	}
	if n := stepEntries(t, b, "crashy", "s-1"); n != 2 {
		t.Errorf("%d step entries, want 2", n)
	}
}

// pausableStore is a store on a pool of its own whose acquires can be
// held, as in a stopped process.
func pausableStore(t *testing.T, schema, name string) (*store.EventStore, *atomic.Bool) {
	t.Helper()
	var paused atomic.Bool
	pool := pausablePool(t, "pausable-"+name+"-"+schema, 8, &paused)
	es, err := store.New(pool, &store.Config{Schema: schema, Registry: sagaRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return es, &paused
}

// An executor whose process stops while its StepTx is open (it can no
// longer renew its claim) is overtaken once the claim expires: another
// executor runs the saga to its end, and the stale one's journal append
// conflicts when it wakes, so its transaction, and the write in it, roll
// back. An executor that is merely slow keeps its claim by renewing it.
func TestSagaStaleExecutorIsFenced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: sagaRegistry()})
	table := pgx.Identifier{es.Schema(), "writes"}.Sanitize()
	if _, err := es.Pool().Exec(ctx, "CREATE TABLE "+table+" (n int)"); err != nil {
		t.Fatal(err)
	}
	slowStore, paused := pausableStore(t, es.Schema(), "slow")
	release := make(chan struct{})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	var stalled atomic.Bool
	def := saga.Define("stale", 1, func(c *saga.Context, _ struct{}) (string, error) {
		return saga.StepTx(c, "write", func(ctx context.Context, scope *store.Scope) (string, error) {
			if _, err := scope.Tx().Exec(ctx, "INSERT INTO "+table+" VALUES (1)"); err != nil {
				return "", err
			}
			if stalled.CompareAndSwap(false, true) {
				paused.Store(true) // the process stops: no claim renewal either
				<-release
			}
			return "written", nil
		})
	})
	slowConfig := fastSagas("slow")
	slowConfig.ClaimTTL = time.Second
	slow := startEngine(t, slowStore, slowConfig, def)
	if _, err := def.Start(ctx, slow, "s-2", struct{}{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the first executor stalls", stalled.Load)
	fastConfig := fastSagas("fast")
	fastConfig.ClaimTTL = time.Second
	fast := startEngine(t, es, fastConfig, def)
	if got, err := result(t, def.Handle(fast, "s-2")); err != nil || got != "written" {
		t.Fatalf("Result = %q, %v", got, err)
	}
	paused.Store(false)
	close(release)
	time.Sleep(500 * time.Millisecond) // the stale executor tries to commit
	var rows int
	if err := es.Pool().QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&rows); err != nil || rows != 1 {
		t.Errorf("%d writes (%v), want the one of the executor that finished", rows, err)
	}
	if n := stepEntries(t, fast, "stale", "s-2"); n != 1 {
		t.Errorf("%d step entries, want 1", n)
	}
	if info, err := def.Handle(fast, "s-2").Status(ctx); err != nil || info.Status != saga.StatusCompleted {
		t.Errorf("status = %+v, %v", info, err)
	}
}

// A long step keeps its claim: the executor renews it, and no other
// executor runs the saga beside it.
func TestSagaLongStepKeepsItsClaim(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: sagaRegistry()})
	var runs atomic.Int32
	def := saga.Define("long", 1, func(c *saga.Context, _ struct{}) (int, error) {
		return saga.Step(c, "slow", func(context.Context, saga.StepInfo) (int, error) {
			runs.Add(1)
			time.Sleep(2500 * time.Millisecond) // past two claim TTLs
			return 1, nil
		})
	})
	config := func(name string) *saga.Config {
		c := fastSagas(name)
		c.ClaimTTL = time.Second
		return c
	}
	a := startEngine(t, es, config("a"), def)
	startEngine(t, es, config("b"), def)
	if _, err := def.Start(ctx, a, "l-1", struct{}{}); err != nil {
		t.Fatal(err)
	}
	if got, err := result(t, def.Handle(a, "l-1")); err != nil || got != 1 {
		t.Fatalf("Result = %d, %v", got, err)
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("the step ran %d times, want once", n)
	}
}

// A reply delivered twice (the inbox subscription rewound to the start of
// the log) is one inbox entry; a reply that arrives while the saga sleeps,
// before it awaits, is taken when it does.
func TestSagaInboxIsExactlyOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	def := saga.Define("early", 1, func(c *saga.Context, in PlaceOrder) (Receipt, error) {
		req, err := saga.Send(c, "stock-"+in.SKU, core.Any, ReserveStock{OrderID: c.ID(), SKU: in.SKU, Qty: in.Qty})
		if err != nil {
			return Receipt{}, err
		}
		// The reply arrives while the saga sleeps.
		if err := saga.Sleep(c, 500*time.Millisecond); err != nil {
			return Receipt{}, err
		}
		if _, err := saga.AwaitResponse[StockReply](c, req); err != nil {
			return Receipt{}, err
		}
		return Receipt{OrderID: c.ID()}, nil
	}, saga.Receives(StockReserved{}, StockUnavailable{}))
	env := newSagaEnv(t, nil, fastSagas("a"), nil, def)
	h, err := def.Start(ctx, env.engine, "e-1", PlaceOrder{SKU: "plum", Qty: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := result(t, h); err != nil {
		t.Fatal(err)
	}
	types := journalTypes(t, env.engine, "early", "e-1")
	received := func() int {
		return countEvents(t, env.es, saga.JournalStream("early", "e-1"), "saga.received")
	}
	if received() != 1 {
		t.Fatalf("journal %v: want one received entry", types)
	}
	// Every reply routed again.
	if err := env.runner.Control().Reset(ctx, saga.InboxSubscription, 0, nil); err != nil {
		t.Fatal(err)
	}
	last := appendDeposit(t, env.es, "account-1", 1)
	waitFor(t, env.runner, saga.InboxSubscription, last)
	if n := received(); n != 1 {
		t.Errorf("%d received entries after the router replayed the log, want 1", n)
	}
}

// Timers survive a restart: a saga waits for a payment with a deadline,
// every engine and runner stops until past it, and on restart the timeout
// fires once and the saga compensates; a reply that comes afterwards is not
// taken.
func TestSagaTimeoutAcrossRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: sagaRegistry()})
	var slow atomic.Bool
	slow.Store(true)
	first := newSagaEnv(t, es, fastSagas("a"), &slow)
	h, err := orderSaga.Start(ctx, first.engine, "t-1", PlaceOrder{SKU: "date", Qty: 1, Amount: 1, PaymentWithin: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the saga waits for the payment", func() bool {
		info, err := h.Status(ctx)
		return err == nil && info.Status == saga.StatusWaiting && countEvents(t, es, "payment-t-1", ChargePayment{}.EventType()) == 1
	})
	for _, s := range []interface{ Stop(context.Context) error }{first.engine, first.runner} {
		if err := s.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1500 * time.Millisecond) // past the deadline, with nothing running
	second := newSagaEnv(t, es, fastSagas("b"), &slow)
	_, err = result(t, orderSaga.Handle(second.engine, "t-1"))
	var failed *saga.FailedError
	if !errors.As(err, &failed) || failed.Status != saga.StatusCompensated {
		t.Fatalf("Result = %v, want compensated", err)
	}
	// The payment service answers, late.
	charges, err := es.ReadEvents(ctx, core.ReadStream("payment-t-1"))
	if err != nil || len(charges) != 1 {
		t.Fatalf("charges %v, %v", charges, err)
	}
	late, err := saga.Reply(ctx, es, charges[0], "payment-t-1", core.Any, PaymentTaken{OrderID: "t-1"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, second.runner, saga.InboxSubscription, late)
	types := journalTypes(t, second.engine, "order", "t-1")
	counts := map[string]int{}
	for _, ty := range types {
		counts[ty]++
	}
	if counts["saga.timed-out"] != 1 || counts["saga.consumed"] != 1 || counts["saga.received"] != 1 {
		t.Errorf("journal %v: want one timeout, the stock reply consumed and the late payment not routed", types)
	}
	if n := countEvents(t, es, "stock-date", ReleaseStock{}.EventType()); n != 1 {
		t.Errorf("%d releases, want 1", n)
	}
}

// A reply that arrives at the deadline: each saga, of many, has exactly
// one outcome journaled, a reply taken or a timeout.
func TestSagaTimeoutRacesReply(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const sagas = 100
	def := saga.Define("race", 1, func(c *saga.Context, _ struct{}) (string, error) {
		req, err := saga.Send(c, "payment-"+c.ID(), core.Any, ChargePayment{OrderID: c.ID(), Amount: 1})
		if err != nil {
			return "", err
		}
		_, err = saga.AwaitResponse[StockReply](c, req, saga.Within(300*time.Millisecond))
		if errors.Is(err, saga.ErrTimeout) {
			return "timeout", nil
		}
		return "reply", err
	}, saga.Receives(PaymentTaken{}))
	var slow atomic.Bool
	slow.Store(true) // the test replies itself, at the deadline
	env := newSagaEnv(t, nil, fastSagas("a"), &slow, def)
	for i := range sagas {
		if _, err := def.Start(ctx, env.engine, fmt.Sprintf("r-%d", i), struct{}{}); err != nil {
			t.Fatal(err)
		}
	}
	var replied sync.WaitGroup
	defer replied.Wait()
	for i := range sagas {
		stream := fmt.Sprintf("payment-r-%d", i)
		var request *core.RecordedEvent
		eventually(t, 20*time.Second, "the request is sent", func() bool {
			events, err := env.es.ReadEvents(ctx, core.ReadStream(stream))
			if err == nil && len(events) > 0 {
				request = events[0]
			}
			return request != nil
		})
		// Around the deadline (the await's clock starts just after the
		// request is recorded): some before it, some after.
		jitter := time.Duration(i%19-15) * 10 * time.Millisecond
		replied.Add(1)
		go func() {
			defer replied.Done()
			time.Sleep(time.Until(request.RecordedAt.Add(300*time.Millisecond + jitter)))
			if _, err := saga.Reply(ctx, env.es, request, stream, core.Any, PaymentTaken{OrderID: request.StreamID}); err != nil {
				t.Error(err)
			}
		}()
	}
	outcomes := map[string]int{}
	for i := range sagas {
		id := fmt.Sprintf("r-%d", i)
		got, err := result(t, def.Handle(env.engine, id))
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		outcomes[got]++
		counts := map[string]int{}
		for _, ty := range journalTypes(t, env.engine, "race", id) {
			counts[ty]++
		}
		if counts["saga.timed-out"]+counts["saga.consumed"] != 1 {
			t.Errorf("%s: %v: want exactly one outcome", id, counts)
		}
	}
	t.Logf("outcomes: %v", outcomes)
}

// A saga whose journal no longer matches its code is blocked, with the
// reason, and not corrupted; so is one of a version the engine does not
// define. Retry runs it again once the code is fixed.
func TestSagaBlocksOnNonDeterminism(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: sagaRegistry()})
	v1 := func(stepName string) *saga.Definition[struct{}, string] {
		return saga.Define("drift", 1, func(c *saga.Context, _ struct{}) (string, error) {
			if _, err := saga.Step(c, stepName, func(context.Context, saga.StepInfo) (int, error) { return 1, nil }); err != nil {
				return "", err
			}
			return "", saga.Sleep(c, 300*time.Millisecond)
		})
	}
	original := startEngine(t, es, fastSagas("a"), v1("reserve"))
	if _, err := v1("reserve").Start(ctx, original, "d-1", struct{}{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the saga sleeps", func() bool {
		info, err := original.Get(ctx, "drift", "d-1")
		return err == nil && info.Status == saga.StatusWaiting
	})
	if err := original.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// A deploy renamed the step without a new version.
	changed := startEngine(t, es, fastSagas("b"), v1("reserve-stock"))
	_, err := result(t, v1("reserve-stock").Handle(changed, "d-1"))
	if !errors.Is(err, saga.ErrBlocked) || !containsAll(err.Error(), "reserve", "reserve-stock") {
		t.Fatalf("Result = %v, want blocked naming both steps", err)
	}
	if err := changed.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// A version the engine does not define.
	v2 := saga.Define("drift", 2, func(*saga.Context, struct{}) (string, error) { return "v2", nil })
	other := startEngine(t, es, fastSagas("c"), v2)
	if err := other.Retry(ctx, "drift", "d-1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "blocked on the version", func() bool {
		info, err := other.Get(ctx, "drift", "d-1")
		return err == nil && info.Status == saga.StatusBlocked && containsAll(info.LastError, "version 1")
	})
	if err := other.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// The fix: the original code again.
	fixed := startEngine(t, es, fastSagas("d"), v1("reserve"))
	if err := fixed.Retry(ctx, "drift", "d-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := result(t, v1("reserve").Handle(fixed, "d-1")); err != nil {
		t.Fatalf("after the fix: %v", err)
	}
}

// Compensations run in reverse order, each once, even when the executor
// dies during one; one that keeps failing ends the saga
// compensation_failed.
func TestSagaCompensationOrderAndCrash(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: sagaRegistry()})
	var mu sync.Mutex
	var order []string
	crashed := make(chan struct{})
	var crashOnce sync.Once
	def := saga.Define("undo", 1, func(c *saga.Context, in struct{ Broken bool }) (string, error) {
		for _, name := range []string{"first", "second", "third"} {
			c.Compensate(name, func(c *saga.Context) error {
				_, err := saga.Step(c, "undo "+name, func(ctx context.Context, _ saga.StepInfo) (string, error) {
					mu.Lock()
					order = append(order, name)
					mu.Unlock()
					if name == "second" {
						crashOnce.Do(func() { close(crashed); <-ctx.Done() })
					}
					if in.Broken && name == "first" {
						return "", errors.New("cannot undo")
					}
					return name, nil
				})
				return err
			})
		}
		return "", errors.New("the saga fails")
	})
	config := fastSagas("a")
	config.MaxAttempts = 2
	a, err := saga.New(es, nil, config, def)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := def.Start(ctx, a, "u-1", struct{ Broken bool }{}); err != nil {
		t.Fatal(err)
	}
	<-crashed
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	b := startEngine(t, es, fastSagas("b"), def)
	_, err = result(t, def.Handle(b, "u-1"))
	var failed *saga.FailedError
	if !errors.As(err, &failed) || failed.Status != saga.StatusCompensated {
		t.Fatalf("Result = %v, want compensated", err)
	}
	mu.Lock()
	got := fmt.Sprint(order)
	mu.Unlock()
	// "second" ran twice: its executor died before journaling it.
	if got != "[third second second first]" {
		t.Errorf("compensations ran %s, want [third second second first]", got)
	}

	// A compensation that keeps failing.
	if _, err := def.Start(ctx, b, "u-2", struct{ Broken bool }{Broken: true}); err != nil {
		t.Fatal(err)
	}
	_, err = result(t, def.Handle(b, "u-2"))
	if !errors.As(err, &failed) || failed.Status != saga.StatusCompensationFailed {
		t.Fatalf("Result = %v, want compensation_failed", err)
	}
}

// Cancelling a waiting saga makes it compensate.
func TestSagaCancel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var slow atomic.Bool
	slow.Store(true)
	env := newSagaEnv(t, nil, fastSagas("a"), &slow)
	h, err := orderSaga.Start(ctx, env.engine, "c-1", PlaceOrder{SKU: "yam", Qty: 1, Amount: 1})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the saga waits for the payment", func() bool {
		return countEvents(t, env.es, "payment-c-1", ChargePayment{}.EventType()) == 1
	})
	if err := h.Cancel(ctx, "customer changed their mind"); err != nil {
		t.Fatal(err)
	}
	_, err = result(t, h)
	var failed *saga.FailedError
	if !errors.As(err, &failed) || failed.Status != saga.StatusCompensated || !errors.Is(saga.ErrCancelled, saga.ErrCancelled) {
		t.Fatalf("Result = %v, want compensated", err)
	}
	if n := countEvents(t, env.es, "stock-yam", ReleaseStock{}.EventType()); n != 1 {
		t.Errorf("%d releases, want 1", n)
	}
	if err := h.Cancel(ctx, "again"); !errors.Is(err, saga.ErrNotFound) {
		t.Errorf("cancelling an ended saga = %v, want ErrNotFound", err)
	}
}

// Waiting sagas hold no goroutines: ten thousand of them waiting for
// replies that never come leave the goroutine count where it was.
func TestSagaWaitingHoldsNoGoroutines(t *testing.T) {
	// Not parallel: it counts the process's goroutines.
	ctx := context.Background()
	def := saga.Define("patient", 1, func(c *saga.Context, _ struct{}) (string, error) {
		_, err := saga.Await[PaymentTaken](c)
		return "", err
	}, saga.Receives(PaymentTaken{}))
	es := pgenv.NewStore(t, nil, &store.Config{Registry: sagaRegistry()})
	engine := startEngine(t, es, fastSagas("a"), def)
	const sagas = 10_000
	var wg sync.WaitGroup
	ids := make(chan int, sagas)
	for i := range sagas {
		ids <- i
	}
	close(ids)
	for range 8 {
		wg.Go(func() {
			for i := range ids {
				if _, err := def.Start(ctx, engine, fmt.Sprintf("p-%d", i), struct{}{}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	eventually(t, 3*time.Minute, "every saga waits", func() bool {
		counts, err := engine.Counts(ctx)
		return err == nil && counts[saga.StatusWaiting] == sagas
	})
	before := runtime.NumGoroutine()
	time.Sleep(300 * time.Millisecond)
	if after := runtime.NumGoroutine(); after > before+10 {
		t.Errorf("%d goroutines with %d sagas waiting, %d before", after, sagas, before)
	}
	t.Logf("%d goroutines in the test process with %d sagas waiting", runtime.NumGoroutine(), sagas)
}

var _ = runner.StartAtHead

// Engines run only the sagas they define, so services with sagas of their
// own share a schema; an engine may hold several versions of one saga,
// each saga running under the version it started with.
func TestSagaEnginesRunTheirOwnSagas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: sagaRegistry()})
	answer := func(name string, version int, v string) *saga.Definition[struct{}, string] {
		return saga.Define(name, version, func(*saga.Context, struct{}) (string, error) { return v, nil })
	}
	starter, err := saga.New(es, nil, &saga.Config{NoExecutors: true}, answer("svc_a", 1, ""), answer("svc_b", 1, ""),
		answer("multi", 1, ""), answer("multi", 2, ""))
	if err != nil {
		t.Fatal(err)
	}
	startEngine(t, es, fastSagas("a"), answer("svc_a", 1, "a"))
	if _, err := answer("svc_b", 1, "").Start(ctx, starter, "b-1", struct{}{}); err != nil {
		t.Fatal(err)
	}
	if _, err := answer("svc_a", 1, "").Start(ctx, starter, "a-1", struct{}{}); err != nil {
		t.Fatal(err)
	}
	if got, err := result(t, answer("svc_a", 1, "").Handle(starter, "a-1")); err != nil || got != "a" {
		t.Fatalf("svc_a: %q, %v", got, err)
	}
	time.Sleep(300 * time.Millisecond)
	if info, err := starter.Get(ctx, "svc_b", "b-1"); err != nil || info.Status != saga.StatusRunning {
		t.Fatalf("svc_b's saga with only svc_a's engine running: %+v, %v; want it left running", info, err)
	}
	startEngine(t, es, fastSagas("b"), answer("svc_b", 1, "b"))
	if got, err := result(t, answer("svc_b", 1, "").Handle(starter, "b-1")); err != nil || got != "b" {
		t.Fatalf("svc_b: %q, %v", got, err)
	}

	// Two versions in one engine.
	if _, err := answer("multi", 1, "").Start(ctx, starter, "m-1", struct{}{}); err != nil {
		t.Fatal(err)
	}
	if _, err := answer("multi", 2, "").Start(ctx, starter, "m-2", struct{}{}); err != nil {
		t.Fatal(err)
	}
	startEngine(t, es, fastSagas("m"), answer("multi", 1, "one"), answer("multi", 2, "two"))
	for id, want := range map[string]string{"m-1": "one", "m-2": "two"} {
		if got, err := result(t, answer("multi", 1, "").Handle(starter, id)); err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", id, got, err, want)
		}
	}
	if _, err := saga.New(es, nil, nil, answer("multi", 1, ""), answer("multi", 1, "")); !errors.Is(err, core.ErrInvalidInput) {
		t.Errorf("one version defined twice: %v", err)
	}
}

// A reply that reaches a blocked saga is kept in its journal: once the
// code is fixed and the saga retried, the saga takes it.
func TestSagaBlockedSagaKeepsReplies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var broken atomic.Bool
	broken.Store(true)
	def := saga.Define("fragile", 1, func(c *saga.Context, _ struct{}) (string, error) {
		req, err := saga.Send(c, "payment-"+c.ID(), core.Any, ChargePayment{OrderID: c.ID(), Amount: 1})
		if err != nil {
			return "", err
		}
		if broken.Load() {
			panic("a bug, fixed in the next deploy")
		}
		if _, err := saga.AwaitResponse[StockReply](c, req); err != nil {
			return "", err
		}
		return "paid", nil
	}, saga.Receives(PaymentTaken{}))
	env := newSagaEnv(t, nil, fastSagas("a"), nil, def)
	if _, err := def.Start(ctx, env.engine, "f-1", struct{}{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "blocked, and the reply routed", func() bool {
		info, err := env.engine.Get(ctx, "fragile", "f-1")
		return err == nil && info.Status == saga.StatusBlocked &&
			countEvents(t, env.es, saga.JournalStream("fragile", "f-1"), "saga.received") == 1
	})
	broken.Store(false)
	if err := env.engine.Retry(ctx, "fragile", "f-1"); err != nil {
		t.Fatal(err)
	}
	if got, err := result(t, def.Handle(env.engine, "f-1")); err != nil || got != "paid" {
		t.Fatalf("Result = %q, %v", got, err)
	}
}
