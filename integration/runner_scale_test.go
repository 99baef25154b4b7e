package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/runner"
	"github.com/mire-go/mire/store"
)

// held counts the partitions each worker leads.
func held(t *testing.T, c *runner.Control, name string) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for _, s := range statusOf(t, c, name) {
		if s.Worker != "" {
			counts[s.Worker]++
		}
	}
	return counts
}

// Partitions spread over the live runners: one runner leads all four, a
// second takes half when it joins, a runner that opts out of leading takes
// none, and when the second leaves the first takes them all again. Every
// event is handled once, each stream's in order, throughout.
func TestRunnerPartitionsRebalance(t *testing.T) {
	t.Parallel()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	model := newBalances(t, es)
	sub := runner.Subscription{Name: "spread", TxHandler: model.handler(), Partitions: 4}
	c := runner.NewControl(es)
	a := newReplica(t, es.Schema(), "a", fastRunner(""), sub)
	eventually(t, 10*time.Second, "a leads all four", func() bool { return held(t, c, "spread")["a"] == 4 })

	appendAll := func(round int) {
		for i := range 24 {
			appendDeposit(t, es, fmt.Sprintf("account-%d", i), int64(round))
		}
	}
	appendAll(1)
	b := newReplica(t, es.Schema(), "b", fastRunner(""), sub)
	eventually(t, 10*time.Second, "a and b lead two each", func() bool {
		h := held(t, c, "spread")
		return h["a"] == 2 && h["b"] == 2
	})
	observer := fastRunner("")
	observer.NoLead = true
	newReplica(t, es.Schema(), "observer", observer, sub)
	appendAll(2)
	time.Sleep(500 * time.Millisecond)
	if h := held(t, c, "spread"); h["observer"] != 0 || h["a"] != 2 || h["b"] != 2 {
		t.Errorf("leases %v: the observer must lead nothing and a and b keep two each", h)
	}
	if err := b.runner.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a leads all four again", func() bool { return held(t, c, "spread")["a"] == 4 })
	appendAll(3)
	eventually(t, 20*time.Second, "every event handled", func() bool { return model.totalEvents(t) == 72 })
	for i := range 24 {
		if bal, n := model.get(t, fmt.Sprintf("account-%d", i)); bal != 6 || n != 3 {
			t.Errorf("account-%d: %d after %d events, want 6 after 3", i, bal, n)
		}
	}
	_ = a
}

// Joining and leaving are announced: with rechecks ten seconds apart, a
// runner that joins gets its share of partitions, and one that stops hands
// all of its own over, within a second.
func TestRunnerRebalancesAtOnce(t *testing.T) {
	t.Parallel()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	sub := runner.Subscription{Name: "spread", Handler: func(context.Context, runner.HandledEvent) error { return nil }, Partitions: 4}
	c := runner.NewControl(es)
	slow := func() *runner.Config {
		return &runner.Config{LeaseTTL: 30 * time.Second, RecheckInterval: 10 * time.Second}
	}
	newReplica(t, es.Schema(), "a", slow(), sub)
	eventually(t, 5*time.Second, "a leads all four", func() bool { return held(t, c, "spread")["a"] == 4 })
	joined := time.Now()
	b := newReplica(t, es.Schema(), "b", slow(), sub)
	eventually(t, 5*time.Second, "a and b lead two each", func() bool {
		h := held(t, c, "spread")
		return h["a"] == 2 && h["b"] == 2
	})
	if took := time.Since(joined); took > time.Second {
		t.Errorf("b got its share %v after joining", took)
	}
	stopped := time.Now()
	if err := b.runner.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a leads all four again", func() bool { return held(t, c, "spread")["a"] == 4 })
	if took := time.Since(stopped); took > time.Second {
		t.Errorf("a took b's partitions %v after b stopped", took)
	}
}

// Under PollOnly (no LISTEN, for transaction-pooling proxies) events arrive
// by polling.
func TestRunnerPollOnly(t *testing.T) {
	t.Parallel()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	model := newBalances(t, es)
	config := fastRunner("poller")
	config.PollOnly, config.PollInterval = true, 50*time.Millisecond
	r := startRunner(t, es, config, runner.Subscription{Name: "polled", TxHandler: model.handler()})
	last := appendDeposit(t, es, "account-1", 1)
	waitFor(t, r, "polled", last)
	var listening int
	if err := es.Pool().QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND query LIKE $1`,
		"%"+es.Schema()+"%").Scan(&listening); err != nil {
		t.Fatal(err)
	}
	if listening != 0 {
		t.Errorf("%d connections LISTEN under PollOnly", listening)
	}
}

// recordingMetrics keeps what the runner reports.
type recordingMetrics struct {
	mu      sync.Mutex
	batches int
	events  int
	retries int
	leases  map[bool]int
	parked  int
	failed  int
	lag     []int64
}

func (m *recordingMetrics) BatchHandled(_ string, _ int, events int, _ time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.batches++
	m.events += events
}

func (m *recordingMetrics) Lag(_ string, _ int, events int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lag = append(m.lag, events)
}

func (m *recordingMetrics) Retry(string, int, error) { m.mu.Lock(); m.retries++; m.mu.Unlock() }

func (m *recordingMetrics) LeaseChanged(_ string, _ int, held bool, _ int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.leases[held]++
}

func (m *recordingMetrics) Parked(string, int, string, bool) { m.mu.Lock(); m.parked++; m.mu.Unlock() }
func (m *recordingMetrics) Failed(string, int, error)        { m.mu.Lock(); m.failed++; m.mu.Unlock() }

// The metrics hook hears of batches, retries, parked streams, lag and
// leases.
func TestRunnerMetrics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	metrics := &recordingMetrics{leases: map[bool]int{}}
	config := fastRunner("metered")
	config.Metrics, config.MaxAttempts = metrics, 2
	handler := func(_ context.Context, e runner.HandledEvent) error {
		if e.Recorded.StreamID == "account-bad" {
			return fmt.Errorf("bad")
		}
		return nil
	}
	r := startRunner(t, es, config, runner.Subscription{Name: "metered", Handler: handler, OnFailure: runner.Park})
	appendDeposit(t, es, "account-bad", 1)
	last := appendDeposit(t, es, "account-1", 1)
	waitFor(t, r, "metered", last)
	time.Sleep(300 * time.Millisecond) // a renewal reports the lag
	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	metrics.mu.Lock()
	defer metrics.mu.Unlock()
	if metrics.events < 1 || metrics.batches < 1 || metrics.retries != 1 || metrics.parked != 1 ||
		metrics.leases[true] != 1 || metrics.leases[false] != 1 || len(metrics.lag) == 0 {
		t.Errorf("metrics = %+v", metrics)
	}
}

// A handler gets events upcast once: a same-type upcaster (a change of
// shape) applied twice would double the amount here.
func TestRunnerDecodesOnce(t *testing.T) {
	t.Parallel()
	registry := bankRegistry()
	err := registry.AddUpcaster("account.deposited", "account.deposited", func(data json.RawMessage) (string, json.RawMessage, error) {
		var d Deposited
		if err := json.Unmarshal(data, &d); err != nil {
			return "", nil, err
		}
		d.Amount *= 10 // amounts were stored in tens
		out, err := json.Marshal(d)
		return "account.deposited", out, err
	})
	if err != nil {
		t.Fatal(err)
	}
	es := pgenv.NewStore(t, nil, &store.Config{Registry: registry})
	var mu sync.Mutex
	var amounts []int64
	handler := runner.On(func(_ context.Context, e Deposited, _ *core.RecordedEvent) error {
		mu.Lock()
		defer mu.Unlock()
		amounts = append(amounts, e.Amount)
		return nil
	})
	r := startRunner(t, es, fastRunner("a"), runner.Subscription{Name: "upcast", Handler: handler})
	last := appendDeposit(t, es, "account-1", 7)
	waitFor(t, r, "upcast", last)
	mu.Lock()
	defer mu.Unlock()
	if len(amounts) != 1 || amounts[0] != 70 {
		t.Errorf("handled amounts %v, want [70]: upcast once", amounts)
	}
}
