package integration_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
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

// chaosDuration is how long the chaos test kills and pauses leaders:
// MIRE_CHAOS_SECONDS, 60 by default.
func chaosDuration(t *testing.T) time.Duration {
	if s := os.Getenv("MIRE_CHAOS_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("MIRE_CHAOS_SECONDS=%q: %v", s, err)
		}
		return time.Duration(n) * time.Second
	}
	return time.Minute
}

// Three runners lead the four partitions of one subscription while
// appends go on (single events, group-committed; batches; slow caller
// transactions, some rolled back), and leaders are killed (connections
// terminated, process gone, restarted later) and paused past their lease,
// at random. At the end the transactional read model has every committed
// event exactly once, each stream's in version order (the handler refuses
// anything else), and no two workers committed a batch of one partition
// under the same fence token.
func TestRunnerChaos(t *testing.T) {
	// Not parallel: a minute of load on two cores would starve the timing-sensitive
	// tests running beside it.
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	model := newBalances(t, es)
	audit := pgx.Identifier{es.Schema(), "fence_audit"}.Sanitize()
	if _, err := es.Pool().Exec(ctx, "CREATE TABLE "+audit+
		" (partition int, fence bigint, worker text, PRIMARY KEY (partition, fence, worker))"); err != nil {
		t.Fatal(err)
	}
	inner := model.handler()
	handler := func(ctx context.Context, scope *store.Scope, e runner.HandledEvent) error {
		lease, ok := runner.Lease(ctx)
		if !ok {
			return errors.New("no lease in the handler's context")
		}
		if _, err := scope.Tx().Exec(ctx, "INSERT INTO "+audit+" VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
			lease.Partition, lease.FenceToken, lease.Worker); err != nil {
			return err
		}
		return inner(ctx, scope, e)
	}
	sub := runner.Subscription{Name: "chaos", TxHandler: handler, Partitions: 4}
	config := func() *runner.Config {
		c := fastRunner("")
		c.LeaseTTL, c.RecheckInterval = time.Second, 100*time.Millisecond
		c.MaxAttempts = 1000 // only the database fails here
		return c
	}

	var mu sync.Mutex
	replicas := map[string]*replica{}
	start := func(name string) {
		rep := newReplica(t, es.Schema(), name, config(), sub)
		mu.Lock()
		replicas[name] = rep
		mu.Unlock()
	}
	for _, name := range []string{"a", "b", "c"} {
		start(name)
	}

	duration := chaosDuration(t)
	chaosCtx, stopChaos := context.WithTimeout(ctx, duration)
	defer stopChaos()
	var wg sync.WaitGroup
	var countMu sync.Mutex
	committed := map[string]int64{} // events committed per stream
	var total atomic.Int64
	count := func(stream string, n int) {
		countMu.Lock()
		committed[stream] += int64(n)
		countMu.Unlock()
		total.Add(int64(n))
	}
	streams := 40
	// Single-event appends: grouped by the store under concurrency.
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for chaosCtx.Err() == nil {
				stream := fmt.Sprintf("account-%d", rng.IntN(streams))
				if _, err := es.Append(ctx, stream, core.Any, core.NewEvent(Deposited{Amount: 1})); err != nil {
					t.Errorf("append: %v", err)
					return
				}
				count(stream, 1)
				// A steady load, not a flood: the test shares two cores
				// with the rest of the suite.
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	// Batches.
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(7, 1))
		for chaosCtx.Err() == nil {
			stream := fmt.Sprintf("account-%d", rng.IntN(streams))
			events := core.Events(Deposited{Amount: 1}, Deposited{Amount: 1}, Deposited{Amount: 1}, Deposited{Amount: 1}, Deposited{Amount: 1})
			if _, err := es.Append(ctx, stream, core.Any, events...); err != nil {
				t.Errorf("batch append: %v", err)
				return
			}
			count(stream, len(events))
			time.Sleep(5 * time.Millisecond)
		}
	})
	// Slow caller transactions; one in four rolls back.
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(8, 1))
		for chaosCtx.Err() == nil {
			stream := fmt.Sprintf("account-%d", rng.IntN(streams))
			tx, err := es.Pool().Begin(ctx)
			if err != nil {
				t.Errorf("begin: %v", err)
				return
			}
			if _, err := es.AppendTx(ctx, tx, stream, core.Any, core.NewEvent(Deposited{Amount: 1})); err != nil {
				t.Errorf("append in a transaction: %v", err)
				_ = tx.Rollback(ctx)
				return
			}
			time.Sleep(time.Duration(50+rng.IntN(250)) * time.Millisecond)
			if rng.IntN(4) == 0 {
				_ = tx.Rollback(ctx)
				continue
			}
			if err := tx.Commit(ctx); err != nil {
				t.Errorf("commit: %v", err)
				return
			}
			count(stream, 1)
		}
	})
	// The chaos: every half second to two seconds, kill or pause a random
	// replica.
	var kills, pauses int
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(9, 1))
		names := []string{"a", "b", "c"}
		for chaosCtx.Err() == nil {
			time.Sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond)
			name := names[rng.IntN(len(names))]
			mu.Lock()
			rep := replicas[name]
			mu.Unlock()
			if rng.IntN(2) == 0 {
				// Killed: its process stops, its connections die; it comes
				// back as a new process a little later.
				kills++
				rep.paused.Store(true)
				rep.kill(t)
				time.Sleep(time.Duration(200+rng.IntN(1500)) * time.Millisecond)
				stopCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
				_ = rep.runner.Stop(stopCtx) // its release fails: it is paused
				cancel()
				rep.paused.Store(false)
				start(name)
			} else {
				// Paused past its lease, then resumed.
				pauses++
				rep.paused.Store(true)
				time.Sleep(time.Duration(1200+rng.IntN(1500)) * time.Millisecond)
				rep.paused.Store(false)
			}
		}
	})
	wg.Wait()
	t.Logf("%v of chaos: %d events committed, %d kills, %d pauses", duration, total.Load(), kills, pauses)

	// Every partition catches up with the head.
	c := runner.NewControl(es)
	if _, err := es.Sequence(ctx); err != nil {
		t.Fatal(err)
	}
	head, err := es.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "every partition reaches the head", func() bool {
		for _, s := range statusOf(t, c, "chaos") {
			if s.Checkpoint < head || s.State != runner.StateRunning {
				return false
			}
		}
		return true
	})
	if got := model.totalEvents(t); got != total.Load() {
		t.Errorf("the read model counted %d events, %d were committed", got, total.Load())
	}
	countMu.Lock()
	defer countMu.Unlock()
	for stream, want := range committed {
		if _, n := model.get(t, stream); n != want {
			t.Errorf("%s: %d events in the read model, %d committed", stream, n, want)
		}
	}
	var shared int
	if err := es.Pool().QueryRow(ctx, "SELECT count(*) FROM (SELECT partition, fence FROM "+audit+
		" GROUP BY partition, fence HAVING count(DISTINCT worker) > 1) AS s").Scan(&shared); err != nil {
		t.Fatal(err)
	}
	if shared != 0 {
		t.Errorf("%d (partition, fence) pairs committed by more than one worker", shared)
	}
	var fences int
	if err := es.Pool().QueryRow(ctx, "SELECT count(*) FROM "+audit).Scan(&fences); err != nil {
		t.Fatal(err)
	}
	t.Logf("batches committed under %d distinct (partition, fence, worker) leases", fences)
}
