package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// Scenario names, as they appear in the report.
const (
	scenarioAppend = "append"       // one event per append
	scenarioBatch  = "append_batch" // spec.batch events per append
	scenarioRead   = "read_stream"  // read a stream of spec.batch events
	scenarioLoad   = "load"         // rebuild a cart of spec.batch events
	scenarioSave   = "save"         // load a cart, record one event, save

	// A catch-up: read spec.batch sequenced events from a position on, or
	// every event of a category holding spec.batch of them (half of the
	// block both scenarios read).
	scenarioReadLog      = "read_log"
	scenarioReadCategory = "read_category"

	// Writers that share streams: each appends one event at the version it
	// last saw and, after a conflict, reads the stream's version and tries
	// again. spec.streams streams for spec.writers writers.
	scenarioContended = "append_contended"

	// The projection runner (runner.go): a runner catching up on the block
	// read_log reads; the latency from an append's return to its handling
	// under spec.writers writers pacing spec.rate events/s; and a
	// standby's takeover when the leader is killed or stopped
	// (spec.failover) under the same appends.
	scenarioCatchUp  = "catchup"
	scenarioLatency  = "latency"
	scenarioFailover = "failover"

	// The saga engine (saga.go): spec.writers starters each running
	// three-step order sagas one after another, with in-process
	// participants; spec.batch is the events one saga appends.
	scenarioSaga = "saga"
)

// scenarios are the scenario names in the order they run.
var scenarios = []string{scenarioAppend, scenarioBatch, scenarioContended, scenarioRead, scenarioLoad, scenarioSave,
	scenarioReadLog, scenarioReadCategory, scenarioCatchUp, scenarioLatency, scenarioFailover, scenarioSaga}

// saveStreamLength is how many saves a writer of the save scenario makes to
// a cart before it starts a new one, so that loads stay equally cheap.
const saveStreamLength = 100

// spec is one scenario with its parameters.
type spec struct {
	scenario string
	writers  int // concurrent writers (1 reader for reads and loads)
	batch    int // events per append (1 per save), or the stream's length for reads and loads

	// streamLength is how many events a writer appends to a stream before
	// it starts a new one.
	streamLength int

	// streams is how many streams the writers of append_contended share.
	streams int

	// rounds, when not 0, replaces -rounds for this scenario.
	rounds int

	// The runner scenarios: the BatchSize of catchup's tuned runner (0 for
	// none), the events/s latency's and failover's writers append in all,
	// and how failover ends the leader.
	runnerBatch int
	rate        int
	failover    failover

	// sagaSequencer, when not 0, is the interval of a store.Sequencer that
	// replaces the runner's in the saga scenario.
	sagaSequencer time.Duration
}

// reads reports whether sc only reads: it reads a stream loaded at setup,
// and mire needs no sequencer for it.
func (s spec) reads() bool {
	switch s.scenario {
	case scenarioRead, scenarioLoad, scenarioReadLog, scenarioReadCategory, scenarioCatchUp:
		return true
	}
	return false
}

// runsRunner reports whether sc runs the projection runner, which runs its
// own sequencer.
func (s spec) runsRunner() bool {
	switch s.scenario {
	case scenarioCatchUp, scenarioLatency, scenarioFailover, scenarioSaga:
		return true
	}
	return false
}

func (s spec) String() string {
	switch s.scenario {
	case scenarioContended:
		return fmt.Sprintf("%s writers=%d streams=%d", s.scenario, s.writers, s.streams)
	case scenarioLatency:
		return fmt.Sprintf("%s writers=%d events/s=%d", s.scenario, s.writers, s.rate)
	case scenarioFailover:
		return fmt.Sprintf("%s %v", s.scenario, s.failover)
	case scenarioSaga:
		if s.sagaSequencer > 0 {
			return fmt.Sprintf("%s starters=%d sequencer=%v", s.scenario, s.writers, s.sagaSequencer)
		}
		return fmt.Sprintf("%s starters=%d", s.scenario, s.writers)
	}
	return fmt.Sprintf("%s writers=%d events/op=%d", s.scenario, s.writers, s.batch)
}

// budget says when a measurement ends: after ops operations (Go benchmarks)
// or duration after its first operation (the command), whichever is set
// and comes first. The duration runs from the first operation, not from
// the budget's making: a scenario's setup (a runner taking its leases, a
// saga engine starting) is not timed, and on a loaded machine it outlasted
// TestRun's 100ms, which left a measurement of nothing.
type budget struct {
	ops      int64
	duration time.Duration
	start    sync.Once
	deadline time.Time // set by start
	taken    atomic.Int64
}

// take reports whether another operation may start.
func (b *budget) take() bool {
	if b.ops > 0 && b.taken.Add(1) > b.ops {
		return false
	}
	if b.duration == 0 {
		return true
	}
	b.start.Do(func() { b.deadline = time.Now().Add(b.duration) })
	return time.Now().Before(b.deadline)
}

// sample is the outcome of one measurement.
type sample struct {
	events, ops int64
	elapsed     time.Duration // the writers' or reader's time only (catchup: the runner's, from Start)
	statements  int64         // statements the workload sent
	walBytes    int64         // WAL the whole server wrote, sequencing included
	catchUp     time.Duration // mire appends and saves: how long positions lagged after the last append
	clientCPU   time.Duration // this process
	serverCPU   time.Duration // the backends of both pools; -1 if not measurable

	latencies []time.Duration // latency: each event's, from its append's return to its handling; saga: each step's
	takeover  time.Duration   // failover: from the leader's end to the standby's first handled event
	saga      *sagaSample     // saga
}

func (s sample) eventsPerSec() float64 { return float64(s.events) / s.elapsed.Seconds() }

// measure runs sc on sys until b runs out (failover: one takeover).
// Appends, saves and loads of mire run with a sequencer, as in production,
// and the measurement ends only once it has given every appended event a
// position; the runner scenarios run the runner's own sequencer instead.
// Setup (the stream that reads and loads read) happens before the
// measurement starts.
func (h *harness) measure(ctx context.Context, sys system, sc spec, b *budget) (sample, error) {
	var cart string // the cart read and load scenarios read
	var block logBlock
	var err error
	switch sc.scenario {
	case scenarioRead, scenarioLoad:
		cart, err = h.readCart(ctx, sc.batch)
	case scenarioReadLog, scenarioReadCategory, scenarioCatchUp:
		block, err = h.logBlock(ctx, logBlockSize(sc))
	}
	if err != nil {
		return sample{}, err
	}
	// Appends, saves and loads run beside a sequencer, as in production;
	// the read scenarios read what a sweep already numbered; the runner
	// runs its own.
	_, isMire := sys.(*mireSystem)
	sequenced := isMire && (!sc.reads() || sc.scenario == scenarioLoad)
	if sequenced && !sc.runsRunner() {
		stop, err := h.startSequencer(ctx)
		if err != nil {
			return sample{}, err
		}
		defer stop()
	}
	wal, err := h.walPosition(ctx)
	if err != nil {
		return sample{}, err
	}
	stmts := h.stmts.n.Load()
	cpu := h.cpu.snapshot()

	var s sample
	start := time.Now()
	switch sc.scenario {
	case scenarioRead:
		err = runReads(ctx, sc.batch, b, &s, func(ctx context.Context) (int64, error) {
			n, err := sys.readStream(ctx, cartStream(cart))
			return int64(n), err
		})
	case scenarioLoad:
		err = runReads(ctx, sc.batch, b, &s, func(ctx context.Context) (int64, error) {
			c, version, err := sys.loadCart(ctx, cart)
			if err == nil && c.Lines != version {
				err = fmt.Errorf("cart %s at version %d has %d lines", cart, version, c.Lines)
			}
			return version, err
		})
	case scenarioReadLog:
		err = runReads(ctx, sc.batch, b, &s, func(ctx context.Context) (int64, error) {
			n, err := sys.readLog(ctx, block.from, block.to)
			return int64(n), err
		})
	case scenarioReadCategory:
		err = runReads(ctx, sc.batch, b, &s, func(ctx context.Context) (int64, error) {
			n, err := sys.readCategory(ctx, logCategory)
			return int64(n), err
		})
	case scenarioCatchUp:
		err = runCatchUps(ctx, sys, block, b, &s)
	case scenarioLatency:
		err = h.runLatency(ctx, sc, b, &s)
	case scenarioFailover:
		err = h.runFailover(ctx, sc, &s)
	case scenarioSaga:
		err = h.runSaga(ctx, sc, b, &s)
	case scenarioContended:
		err = h.runContended(ctx, sys, sc, b, &s)
	default:
		err = h.runWrites(ctx, sys, sc, b, &s)
	}
	if s.elapsed == 0 { // unless the scenario timed itself
		s.elapsed = time.Since(start)
	}
	s.statements = h.stmts.n.Load() - stmts
	if s.saga != nil {
		// The starters' statements only: not the runner's start and stop.
		s.statements = 0
		for _, n := range s.saga.statements {
			s.statements += n
		}
	}
	if err != nil {
		return sample{}, fmt.Errorf("%s %v: %w", sys.name(), sc, err)
	}
	if sequenced {
		if s.catchUp, err = h.waitSequenced(ctx); err != nil {
			return sample{}, err
		}
	}
	s.clientCPU, s.serverCPU = h.cpu.snapshot().since(cpu)
	s.walBytes, err = h.walSince(ctx, wal)
	return s, err
}

// runWrites runs sc.writers writers, each writing to streams of its own: it
// appends sc.batch events at a time with exact expected versions, or, for
// saves, runs a command on a cart (load, record, save).
func (h *harness) runWrites(ctx context.Context, sys system, sc spec, b *budget, s *sample) error {
	var events, ops atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	for range sc.writers {
		g.Go(func() error {
			var cart, stream string
			var version int64
			for b.take() {
				if cart == "" || version+int64(sc.batch) > int64(sc.streamLength) {
					cart, version = h.newCartID(), 0
					stream = cartStream(cart)
				}
				items := newItems(stream, version, sc.batch)
				if sc.scenario == scenarioSave {
					saved, err := sys.addItem(ctx, cart, items[0])
					if err != nil {
						return err
					}
					if saved != version+1 {
						return fmt.Errorf("cart %s at version %d after a save, want %d", cart, saved, version+1)
					}
				} else if err := sys.appendEvents(ctx, stream, version, items); err != nil {
					return err
				}
				version += int64(sc.batch)
				events.Add(int64(sc.batch))
				ops.Add(1)
			}
			return nil
		})
	}
	err := g.Wait()
	s.events, s.ops = events.Load(), ops.Load()
	return err
}

// runContended runs sc.writers writers on sc.streams new streams, writer w
// on stream w mod sc.streams. A writer appends at the version it last saw;
// after a conflict it reads the stream's version and tries again. Only
// stored events count; every conflict is a statement more that stored
// nothing.
func (h *harness) runContended(ctx context.Context, sys system, sc spec, b *budget, s *sample) error {
	streams := make([]string, sc.streams)
	for i := range streams {
		streams[i] = cartStream(h.newCartID())
	}
	var events atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	for w := range sc.writers {
		g.Go(func() error {
			stream := streams[w%len(streams)]
			var version int64
			for b.take() {
				for {
					stored, err := sys.appendAt(ctx, stream, version, newItems(stream, version, 1)[0])
					if err != nil {
						return err
					}
					if stored {
						version++
						break
					}
					if version, err = sys.streamVersion(ctx, stream); err != nil {
						return err
					}
				}
				events.Add(1)
			}
			return nil
		})
	}
	err := g.Wait()
	s.events, s.ops = events.Load(), events.Load()
	return err
}

// runCatchUps has sys catch up on block over and over, timing only the
// catch-ups themselves.
func runCatchUps(ctx context.Context, sys system, block logBlock, b *budget, s *sample) error {
	want := int(block.to - block.from + 1)
	for b.take() {
		n, elapsed, err := sys.catchUp(ctx, block)
		if err != nil {
			return err
		}
		if n != want {
			return fmt.Errorf("caught up on %d events, want %d", n, want)
		}
		s.events += int64(n)
		s.ops++
		s.elapsed += elapsed
	}
	return nil
}

// runReads runs read, which reads or loads a stream of n events, over and
// over.
func runReads(ctx context.Context, n int, b *budget, s *sample, read func(context.Context) (int64, error)) error {
	for b.take() {
		got, err := read(ctx)
		if err != nil {
			return err
		}
		if got != int64(n) {
			return fmt.Errorf("got %d events, want %d", got, n)
		}
		s.events += got
		s.ops++
	}
	return nil
}
