package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/runner"
	"github.com/mire-go/mire/saga"
	"github.com/mire-go/mire/store"
)

// The saga scenario measures the saga engine (github.com/mire-go/mire/saga)
// as production runs it: an order saga of three steps (reserve stock, take
// payment, confirm) whose participants run in the same process as runner
// subscriptions, each replying with saga.Reply in its checkpoint
// transaction. A runner with default settings runs the participants, the
// saga-inbox subscription that routes their replies into the journals, and
// its own sequencer; an engine with default settings runs the sagas.
// Starters each start a saga, wait for its Result, and start the next.
//
// Each saga sends a request and awaits its reply twice, then runs a
// StepTx that appends the order's confirmation, and appends sagaEvents
// events: 11 journal entries (started; per request its send, await,
// inbox entry and consumption; the confirmation step; finished), the two
// requests, the two replies and the confirmation. The scenario checks the
// log grew by exactly that, so no request, reply or step happened twice.
//
// A step's latency runs from the participant's saga.Reply returning (in
// its handler, before its checkpoint commits) to the saga's next step
// journaled: the payment request's Send, or the confirmation's StepTx,
// returning for the first time in the saga function, which is after its
// transaction committed. Replays return journaled results again later;
// only the first return counts.

// sagaEvents is how many events one saga of the scenario appends.
const sagaEvents = 16

// The order saga's events. Every saga uses streams of its own, so that the
// scenario measures the saga machinery and not a hot stock stream.
type (
	sagaStockRequested struct {
		OrderID string `json:"order_id"`
		SKU     string `json:"sku"`
		Qty     int    `json:"qty"`
	}
	sagaStockReserved struct {
		OrderID string `json:"order_id"`
	}
	sagaPaymentRequested struct {
		OrderID string `json:"order_id"`
		Amount  int64  `json:"amount"`
	}
	sagaPaymentTaken struct {
		OrderID string `json:"order_id"`
	}
	sagaOrderConfirmed struct {
		OrderID string `json:"order_id"`
		Paid    int64  `json:"paid"`
	}
	sagaOrder struct {
		SKU    string `json:"sku"`
		Qty    int    `json:"qty"`
		Amount int64  `json:"amount"`
	}
	sagaReceipt struct {
		OrderID string `json:"order_id"`
		Paid    int64  `json:"paid"`
	}
)

func (sagaStockRequested) EventType() string   { return "benchstock.reserve-requested" }
func (sagaStockReserved) EventType() string    { return "benchstock.reserved" }
func (sagaPaymentRequested) EventType() string { return "benchpayment.charge-requested" }
func (sagaPaymentTaken) EventType() string     { return "benchpayment.taken" }
func (sagaOrderConfirmed) EventType() string   { return "benchorder.confirmed" }

func (e sagaStockReserved) IntoResponse() core.ResponseValue { return core.OKResponse(e) }
func (e sagaPaymentTaken) IntoResponse() core.ResponseValue  { return core.OKResponse(e) }

func sagaStockStream(id string) string   { return core.StreamID("benchstock", id) }
func sagaPaymentStream(id string) string { return core.StreamID("benchpayment", id) }
func sagaOrderStream(id string) string   { return core.StreamID("benchorder", id) }

// sagaSeq numbers the sagas of a run.
var sagaSeq atomic.Int64

// The two awaited replies: the stock's and the payment's.
const (
	stepStock = iota
	stepPayment
)

// sagaPoint is a point of a saga the scenario times: per awaited reply,
// when the participant's Reply returned, when the await first returned
// (its consumption journaled) and when the next step first returned
// (journaled); and when the starter called Start and when its Result
// returned.
type sagaPoint uint8

const (
	pointReplied sagaPoint = iota
	pointTook
	pointNext
	pointStarted
	pointResult
	points
)

// sagaTimes is when one saga passed each point, by point and step (the
// points outside steps use step 0).
type sagaTimes [points][2]time.Time

// sagaTracker collects sagaTimes by saga id.
type sagaTracker struct {
	mu    sync.Mutex
	sagas map[string]*sagaTimes
}

func newSagaTracker() *sagaTracker { return &sagaTracker{sagas: map[string]*sagaTimes{}} }

// mark records that saga id passed point of step now, unless it did
// before: replays return journaled steps again, and only the first return
// counts. A reply counts the last time: a participant's transaction that
// rolled back replies again, and only the last Reply committed.
func (t *sagaTracker) mark(id string, point sagaPoint, step int) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.sagas[id]
	if s == nil {
		s = &sagaTimes{}
		t.sagas[id] = s
	}
	if at := &s[point][step]; at.IsZero() || point == pointReplied {
		*at = now
	}
}

// sagaLatencies are a measurement's per-saga figures.
type sagaLatencies struct {
	steps    []time.Duration // reply returned → next step journaled, two per saga
	delivery []time.Duration // reply returned → await returned, two per saga
	sagas    []time.Duration // Start called → Result returned
	finish   []time.Duration // confirmation journaled → Result returned
}

// latencies returns the figures of every saga tracked, failing for one
// whose instrumentation missed a point.
func (t *sagaTracker) latencies() (sagaLatencies, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var l sagaLatencies
	for id, s := range t.sagas {
		for point := range points {
			steps := 2
			if point == pointStarted || point == pointResult {
				steps = 1
			}
			for step := range steps {
				if s[point][step].IsZero() {
					return sagaLatencies{}, fmt.Errorf("saga %s: point %d of step %d not timed", id, point, step)
				}
			}
		}
		for step := range 2 {
			replied := s[pointReplied][step]
			l.steps = append(l.steps, max(s[pointNext][step].Sub(replied), 0))
			l.delivery = append(l.delivery, max(s[pointTook][step].Sub(replied), 0))
		}
		l.sagas = append(l.sagas, s[pointResult][0].Sub(s[pointStarted][0]))
		l.finish = append(l.finish, max(s[pointResult][0].Sub(s[pointNext][stepPayment]), 0))
	}
	return l, nil
}

// orderSaga returns the scenario's saga, instrumented by t.
func orderSaga(t *sagaTracker) *saga.Definition[sagaOrder, sagaReceipt] {
	return saga.Define("bench_order", 1, func(c *saga.Context, in sagaOrder) (sagaReceipt, error) {
		id := c.ID()
		stock, err := saga.Send(c, sagaStockStream(id), core.Any, sagaStockRequested{OrderID: id, SKU: in.SKU, Qty: in.Qty})
		if err != nil {
			return sagaReceipt{}, err
		}
		if _, err := saga.AwaitResponse[sagaStockReserved](c, stock); err != nil {
			return sagaReceipt{}, err
		}
		t.mark(id, pointTook, stepStock)
		payment, err := saga.Send(c, sagaPaymentStream(id), core.Any, sagaPaymentRequested{OrderID: id, Amount: in.Amount})
		if err != nil {
			return sagaReceipt{}, err
		}
		t.mark(id, pointNext, stepStock)
		if _, err := saga.AwaitResponse[sagaPaymentTaken](c, payment); err != nil {
			return sagaReceipt{}, err
		}
		t.mark(id, pointTook, stepPayment)
		receipt, err := saga.StepTx(c, "confirm", func(ctx context.Context, scope *store.Scope) (sagaReceipt, error) {
			_, err := scope.Append(ctx, sagaOrderStream(id), core.NoStream, core.Event{Data: sagaOrderConfirmed{OrderID: id, Paid: in.Amount}})
			return sagaReceipt{OrderID: id, Paid: in.Amount}, err
		})
		if err != nil {
			return sagaReceipt{}, err
		}
		t.mark(id, pointNext, stepPayment)
		return receipt, nil
	}, saga.Receives(sagaStockReserved{}, sagaPaymentTaken{}))
}

// sagaParticipants is the stock and payment services: a subscription that
// answers each request with saga.Reply in its checkpoint transaction, on
// the request's stream, and tells t when each Reply returned.
func sagaParticipants(name string, t *sagaTracker) runner.Subscription {
	return runner.Subscription{Name: name, StartAt: runner.StartAtHead,
		EventTypes: []string{sagaStockRequested{}.EventType(), sagaPaymentRequested{}.EventType()},
		TxHandler: func(ctx context.Context, scope *store.Scope, e runner.HandledEvent) error {
			var reply core.EventData
			var order string
			var step int
			switch req := e.Event().(type) {
			case sagaStockRequested:
				order, step, reply = req.OrderID, stepStock, sagaStockReserved{OrderID: req.OrderID}
			case sagaPaymentRequested:
				order, step, reply = req.OrderID, stepPayment, sagaPaymentTaken{OrderID: req.OrderID}
			default:
				return fmt.Errorf("participants: unexpected event %s", e.Recorded.EventType)
			}
			if _, err := saga.Reply(ctx, scope, e.Recorded, e.Recorded.StreamID, core.Any, reply); err != nil {
				return err
			}
			t.mark(order, pointReplied, step)
			return nil
		}}
}

// sagaMetrics is the engine's Metrics: it counts runs (an executor's claim
// of a saga, until the saga waits or ends) and sagas that ended otherwise
// than completed.
type sagaMetrics struct {
	runs, notCompleted atomic.Int64
	runTime            atomic.Int64 // nanoseconds, all runs
}

func (*sagaMetrics) Started(string) {}

func (m *sagaMetrics) Ended(_ string, status saga.Status) {
	if status != saga.StatusCompleted {
		m.notCompleted.Add(1)
	}
}

func (m *sagaMetrics) Step(_ string, took time.Duration, _ saga.Status) {
	m.runs.Add(1)
	m.runTime.Add(int64(took))
}

// sagaSample is what a saga measurement adds to its sample.
type sagaSample struct {
	sagaLatencies
	runs       int64
	runTime    time.Duration
	statements map[string]int64 // by statementLabel
}

// labelCounter is the saga pool's tracer: it counts statements into the
// harness's counter, and by label while counting is on.
type labelCounter struct {
	total *statementCounter
	on    atomic.Bool
	mu    sync.Mutex
	n     map[string]int64
}

func (c *labelCounter) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	ctx = c.total.TraceQueryStart(ctx, conn, data)
	if c.on.Load() {
		label := statementLabel(data.SQL)
		c.mu.Lock()
		c.n[label]++
		c.mu.Unlock()
	}
	return ctx
}

func (*labelCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// start clears the counts and starts counting.
func (c *labelCounter) start() {
	c.mu.Lock()
	c.n = map[string]int64{}
	c.mu.Unlock()
	c.on.Store(true)
}

// stop stops counting and returns the counts.
func (c *labelCounter) stop() map[string]int64 {
	c.on.Store(false)
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

// statementLabel names a statement: an sqlc query by its name, another
// (begin, commit) by its first word.
func statementLabel(sql string) string {
	s := strings.TrimSpace(sql)
	if rest, ok := strings.CutPrefix(s, "-- name: "); ok {
		name, _, _ := strings.Cut(rest, " ")
		return name
	}
	first, _, _ := strings.Cut(s, " ")
	return strings.ToLower(first)
}

// sagaPool is the saga scenario's own pool, sized for its starters, the
// engine's executors and the runner (two subscriptions, each reading ahead
// of the transaction it handles, its sequencer and leases), so that none
// waits for a connection another part holds. It opens connections as they
// are needed (16 starters use about 22; the warm-up opens them), beside the
// workload pool's: connecting all up front would take the full run past
// the server's 100 connections. Its statements count with the workload's.
// It stays open until the harness closes, so that its backends' CPU time
// is measured.
type sagaPool struct {
	pool    *pgxpool.Pool
	es      *store.EventStore
	counter *labelCounter
}

func sagaPoolConns(starters int) int32 { return int32(starters + saga.ExecutorsDefault + 8) }

// openSagaPool opens the saga pool for up to starters starters, on the
// harness's schema.
func (h *harness) openSagaPool(ctx context.Context, starters int) error {
	if h.saga != nil {
		return nil
	}
	counter := &labelCounter{total: h.stmts}
	config := h.poolConfig.Copy()
	config.ConnConfig.Tracer = counter
	config.MaxConns = sagaPoolConns(starters)
	pool, err := pgxpool.NewWithConfig(ctx, config)
	if err != nil {
		return fmt.Errorf("opening the saga pool: %w", err)
	}
	registry := core.NewRegistry()
	for _, e := range []core.EventData{sagaStockRequested{}, sagaStockReserved{}, sagaPaymentRequested{}, sagaPaymentTaken{},
		sagaOrderConfirmed{}} {
		if err := registry.Add(e); err != nil {
			pool.Close()
			return err
		}
	}
	es, err := store.New(pool, &store.Config{Schema: h.mire.es.Schema(), Registry: registry})
	if err != nil {
		pool.Close()
		return err
	}
	h.saga = &sagaPool{pool: pool, es: es, counter: counter}
	return nil
}

// runSaga starts a runner (default settings; with sc.sagaSequencer, a
// store.Sequencer at that interval instead of its own) with the
// participants and an engine (default settings) on it, waits until the
// runner leads both subscriptions, then runs sc.writers starters until b runs out, each
// starting a saga and waiting for its Result before the next. The elapsed
// time is the starters'; setting up and stopping are not timed.
func (h *harness) runSaga(ctx context.Context, sc spec, b *budget, s *sample) (err error) {
	if h.saga == nil {
		return errors.New("the saga pool is not open")
	}
	es := h.saga.es
	// The log grows only by what the sagas append: check it grew by
	// exactly sagaEvents each.
	head, err := h.sequencing.Head(ctx)
	if err != nil {
		return err
	}
	if want := h.mire.appended.Load(); head != want {
		return fmt.Errorf("the log's head is %d before the sagas, %d events appended", head, want)
	}

	tracker := newSagaTracker()
	metrics := &sagaMetrics{}
	participants := newSubscriptionName("saga-participants")
	var config runner.Config
	if sc.sagaSequencer > 0 {
		config.NoSequencer = true
		seq, err := store.NewSequencer(es, &store.SequencerConfig{Interval: sc.sagaSequencer})
		if err != nil {
			return err
		}
		if err := seq.Start(ctx); err != nil {
			return err
		}
		defer func() { err = errors.Join(err, seq.Stop(context.WithoutCancel(ctx))) }()
	}
	r, err := newRunner(es, config, sagaParticipants(participants, tracker))
	if err != nil {
		return err
	}
	order := orderSaga(tracker)
	engine, err := saga.New(es, r, &saga.Config{Logger: runnerLogger, Metrics: metrics}, order)
	if err != nil {
		return err
	}
	if err := r.Start(ctx); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stopRunner(ctx, r)) }()
	if err := engine.Start(ctx); err != nil {
		return err
	}
	defer func() {
		stop, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		err = errors.Join(err, engine.Stop(stop))
	}()
	for _, name := range []string{participants, saga.InboxSubscription} {
		if err := waitLeader(ctx, r.Control(), name, r.WorkerID()); err != nil {
			return err
		}
	}

	h.saga.counter.start()
	var sagas atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	start := time.Now()
	for range sc.writers {
		g.Go(func() error {
			for b.take() {
				id := fmt.Sprintf("o%d", sagaSeq.Add(1))
				in := sagaOrder{SKU: "SKU-" + id, Qty: 1, Amount: 4200}
				tracker.mark(id, pointStarted, 0)
				handle, err := order.Start(gctx, engine, id, in)
				if err != nil {
					return err
				}
				wait, cancel := context.WithTimeout(gctx, 30*time.Second)
				receipt, err := handle.Result(wait)
				cancel()
				if err != nil {
					return fmt.Errorf("saga %s: %w", id, err)
				}
				tracker.mark(id, pointResult, 0)
				if receipt != (sagaReceipt{OrderID: id, Paid: in.Amount}) {
					return fmt.Errorf("saga %s: receipt %+v", id, receipt)
				}
				sagas.Add(1)
			}
			return nil
		})
	}
	err = g.Wait()
	s.elapsed = time.Since(start)
	statements := h.saga.counter.stop()
	if err != nil {
		return err
	}
	if n := metrics.notCompleted.Load(); n > 0 {
		return fmt.Errorf("%d sagas ended other than completed", n)
	}

	// Every event the sagas appended has a position once the log is
	// sequenced: the runner's sequencer may not have run since the last.
	if _, err := h.sequencing.Sequence(ctx); err != nil {
		return err
	}
	after, err := h.sequencing.Head(ctx)
	if err != nil {
		return err
	}
	n := sagas.Load()
	if grew := after - head; grew != n*sagaEvents {
		return fmt.Errorf("%d sagas appended %d events, want %d each", n, grew, sagaEvents)
	}
	h.mire.appended.Add(n * sagaEvents)
	l, err := tracker.latencies()
	if err != nil {
		return err
	}
	if len(l.sagas) != int(n) {
		return fmt.Errorf("%d sagas completed, %d tracked", n, len(l.sagas))
	}
	s.events, s.ops = n*sagaEvents, n
	s.latencies = l.steps
	s.saga = &sagaSample{sagaLatencies: l, runs: metrics.runs.Load(), runTime: time.Duration(metrics.runTime.Load()),
		statements: statements}
	return nil
}

// sagaNote is what a saga row's note says it measures, and what bounds
// it.
const sagaNote = "no raw baseline: ops are completed three-step sagas (ops_per_sec is sagas/s), each appending 16 events " +
	"(11 journal entries, 2 requests, 2 replies, 1 confirmation); latency_ms is the step latency, from a participant's " +
	"saga.Reply returning to the saga's next step journaled (saga.delivery_ms: to the await's consumption journaled). " +
	"A step's path: the participant's checkpoint commits; a sequencer run numbers the reply and notifies; the saga-inbox " +
	"subscription reads it and journals it in its checkpoint transaction; the executor, woken by the next store " +
	"notification (the router's in-process wake-up fires before that transaction commits, so the claim it triggers " +
	"finds nothing), claims the saga, reads its journal (2 statements) and the clock, journals the consumption, runs " +
	"the next step in its own transaction, journals the next await and ends its claim in one more transaction: about 15 " +
	"statements and 4 commits per run, besides the participant's and the router's checkpoint transactions. With one " +
	"starter a saga waits for about six sequencer runs (every 20ms by default) and Result, polling at 5, 15, 35, 75, " +
	"155ms..., returns at its next poll; with many, batches, group commits and claims are shared and CPU per saga " +
	"bounds the rate (server and client CPU per event x 16)"
