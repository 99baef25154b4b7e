package integration_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/runner"
	"github.com/mire-go/mire/store"
)

// replica is a runner with a pool and store of its own on a shared schema,
// as another process would have: its connections can be paused (every
// acquire waits, as in a stopped process) and killed.
type replica struct {
	name   string
	pool   *pgxpool.Pool
	store  *store.EventStore
	runner *runner.Runner
	paused atomic.Bool
}

// pausablePool is a pool of its own on the test server, named app for
// pg_stat_activity, whose acquires wait while paused is set: a process
// stopped (a long GC pause, SIGSTOP), as its peers and the database see it.
func pausablePool(t *testing.T, app string, maxConns int32, paused *atomic.Bool) *pgxpool.Pool {
	t.Helper()
	config, err := pgxpool.ParseConfig(pgenv.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	config.MaxConns = maxConns
	config.ConnConfig.RuntimeParams["application_name"] = app
	config.PrepareConn = func(ctx context.Context, _ *pgx.Conn) (bool, error) {
		for paused.Load() {
			select {
			case <-ctx.Done():
				return false, ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
		return true, nil
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// terminateApp kills every connection named app, and returns how many.
func terminateApp(t *testing.T, app string) int {
	t.Helper()
	var killed int
	err := pgenv.Pool(t).QueryRow(context.Background(),
		`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()`,
		app).Scan(&killed)
	if err != nil {
		t.Fatal(err)
	}
	return killed
}

func newReplica(t *testing.T, schema, name string, config *runner.Config, subs ...runner.Subscription) *replica {
	t.Helper()
	rep := &replica{name: name}
	rep.pool = pausablePool(t, rep.app(schema), 8, &rep.paused)
	var err error
	if rep.store, err = store.New(rep.pool, &store.Config{Schema: schema, Registry: bankRegistry()}); err != nil {
		t.Fatal(err)
	}
	config.WorkerID = name
	rep.runner = startRunner(t, rep.store, config, subs...)
	return rep
}

func (rep *replica) app(schema string) string { return "replica-" + rep.name + "-" + schema }

// kill terminates every connection of the replica's, its LISTEN
// connection included.
func (rep *replica) kill(t *testing.T) int {
	t.Helper()
	return terminateApp(t, rep.app(rep.store.Schema()))
}

func (rep *replica) connections(t *testing.T) int {
	t.Helper()
	var n int
	err := pgenv.Pool(t).QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`,
		rep.app(rep.store.Schema())).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func leaderOf(t *testing.T, c *runner.Control, name string) (string, int64) {
	t.Helper()
	s := statusOf(t, c, name)[0]
	return s.Worker, s.FenceToken
}

// A leader that stops gracefully releases its lease and announces it: the
// standby takes over at once, long before the lease would have expired or
// its next recheck, with a higher fence, and goes on from the checkpoint.
func TestRunnerFailoverOnStop(t *testing.T) {
	t.Parallel()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	model := newBalances(t, es)
	sub := runner.Subscription{Name: "balances", TxHandler: model.handler()}
	slow := &runner.Config{LeaseTTL: 30 * time.Second, RecheckInterval: 10 * time.Second}
	a := newReplica(t, es.Schema(), "a", slow, sub)
	c := runner.NewControl(es)
	eventually(t, 10*time.Second, "a leads", func() bool { w, _ := leaderOf(t, c, "balances"); return w == "a" })
	b := newReplica(t, es.Schema(), "b", &runner.Config{LeaseTTL: 30 * time.Second, RecheckInterval: 10 * time.Second}, sub)
	first := appendDeposit(t, es, "account-1", 1)
	waitFor(t, a.runner, "balances", first)
	_, fenceA := leaderOf(t, c, "balances")

	// b made its first check at start; its next is 10s away.
	time.Sleep(200 * time.Millisecond)
	stopped := time.Now()
	if err := a.runner.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "b takes over", func() bool { w, _ := leaderOf(t, c, "balances"); return w == "b" })
	took := time.Since(stopped)
	if _, fenceB := leaderOf(t, c, "balances"); fenceB <= fenceA {
		t.Errorf("b's fence %d is not above a's %d", fenceB, fenceA)
	}
	if took > 2*time.Second {
		t.Errorf("b took over %v after a stopped: the release was not announced", took)
	}
	t.Logf("standby took over %v after the leader stopped (TTL 30s, recheck 10s)", took)
	second := appendDeposit(t, es, "account-1", 2)
	waitFor(t, b.runner, "balances", second)
	if bal, n := model.get(t, "account-1"); bal != 3 || n != 2 {
		t.Errorf("account-1: %d after %d events, want 3 after 2", bal, n)
	}
}

// A leader that stops answering (its process stopped: every connection it
// asks for waits) while a batch is open is taken over once its lease
// expires; its batch, still open, rolls back (its session ends on the idle
// timeout, or its checkpoint finds the fence moved), so the read model
// counts every event once.
func TestRunnerPausedLeaderIsFenced(t *testing.T) {
	t.Parallel()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	model := newBalances(t, es)
	inner := model.handler()
	block := make(chan struct{})
	var blockOnce sync.Once
	var aBlocked atomic.Bool
	var a *replica
	handlerFor := func(name string) runner.TransactionalEventHandler {
		return func(ctx context.Context, scope *store.Scope, e runner.HandledEvent) error {
			if err := inner(ctx, scope, e); err != nil {
				return err
			}
			if name == "a" && e.Recorded.StreamVersion == 2 {
				// The row is written; now the process stops.
				blockOnce.Do(func() { a.paused.Store(true); aBlocked.Store(true) })
				<-block
			}
			return nil
		}
	}
	config := func() *runner.Config { return fastRunner("") }
	a = newReplica(t, es.Schema(), "a", config(), runner.Subscription{Name: "balances", TxHandler: handlerFor("a")})
	c := runner.NewControl(es)
	eventually(t, 10*time.Second, "a leads", func() bool { w, _ := leaderOf(t, c, "balances"); return w == "a" })
	_, fenceA := leaderOf(t, c, "balances")
	b := newReplica(t, es.Schema(), "b", config(), runner.Subscription{Name: "balances", TxHandler: handlerFor("b")})

	appendDeposit(t, es, "account-1", 1)
	appendDeposit(t, es, "account-1", 2)
	last := appendDeposit(t, es, "account-2", 4)
	eventually(t, 10*time.Second, "a is stopped mid-batch", aBlocked.Load)

	// b takes over once a's lease expires, and handles everything.
	waitFor(t, b.runner, "balances", last)
	worker, fenceB := leaderOf(t, c, "balances")
	if worker != "b" || fenceB <= fenceA {
		t.Errorf("leader %s with fence %d, want b above a's %d", worker, fenceB, fenceA)
	}
	// a wakes up and finishes its batch: too late.
	close(block)
	a.paused.Store(false)
	eventually(t, 10*time.Second, "a notices it was fenced", func() bool {
		w, _ := leaderOf(t, c, "balances")
		return w == "b"
	})
	time.Sleep(500 * time.Millisecond)
	if bal, n := model.get(t, "account-1"); bal != 3 || n != 2 {
		t.Errorf("account-1: %d after %d events, want 3 after 2: a's late batch must roll back", bal, n)
	}
	if total := model.totalEvents(t); total != 3 {
		t.Errorf("the read model counted %d events, want 3", total)
	}
	if w, _ := leaderOf(t, c, "balances"); w != "b" {
		t.Errorf("leader %s after a came back, want b", w)
	}
}

// A leader whose connections are all terminated, its LISTEN connection
// included, keeps going or is taken over; either way no event is lost or
// counted twice, and new events still arrive without polling (the LISTEN
// connection is re-established).
func TestRunnerSurvivesKilledConnections(t *testing.T) {
	t.Parallel()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	model := newBalances(t, es)
	sub := runner.Subscription{Name: "balances", TxHandler: model.handler()}
	noPoll := func() *runner.Config {
		c := fastRunner("")
		c.PollInterval = time.Hour // only notifications deliver
		return c
	}
	a := newReplica(t, es.Schema(), "a", noPoll(), sub)
	c := runner.NewControl(es)
	eventually(t, 10*time.Second, "a leads", func() bool { w, _ := leaderOf(t, c, "balances"); return w == "a" })
	b := newReplica(t, es.Schema(), "b", noPoll(), sub)

	var last *core.CommittedEvents
	for round := range 5 {
		for i := range 20 {
			last = appendDeposit(t, es, fmt.Sprintf("account-%d", i%5), 1)
		}
		// Its pool's connections and its LISTEN connection, once a has
		// reconnected after the last round.
		eventually(t, 10*time.Second, "a reconnects", func() bool { return a.connections(t) >= 2 })
		if killed := a.kill(t); killed < 2 {
			t.Errorf("round %d: killed %d of a's connections", round, killed)
		}
		if round%2 == 1 {
			b.kill(t)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := runner.NewControl(es).WaitFor(ctx, "balances", last); err != nil {
		t.Fatalf("WaitFor after killed connections: %v", err)
	}
	if total := model.totalEvents(t); total != 100 {
		t.Errorf("the read model counted %d events, want 100", total)
	}
	// Delivery still works by notification alone.
	last = appendDeposit(t, es, "account-9", 1)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := runner.NewControl(es).WaitFor(ctx2, "balances", last); err != nil {
		t.Fatalf("WaitFor after reconnecting: %v", err)
	}
	_ = b
}

// A leader that dies without releasing (its connections killed and its
// process stopped) is taken over within the lease's TTL plus a recheck.
func TestRunnerFailoverAfterCrash(t *testing.T) {
	t.Parallel()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	model := newBalances(t, es)
	sub := runner.Subscription{Name: "balances", TxHandler: model.handler()}
	config := func() *runner.Config {
		return &runner.Config{LeaseTTL: 2 * time.Second, RecheckInterval: 300 * time.Millisecond, PollInterval: 100 * time.Millisecond}
	}
	a := newReplica(t, es.Schema(), "a", config(), sub)
	c := runner.NewControl(es)
	eventually(t, 10*time.Second, "a leads", func() bool { w, _ := leaderOf(t, c, "balances"); return w == "a" })
	b := newReplica(t, es.Schema(), "b", config(), sub)
	first := appendDeposit(t, es, "account-1", 1)
	waitFor(t, a.runner, "balances", first)

	a.paused.Store(true)
	if killed := a.kill(t); killed == 0 {
		t.Fatal("a has no connections to kill")
	}
	crashed := time.Now()
	second := appendDeposit(t, es, "account-1", 2)
	waitFor(t, b.runner, "balances", second)
	took := time.Since(crashed)
	if limit := 2*time.Second + 300*time.Millisecond + time.Second; took > limit {
		t.Errorf("b handled the next event %v after a crashed, want within TTL + recheck (+1s)", took)
	}
	t.Logf("standby handled the next event %v after the leader crashed (TTL 2s, recheck 300ms)", took)
	if bal, n := model.get(t, "account-1"); bal != 3 || n != 2 {
		t.Errorf("account-1: %d after %d events, want 3 after 2", bal, n)
	}
}
