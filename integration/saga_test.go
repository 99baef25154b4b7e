package integration_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/runner"
	"github.com/mire-go/mire/saga"
	"github.com/mire-go/mire/store"
)

// The order saga's domain: stock and payment participants, each replying
// to requests with events that implement core.IntoResponse.

type ReserveStock struct {
	OrderID string `json:"order_id"`
	SKU     string `json:"sku"`
	Qty     int    `json:"qty"`
}

func (ReserveStock) EventType() string { return "stock.reserve-requested" }

type ReleaseStock struct {
	OrderID string `json:"order_id"`
	SKU     string `json:"sku"`
	Qty     int    `json:"qty"`
}

func (ReleaseStock) EventType() string { return "stock.release-requested" }

type StockReserved struct {
	OrderID string `json:"order_id"`
}

func (StockReserved) EventType() string                  { return "stock.reserved" }
func (e StockReserved) IntoResponse() core.ResponseValue { return core.OKResponse(e) }

type StockUnavailable struct {
	OrderID string `json:"order_id"`
}

func (StockUnavailable) EventType() string { return "stock.unavailable" }
func (e StockUnavailable) IntoResponse() core.ResponseValue {
	return core.ErrorResponse(e, "out of stock")
}

type ChargePayment struct {
	OrderID string `json:"order_id"`
	Amount  int64  `json:"amount"`
}

func (ChargePayment) EventType() string { return "payment.charge-requested" }

type PaymentTaken struct {
	OrderID string `json:"order_id"`
}

func (PaymentTaken) EventType() string                  { return "payment.taken" }
func (e PaymentTaken) IntoResponse() core.ResponseValue { return core.OKResponse(e) }

type PaymentDeclined struct {
	OrderID string `json:"order_id"`
	Why     string `json:"why"`
}

func (PaymentDeclined) EventType() string                  { return "payment.declined" }
func (e PaymentDeclined) IntoResponse() core.ResponseValue { return core.ErrorResponse(e, e.Why) }

// StockReply and PaymentReply are the unions of replies AwaitResponse
// takes.
type StockReply interface {
	core.EventData
	IntoResponse() core.ResponseValue
}

type PlaceOrder struct {
	SKU    string `json:"sku"`
	Qty    int    `json:"qty"`
	Amount int64  `json:"amount"`
	// PaymentWithin bounds the wait for the payment service.
	PaymentWithin time.Duration `json:"payment_within"`
}

type Receipt struct {
	OrderID string `json:"order_id"`
	Paid    int64  `json:"paid"`
}

func sagaRegistry() *core.Registry {
	r := bankRegistry()
	for _, e := range []core.EventData{ReserveStock{}, ReleaseStock{}, StockReserved{}, StockUnavailable{},
		ChargePayment{}, PaymentTaken{}, PaymentDeclined{}} {
		if err := r.Add(e); err != nil {
			panic(err)
		}
	}
	return r
}

// orderSaga: reserve stock, take payment, confirm; release the stock if the
// payment fails or never comes.
var orderSaga = saga.Define("order", 1, func(c *saga.Context, in PlaceOrder) (Receipt, error) {
	req, err := saga.Send(c, "stock-"+in.SKU, core.Any, ReserveStock{OrderID: c.ID(), SKU: in.SKU, Qty: in.Qty})
	if err != nil {
		return Receipt{}, err
	}
	if _, err := saga.AwaitResponse[StockReply](c, req); err != nil {
		return Receipt{}, err
	}
	c.Compensate("release stock", func(c *saga.Context) error {
		_, err := saga.Send(c, "stock-"+in.SKU, core.Any, ReleaseStock{OrderID: c.ID(), SKU: in.SKU, Qty: in.Qty})
		return err
	})
	pay, err := saga.Send(c, "payment-"+c.ID(), core.Any, ChargePayment{OrderID: c.ID(), Amount: in.Amount})
	if err != nil {
		return Receipt{}, err
	}
	var opts []saga.AwaitOption
	if in.PaymentWithin > 0 {
		opts = append(opts, saga.Within(in.PaymentWithin))
	}
	if _, err := saga.AwaitResponse[StockReply](c, pay, opts...); err != nil {
		return Receipt{}, err
	}
	return Receipt{OrderID: c.ID(), Paid: in.Amount}, nil
}, saga.Receives(StockReserved{}, StockUnavailable{}, PaymentTaken{}, PaymentDeclined{}))

// participants answers the order saga's requests from a runner
// subscription, replying in its checkpoint transaction (exactly once):
// stock is always there unless the SKU is "none"; payments are declined
// over 1000 and never answered for SKU "slow".
func participants(slowPayments *atomic.Bool) runner.Subscription {
	return runner.Subscription{Name: "participants", StartAt: runner.StartAtBeginning,
		EventTypes: []string{ReserveStock{}.EventType(), ChargePayment{}.EventType()},
		TxHandler: func(ctx context.Context, scope *store.Scope, e runner.HandledEvent) error {
			var reply core.EventData
			var stream string
			switch req := e.Event().(type) {
			case ReserveStock:
				stream = "stock-" + req.SKU
				reply = StockReserved{OrderID: req.OrderID}
				if req.SKU == "none" {
					reply = StockUnavailable{OrderID: req.OrderID}
				}
			case ChargePayment:
				if slowPayments != nil && slowPayments.Load() {
					return nil
				}
				stream = "payment-" + req.OrderID
				reply = PaymentTaken{OrderID: req.OrderID}
				if req.Amount > 1000 {
					reply = PaymentDeclined{OrderID: req.OrderID, Why: "card declined"}
				}
			default:
				return nil
			}
			_, err := saga.Reply(ctx, scope, e.Recorded, stream, core.Any, reply)
			return err
		}}
}

type sagaEnv struct {
	es     *store.EventStore
	runner *runner.Runner
	engine *saga.Engine
}

func fastSagas(worker string) *saga.Config {
	return &saga.Config{WorkerID: worker, PollInterval: 50 * time.Millisecond, RetryBackoff: 10 * time.Millisecond,
		MaxBackoff: 100 * time.Millisecond, ClaimTTL: 2 * time.Second}
}

// newSagaEnv runs a runner (the inbox router and the participants) and an
// engine on a fresh schema.
func newSagaEnv(t *testing.T, es *store.EventStore, config *saga.Config, slow *atomic.Bool, defs ...saga.AnyDefinition) *sagaEnv {
	t.Helper()
	if es == nil {
		es = pgenv.NewStore(t, nil, &store.Config{Registry: sagaRegistry()})
	}
	r, err := runner.New(es, fastRunner(config.WorkerID))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Add(participants(slow)); err != nil {
		t.Fatal(err)
	}
	if len(defs) == 0 {
		defs = []saga.AnyDefinition{orderSaga}
	}
	engine, err := saga.New(es, r, config, defs...)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []interface {
		Start(context.Context) error
		Stop(context.Context) error
	}{r, engine} {
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := s.Stop(ctx); err != nil {
				t.Errorf("stopping: %v", err)
			}
		})
	}
	return &sagaEnv{es: es, runner: r, engine: engine}
}

func result[R any](t *testing.T, h *saga.Handle[R]) (R, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return h.Result(ctx)
}

func journalTypes(t *testing.T, e *saga.Engine, name, id string) []string {
	t.Helper()
	entries, err := e.Journal(context.Background(), name, id)
	if err != nil {
		t.Fatal(err)
	}
	types := make([]string, len(entries))
	for i, entry := range entries {
		types[i] = entry.Type
	}
	return types
}

func countEvents(t *testing.T, es *store.EventStore, stream, eventType string) int {
	t.Helper()
	events, err := es.ReadEvents(context.Background(), core.ReadStream(stream))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range events {
		if e.EventType == eventType {
			n++
		}
	}
	return n
}

// An order whose stock and payment are there completes with its receipt.
func TestSagaCompletes(t *testing.T) {
	t.Parallel()
	env := newSagaEnv(t, nil, fastSagas("a"), nil)
	h, err := orderSaga.Start(context.Background(), env.engine, "o-1", PlaceOrder{SKU: "apple", Qty: 2, Amount: 50})
	if err != nil {
		t.Fatal(err)
	}
	receipt, err := result(t, h)
	if err != nil {
		t.Fatal(err)
	}
	if receipt != (Receipt{OrderID: "o-1", Paid: 50}) {
		t.Errorf("receipt = %+v", receipt)
	}
	info, err := h.Status(context.Background())
	if err != nil || info.Status != saga.StatusCompleted {
		t.Errorf("status = %+v, %v", info, err)
	}
	if n := countEvents(t, env.es, "stock-apple", ReserveStock{}.EventType()); n != 1 {
		t.Errorf("%d stock requests, want 1", n)
	}
	t.Logf("journal: %v", journalTypes(t, env.engine, "order", "o-1"))
}

// A declined payment fails the saga, whose compensation releases the
// stock: the saga ends compensated.
func TestSagaCompensatesDeclinedPayment(t *testing.T) {
	t.Parallel()
	env := newSagaEnv(t, nil, fastSagas("a"), nil)
	h, err := orderSaga.Start(context.Background(), env.engine, "o-2", PlaceOrder{SKU: "pear", Qty: 1, Amount: 5000})
	if err != nil {
		t.Fatal(err)
	}
	_, err = result(t, h)
	var failed *saga.FailedError
	if !errors.As(err, &failed) || failed.Status != saga.StatusCompensated {
		t.Fatalf("Result = %v, want a compensated saga", err)
	}
	if n := countEvents(t, env.es, "stock-pear", ReleaseStock{}.EventType()); n != 1 {
		t.Errorf("%d stock releases, want 1", n)
	}
	if failed.Cause == "" {
		t.Error("no cause recorded")
	}
}

// A payment service that never answers times the saga out: it compensates,
// and a reply that comes later is not taken.
func TestSagaTimesOut(t *testing.T) {
	t.Parallel()
	var slow atomic.Bool
	slow.Store(true)
	env := newSagaEnv(t, nil, fastSagas("a"), &slow)
	h, err := orderSaga.Start(context.Background(), env.engine, "o-3",
		PlaceOrder{SKU: "fig", Qty: 1, Amount: 10, PaymentWithin: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = result(t, h)
	var failed *saga.FailedError
	if !errors.As(err, &failed) || failed.Status != saga.StatusCompensated {
		t.Fatalf("Result = %v, want compensated after the timeout", err)
	}
	if n := countEvents(t, env.es, "stock-fig", ReleaseStock{}.EventType()); n != 1 {
		t.Errorf("%d stock releases, want 1", n)
	}
	types := journalTypes(t, env.engine, "order", "o-3")
	timeouts := 0
	for _, ty := range types {
		if ty == "saga.timed-out" {
			timeouts++
		}
	}
	if timeouts != 1 {
		t.Errorf("journal %v has %d timeouts, want 1", types, timeouts)
	}
}

// Start is idempotent by id: 50 racing starts make one saga; another input
// is ErrSagaExists.
func TestSagaStartIsIdempotent(t *testing.T) {
	t.Parallel()
	env := newSagaEnv(t, nil, fastSagas("a"), nil)
	in := PlaceOrder{SKU: "kiwi", Qty: 1, Amount: 1}
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			_, err := orderSaga.Start(context.Background(), env.engine, "o-4", in)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Start: %v", err)
		}
	}
	if n := countEvents(t, env.es, saga.JournalStream("order", "o-4"), "saga.started"); n != 1 {
		t.Errorf("%d started entries, want 1", n)
	}
	if _, err := orderSaga.Start(context.Background(), env.engine, "o-4", PlaceOrder{SKU: "kiwi", Qty: 2}); !errors.Is(err, saga.ErrSagaExists) {
		t.Errorf("Start with another input = %v, want ErrSagaExists", err)
	}
	if _, err := result(t, orderSaga.Handle(env.engine, "o-4")); err != nil {
		t.Fatal(err)
	}
}

// StartTx in a transaction that rolls back starts nothing.
func TestSagaStartTxRolledBack(t *testing.T) {
	t.Parallel()
	env := newSagaEnv(t, nil, fastSagas("a"), nil)
	ctx := context.Background()
	scope, err := env.es.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := orderSaga.StartTx(ctx, env.engine, scope, "o-5", PlaceOrder{SKU: "lime", Qty: 1}); err != nil {
		t.Fatal(err)
	}
	if err := scope.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := orderSaga.Handle(env.engine, "o-5").Status(ctx); !errors.Is(err, saga.ErrNotFound) {
		t.Errorf("Status after a rolled-back StartTx = %v, want ErrNotFound", err)
	}
	if n := countEvents(t, env.es, saga.JournalStream("order", "o-5"), "saga.started"); n != 0 {
		t.Errorf("%d started entries after a rollback", n)
	}
}

// A missing stock item fails the saga before anything needs undoing: it
// ends failed, with the participant's reason.
func TestSagaFailsWithoutCompensation(t *testing.T) {
	t.Parallel()
	env := newSagaEnv(t, nil, fastSagas("a"), nil)
	h, err := orderSaga.Start(context.Background(), env.engine, "o-6", PlaceOrder{SKU: "none", Qty: 1, Amount: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = result(t, h)
	var failed *saga.FailedError
	if !errors.As(err, &failed) || failed.Status != saga.StatusFailed {
		t.Fatalf("Result = %v, want failed", err)
	}
	if want := "out of stock"; !containsAll(failed.Cause, want) {
		t.Errorf("cause %q does not say %q", failed.Cause, want)
	}
}

var _ = fmt.Sprintf
