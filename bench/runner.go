package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/runner"
	"github.com/mire-go/mire/store"
)

// The runner scenarios measure the projection runner as production runs
// it: runner.New with the store, running its own store.Sequencer (no
// harness sequencer runs beside them).
//
//   - catchup: a subscription over the whole log whose checkpoint is just
//     before the block read_log reads, with a no-op TxHandler, is started
//     and timed until WaitFor on the block's last append returns; against
//     the raw query read_log's baseline runs over the same rows.
//   - latency: paced writers append to streams of their own while a
//     subscription's Handler records, for each event, the time since its
//     append returned. No baseline.
//   - failover: two runners lead one subscription in turn under the
//     latency scenario's appends; the leader crashes (or stops) and the
//     time to the standby's first handled event is measured. No baseline.

// runnerLogger receives the runners' diagnostics (-runner-log); nil
// discards them.
var runnerLogger *slog.Logger

// subscriptionSeq numbers the subscriptions the scenarios create, so that
// each measurement starts a subscription of its own.
var subscriptionSeq atomic.Int64

func newSubscriptionName(scenario string) string {
	return fmt.Sprintf("bench-%s-%d", scenario, subscriptionSeq.Add(1))
}

// newRunner returns a runner on es with config and sub.
func newRunner(es *store.EventStore, config runner.Config, sub runner.Subscription) (*runner.Runner, error) {
	config.Logger = runnerLogger
	r, err := runner.New(es, &config)
	if err != nil {
		return nil, err
	}
	if err := r.Add(sub); err != nil {
		return nil, err
	}
	return r, nil
}

// stopRunner stops r gracefully, giving it 30 seconds.
func stopRunner(ctx context.Context, r *runner.Runner) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return r.Stop(ctx)
}

// createSubscription creates the rows of subscription name with its
// checkpoint at position, as if it had handled the log up to there: a
// runner that does not lead creates them (Runner.Start), and Control.Reset
// moves the checkpoint.
func createSubscription(ctx context.Context, es *store.EventStore, name string, position int64) error {
	nop := func(context.Context, runner.HandledEvent) error { return nil }
	r, err := newRunner(es, runner.Config{NoLead: true, NoSequencer: true, PollOnly: true}, runner.Subscription{Name: name, Handler: nop})
	if err != nil {
		return err
	}
	if err := r.Start(ctx); err != nil {
		return err
	}
	if err := stopRunner(ctx, r); err != nil {
		return err
	}
	return r.Control().Reset(ctx, name, position, nil)
}

// catchUp starts a runner with one subscription over the whole log, whose
// checkpoint is just before block, with a transactional handler that does
// nothing but count the block's events, and times it from Start until
// WaitFor on the block's last append returns. Creating the subscription
// and stopping the runner are not timed.
func (m *mireSystem) catchUp(ctx context.Context, block logBlock) (int, time.Duration, error) {
	name := newSubscriptionName("catchup")
	if err := createSubscription(ctx, m.es, name, block.from-1); err != nil {
		return 0, 0, err
	}
	var handled atomic.Int64
	count := func(_ context.Context, _ *store.Scope, e runner.HandledEvent) error {
		if p := e.Recorded.GlobalPosition; p >= block.from && p <= block.to {
			handled.Add(1)
		}
		return nil
	}
	r, err := newRunner(m.es, runner.Config{BatchSize: m.runnerBatch}, runner.Subscription{Name: name, TxHandler: count})
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	if err := r.Start(ctx); err != nil {
		return 0, 0, err
	}
	err = r.WaitFor(ctx, name, block.last)
	elapsed := time.Since(start)
	if err := errors.Join(err, stopRunner(ctx, r)); err != nil {
		return 0, 0, err
	}
	// The handler ran in transactions that all committed (nothing failed),
	// so it counted each event once.
	return int(handled.Load()), elapsed, nil
}

// waitLeader waits until worker leads subscription name.
func waitLeader(ctx context.Context, control *runner.Control, name, worker string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		statuses, err := control.Status(ctx, name)
		if err != nil {
			return err
		}
		if len(statuses) == 1 && statuses[0].Worker == worker {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("subscription %s: %s does not lead it after 30s: %+v", name, worker, statuses)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitHandled waits until every append of lasts (each writer's last) was
// handled by the subscription name that r runs.
func waitHandled(ctx context.Context, r *runner.Runner, name string, lasts []*core.CommittedEvents) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, last := range lasts {
		if err := r.WaitFor(ctx, name, last); err != nil {
			return fmt.Errorf("waiting for %s to handle %s@%d: %w", name, last.StreamID, last.ToVersion, err)
		}
	}
	return nil
}

// eventKey names an event by its stream and version.
type eventKey struct {
	stream  string
	version int64
}

// latencyTracker pairs each event's append with its handling. Either may
// come first: the sequencer can number an event, and a runner handle it,
// before its append has returned to the writer.
type latencyTracker struct {
	mu     sync.Mutex
	events map[eventKey]*tracked
}

type tracked struct {
	appended, handled time.Time // when the append returned; when first handled
	times             int       // how many times handled
}

func newLatencyTracker() *latencyTracker { return &latencyTracker{events: map[eventKey]*tracked{}} }

func (t *latencyTracker) get(k eventKey) *tracked {
	e := t.events[k]
	if e == nil {
		e = &tracked{}
		t.events[k] = e
	}
	return e
}

func (t *latencyTracker) appended(stream string, version int64, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.get(eventKey{stream, version}).appended = at
}

// handle is the subscription's Handler.
func (t *latencyTracker) handle(_ context.Context, e runner.HandledEvent) error {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	ev := t.get(eventKey{e.Recorded.StreamID, e.Recorded.StreamVersion})
	if ev.times == 0 {
		ev.handled = now
	}
	ev.times++
	return nil
}

// latencies returns, for every event appended, the time from its append's
// return to its first handling (0 if it was handled first), and fails if
// one was not handled or was handled without having been appended.
func (t *latencyTracker) latencies() ([]time.Duration, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]time.Duration, 0, len(t.events))
	for k, e := range t.events {
		switch {
		case e.times == 0:
			return nil, fmt.Errorf("event %s@%d was appended and never handled", k.stream, k.version)
		case e.appended.IsZero():
			return nil, fmt.Errorf("event %s@%d was handled and never appended", k.stream, k.version)
		}
		out = append(out, max(e.handled.Sub(e.appended), 0))
	}
	return out, nil
}

// runPaced runs writers that append one event at a time, each to streams
// of its own (a new one every streamLength events), at rate events/s in
// all, while more returns true; appended, if not nil, learns when each
// append returned. A writer that falls behind its schedule by more than
// one interval skips the slots it missed instead of catching up in a
// burst. It returns every writer's last append and how many events were
// appended.
func (h *harness) runPaced(ctx context.Context, writers, rate, streamLength int, more func() bool,
	appended func(stream string, version int64, at time.Time)) ([]*core.CommittedEvents, int64, error) {
	interval := time.Duration(float64(writers) / float64(rate) * float64(time.Second))
	lasts := make([]*core.CommittedEvents, writers)
	var events atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	start := time.Now()
	for w := range writers {
		g.Go(func() error {
			// Writers start spread over one interval.
			next := start.Add(interval * time.Duration(w) / time.Duration(writers))
			var stream string
			var version int64
			for more() {
				if wait := time.Until(next); wait > 0 {
					if !sleepCtx(ctx, wait) {
						return ctx.Err()
					}
				} else if -wait > interval {
					next = time.Now()
				}
				next = next.Add(interval)
				if stream == "" || version == int64(streamLength) {
					stream, version = cartStream(h.newCartID()), 0
				}
				if err := h.mire.appendEvents(ctx, stream, version, newItems(stream, version, 1)); err != nil {
					return err
				}
				at := time.Now()
				version++
				if appended != nil {
					appended(stream, version, at)
				}
				lasts[w] = &core.CommittedEvents{StreamID: stream, FromVersion: version, ToVersion: version}
				events.Add(1)
			}
			return nil
		})
	}
	err := g.Wait()
	return slices.DeleteFunc(lasts, func(c *core.CommittedEvents) bool { return c == nil }), events.Load(), err
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// runLatency starts a runner with default settings and a subscription
// from the head whose Handler records each event's latency, waits until
// it leads, then runs sc.writers paced writers at sc.rate events/s in all
// until b runs out, and waits until the runner has handled every appended
// event. The elapsed time is the writers'.
func (h *harness) runLatency(ctx context.Context, sc spec, b *budget, s *sample) error {
	name := newSubscriptionName("latency")
	tracker := newLatencyTracker()
	r, err := newRunner(h.mire.es, runner.Config{}, runner.Subscription{Name: name, StartAt: runner.StartAtHead, Handler: tracker.handle})
	if err != nil {
		return err
	}
	if err := r.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = stopRunner(ctx, r) }() // an error here is the run's own
	if err := waitLeader(ctx, r.Control(), name, r.WorkerID()); err != nil {
		return err
	}
	start := time.Now()
	lasts, n, err := h.runPaced(ctx, sc.writers, sc.rate, sc.streamLength, b.take, tracker.appended)
	s.elapsed = time.Since(start)
	if err != nil {
		return err
	}
	if err := waitHandled(ctx, r, name, lasts); err != nil {
		return err
	}
	if err := stopRunner(ctx, r); err != nil {
		return err
	}
	if s.latencies, err = tracker.latencies(); err != nil {
		return err
	}
	if len(s.latencies) != int(n) {
		return fmt.Errorf("%d events appended, %d tracked", n, len(s.latencies))
	}
	s.events, s.ops = n, n
	return nil
}

// failover is how the failover scenario ends the leader, and the runners'
// lease settings.
type failover struct {
	// kill crashes the leader: its connections are terminated
	// (pg_terminate_backend) and it can open no more, so it neither
	// renews nor releases its lease. Otherwise the leader stops (Stop),
	// releasing its lease.
	kill bool
	// ttl and recheck are the runners' LeaseTTL and RecheckInterval; zero
	// for the runner's defaults.
	ttl, recheck time.Duration
}

// settings returns the lease settings the runners run with, defaults
// applied as runner.Config applies them.
func (f failover) settings() (ttl, recheck time.Duration) {
	ttl = f.ttl
	if ttl == 0 {
		ttl = runner.LeaseTTLDefault
	}
	recheck = f.recheck
	if recheck == 0 {
		recheck = runner.RecheckIntervalDefault
	}
	return ttl, min(recheck, ttl/3)
}

// how is how the leader ends: "kill" or "stop".
func (f failover) how() string {
	if f.kill {
		return "kill"
	}
	return "stop"
}

func (f failover) String() string {
	ttl, recheck := f.settings()
	settings := fmt.Sprintf("LeaseTTL %v, RecheckInterval %v", ttl, recheck)
	if f.ttl == 0 && f.recheck == 0 {
		settings = "defaults: " + settings
	}
	return f.how() + "; " + settings
}

// errCrashed is what a crashed runner's pool returns.
var errCrashed = errors.New("bench: this runner has crashed")

// runnerPool opens a pool of its own for one runner, its connections named
// app (application_name). crash makes it behave as a crashed process: its
// server sessions are terminated, and it opens no more connections (its
// runner's LISTEN connection included) and hands out none.
func (h *harness) runnerPool(ctx context.Context, app string) (pool *pgxpool.Pool, crash func(context.Context) error, err error) {
	config := h.poolConfig.Copy()
	config.ConnConfig.Tracer = h.stmts
	config.ConnConfig.RuntimeParams["application_name"] = app
	var crashed atomic.Bool
	dial := config.ConnConfig.DialFunc
	config.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if crashed.Load() {
			return nil, errCrashed
		}
		return dial(ctx, network, addr)
	}
	config.PrepareConn = func(context.Context, *pgx.Conn) (bool, error) {
		if crashed.Load() {
			return false, errCrashed
		}
		return true, nil
	}
	if pool, err = pgxpool.NewWithConfig(ctx, config); err != nil {
		return nil, nil, err
	}
	crash = func(ctx context.Context) error {
		crashed.Store(true)
		_, err := h.admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", app)
		return err
	}
	return pool, crash, nil
}

// runFailover measures one takeover: under appends from sc.writers paced
// writers at sc.rate events/s, a leader runner and then a standby start on
// a new subscription, each on a pool of its own and with a no-op
// TxHandler; once the leader handles events and the standby has run for
// one to two recheck intervals, the leader is killed or stopped, and the
// takeover is the time from then to the standby's first handled event.
// The writers then stop and the standby must handle every event appended.
func (h *harness) runFailover(ctx context.Context, sc spec, s *sample) (err error) {
	f := sc.failover
	ttl, recheck := f.settings()
	name := newSubscriptionName("failover")
	stores := make([]*store.EventStore, 2)
	var pools []*pgxpool.Pool
	defer func() {
		for _, pool := range pools {
			pool.Close()
		}
	}()
	var crash func(context.Context) error
	for i := range stores {
		pool, crashPool, err := h.runnerPool(ctx, fmt.Sprintf("%s-%d", name, i))
		if err != nil {
			return err
		}
		pools = append(pools, pool)
		if i == 0 {
			crash = crashPool
		}
		if stores[i], err = store.New(pool, &store.Config{Schema: h.mire.es.Schema(), Registry: h.mire.es.Registry()}); err != nil {
			return err
		}
	}

	var leaderHandled atomic.Int64
	var standbyFirst time.Time
	standbyHandled := make(chan struct{})
	var once sync.Once
	handlers := []runner.TransactionalEventHandler{
		func(context.Context, *store.Scope, runner.HandledEvent) error {
			leaderHandled.Add(1)
			return nil
		},
		func(context.Context, *store.Scope, runner.HandledEvent) error {
			once.Do(func() {
				standbyFirst = time.Now()
				close(standbyHandled)
			})
			return nil
		},
	}
	runners := make([]*runner.Runner, 2)
	for i := range runners {
		config := runner.Config{WorkerID: fmt.Sprintf("%s-%d", name, i), LeaseTTL: f.ttl, RecheckInterval: f.recheck}
		sub := runner.Subscription{Name: name, StartAt: runner.StartAtHead, TxHandler: handlers[i]}
		if runners[i], err = newRunner(stores[i], config, sub); err != nil {
			return err
		}
	}
	leader, standby := runners[0], runners[1]
	defer func() {
		// The leader, if crashed, cannot release its lease: its Stop only
		// stops its goroutines.
		err = errors.Join(err, stopRunner(ctx, standby), stopRunner(ctx, leader))
	}()

	var stop atomic.Bool
	writers := make(chan error, 1)
	var lasts []*core.CommittedEvents
	var n int64
	start := time.Now()
	go func() {
		var err error
		lasts, n, err = h.runPaced(ctx, sc.writers, sc.rate, sc.streamLength, func() bool { return !stop.Load() }, nil)
		writers <- err
	}()
	stopWriters := func() error {
		if stop.Swap(true) {
			return nil
		}
		err := <-writers
		s.elapsed = time.Since(start)
		return err
	}
	defer func() { err = errors.Join(err, stopWriters()) }()

	if err := leader.Start(ctx); err != nil {
		return err
	}
	if err := waitLeader(ctx, leader.Control(), name, leader.WorkerID()); err != nil {
		return err
	}
	for deadline := time.Now().Add(30 * time.Second); leaderHandled.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			return errors.New("the leader handled no event in 30s")
		}
	}
	if err := standby.Start(ctx); err != nil {
		return err
	}
	// At a random point of the leader's renewal cycle.
	time.Sleep(recheck + rand.N(recheck))
	select {
	case <-standbyHandled:
		return errors.New("the standby handled events while the leader was alive")
	default:
	}

	ended := time.Now()
	if f.kill {
		err = crash(ctx)
	} else {
		err = leader.Stop(ctx)
	}
	if err != nil {
		return err
	}
	limit := ttl + recheck + 30*time.Second
	select {
	case <-standbyHandled:
	case <-time.After(limit):
		return fmt.Errorf("the standby handled no event %v after the leader's %s", limit, f.how())
	case <-ctx.Done():
		return ctx.Err()
	}
	s.takeover = standbyFirst.Sub(ended)
	statuses, err := standby.Control().Status(ctx, name)
	if err != nil {
		return err
	}
	if len(statuses) != 1 || statuses[0].Worker != standby.WorkerID() {
		return fmt.Errorf("after the takeover: status %+v, want %s leading", statuses, standby.WorkerID())
	}
	if err := stopWriters(); err != nil {
		return err
	}
	if err := waitHandled(ctx, standby, name, lasts); err != nil {
		return err
	}
	s.events, s.ops = n, n
	return nil
}
