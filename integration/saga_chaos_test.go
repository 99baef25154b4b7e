package integration_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/runner"
	"github.com/mire-go/mire/saga"
	"github.com/mire-go/mire/store"
)

// sagaReplica is a process running sagas: a runner (the participants and
// the inbox router) and an engine, on a pool of its own that can be paused
// (every acquire waits, as in a stopped process) and killed.
type sagaReplica struct {
	name   string
	pool   *pgxpool.Pool
	store  *store.EventStore
	runner *runner.Runner
	engine *saga.Engine
	paused atomic.Bool
}

func newSagaReplica(t *testing.T, schema, name string) *sagaReplica {
	t.Helper()
	rep := &sagaReplica{name: name}
	rep.pool = pausablePool(t, "saga-"+name+"-"+schema, 12, &rep.paused)
	var err error
	if rep.store, err = store.New(rep.pool, &store.Config{Schema: schema, Registry: sagaRegistry()}); err != nil {
		t.Fatal(err)
	}
	config := fastRunner(name)
	config.LeaseTTL, config.MaxAttempts = time.Second, 1000
	if rep.runner, err = runner.New(rep.store, config); err != nil {
		t.Fatal(err)
	}
	if err := rep.runner.Add(participants(nil)); err != nil {
		t.Fatal(err)
	}
	sagaConfig := fastSagas(name)
	sagaConfig.ClaimTTL, sagaConfig.MaxAttempts = time.Second, 1000
	if rep.engine, err = saga.New(rep.store, rep.runner, sagaConfig, orderSaga); err != nil {
		t.Fatal(err)
	}
	for _, s := range []interface {
		Start(context.Context) error
		Stop(context.Context) error
	}{rep.runner, rep.engine} {
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = s.Stop(ctx)
		})
	}
	return rep
}

func (rep *sagaReplica) kill(t *testing.T) {
	t.Helper()
	terminateApp(t, "saga-"+rep.name+"-"+rep.store.Schema())
}

func (rep *sagaReplica) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = rep.engine.Stop(ctx) // a killed process cannot clean up: these fail
	_ = rep.runner.Stop(ctx)
}

// A thousand order sagas run while the processes that run them (their
// executors, the inbox router's leader, the participants) are killed and
// paused at random. Every saga reaches its end, and every request was sent
// exactly once: one stock reservation and one charge per order that got
// that far, one stock release per order that was compensated.
func TestSagaChaos(t *testing.T) {
	// Not parallel: its load would starve the timing-sensitive tests beside it.
	ctx := context.Background()
	duration := 30 * time.Second
	if s := os.Getenv("MIRE_SAGA_CHAOS_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		duration = time.Duration(n) * time.Second
	}
	const sagas = 1000
	es := pgenv.NewStore(t, nil, &store.Config{Registry: sagaRegistry()})
	var mu sync.Mutex
	replicas := map[string]*sagaReplica{}
	for _, name := range []string{"a", "b"} {
		replicas[name] = newSagaReplica(t, es.Schema(), name)
	}
	starter, err := saga.New(es, nil, &saga.Config{NoExecutors: true}, orderSaga)
	if err != nil {
		t.Fatal(err)
	}

	chaosCtx, stopChaos := context.WithTimeout(ctx, duration)
	defer stopChaos()
	var wg sync.WaitGroup
	// Start the sagas over the first part of the chaos: one in ten is
	// declined (compensated), one in twenty finds no stock (failed).
	wg.Go(func() {
		for i := range sagas {
			in := PlaceOrder{SKU: fmt.Sprintf("o-%d", i), Qty: 1, Amount: 10}
			switch {
			case i%20 == 7:
				in.SKU = "none"
			case i%10 == 3:
				in.Amount = 5000
			}
			if _, err := orderSaga.Start(ctx, starter, fmt.Sprintf("o-%d", i), in); err != nil {
				t.Errorf("start o-%d: %v", i, err)
				return
			}
			time.Sleep(duration / 2 / sagas)
		}
	})
	var kills, pauses atomic.Int32
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(11, 1))
		for round := 0; chaosCtx.Err() == nil; round++ {
			time.Sleep(time.Duration(700+rng.IntN(1500)) * time.Millisecond)
			name := []string{"a", "b"}[rng.IntN(2)]
			mu.Lock()
			rep := replicas[name]
			mu.Unlock()
			if round%2 == 0 {
				kills.Add(1)
				rep.paused.Store(true)
				rep.kill(t)
				time.Sleep(time.Duration(200+rng.IntN(1000)) * time.Millisecond)
				rep.stop()
				rep.paused.Store(false)
				fresh := newSagaReplica(t, es.Schema(), name)
				mu.Lock()
				replicas[name] = fresh
				mu.Unlock()
			} else {
				pauses.Add(1)
				rep.paused.Store(true)
				time.Sleep(time.Duration(1200+rng.IntN(1300)) * time.Millisecond)
				rep.paused.Store(false)
			}
		}
	})
	wg.Wait()
	t.Logf("%v of chaos: %d kills, %d pauses", duration, kills.Load(), pauses.Load())

	eventually(t, 3*time.Minute, "every saga ends", func() bool {
		counts, err := starter.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return counts[saga.StatusCompleted]+counts[saga.StatusCompensated]+counts[saga.StatusFailed] == sagas
	})
	counts, err := starter.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("outcomes: %v", counts)
	for i := range sagas {
		id := fmt.Sprintf("o-%d", i)
		info, err := starter.Get(ctx, "order", id)
		if err != nil {
			t.Fatal(err)
		}
		stock := "stock-" + id
		if i%20 == 7 {
			stock = "stock-none"
		}
		wantCharges, wantReleases := 1, 0
		switch info.Status {
		case saga.StatusFailed:
			wantCharges = 0
		case saga.StatusCompensated:
			wantReleases = 1
		}
		if i%20 != 7 {
			if n := countEvents(t, es, stock, ReserveStock{}.EventType()); n != 1 {
				t.Errorf("%s (%s): %d stock reservations, want 1", id, info.Status, n)
			}
			if n := countEvents(t, es, stock, ReleaseStock{}.EventType()); n != wantReleases {
				t.Errorf("%s (%s): %d stock releases, want %d", id, info.Status, n, wantReleases)
			}
		}
		if n := countEvents(t, es, "payment-"+id, ChargePayment{}.EventType()); n != wantCharges {
			t.Errorf("%s (%s): %d charges, want %d", id, info.Status, n, wantCharges)
		}
	}
	// The orders without stock each sent one reservation to the shared
	// "none" stream.
	if n := countEvents(t, es, "stock-none", ReserveStock{}.EventType()); n != sagas/20 {
		t.Errorf("%d reservations of missing stock, want %d", n, sagas/20)
	}
	_ = core.Any
}
