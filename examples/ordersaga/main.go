// Command ordersaga places orders through a saga: reserve stock, take
// payment, confirm. A stock service and a payment service answer the
// saga's requests from runner subscriptions, replying with saga.Reply in
// their checkpoint transactions. Three orders: one completes; one's
// payment is declined, so the saga releases the stock it reserved (its
// compensation) and ends compensated; and one's payment service never
// answers, so the saga's await times out (saga.Within) and compensates
// too. For each it prints the outcome and the saga's journal.
//
//	go run ./examples/ordersaga
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/runner"
	"github.com/mire-go/mire/saga"
	"github.com/mire-go/mire/store"
)

// main opens a pool on DATABASE_URL, or on a local server with a
// passwordless postgres user, and runs the example in a schema of its own.
func main() {
	ctx := context.Background()
	url := cmp.Or(os.Getenv("DATABASE_URL"), "postgres://postgres@localhost:5432/postgres?sslmode=disable")
	pool, err := pgxpool.New(ctx, url)
	if err == nil {
		err = Run(ctx, os.Stdout, pool, "ordersaga_example")
		pool.Close()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ordersaga: %v\n", err)
		os.Exit(1)
	}
}

// The order's own events, in its stream "order-<id>".

// OrderPlaced opens an order.
type OrderPlaced struct {
	Order Order `json:"order"`
}

// EventType implements core.EventData.
func (OrderPlaced) EventType() string { return "order.placed" }

// OrderConfirmed closes an order that was paid for.
type OrderConfirmed struct {
	Paid int64 `json:"paid"`
}

// EventType implements core.EventData.
func (OrderConfirmed) EventType() string { return "order.confirmed" }

// The stock service's requests and replies, in "stock-<sku>".

// ReserveStock asks the stock service to set items aside for an order.
type ReserveStock struct {
	OrderID string `json:"order_id"`
	SKU     string `json:"sku"`
	Qty     int    `json:"qty"`
}

// EventType implements core.EventData.
func (ReserveStock) EventType() string { return "stock.reserve-requested" }

// ReleaseStock gives back what ReserveStock set aside.
type ReleaseStock struct {
	OrderID string `json:"order_id"`
	SKU     string `json:"sku"`
	Qty     int    `json:"qty"`
}

// EventType implements core.EventData.
func (ReleaseStock) EventType() string { return "stock.release-requested" }

// StockReserved answers ReserveStock: the items are set aside.
type StockReserved struct {
	OrderID string `json:"order_id"`
}

// EventType implements core.EventData.
func (StockReserved) EventType() string { return "stock.reserved" }

// IntoResponse makes it a successful reply.
func (e StockReserved) IntoResponse() core.ResponseValue { return core.OKResponse(e) }

func (StockReserved) stockReply() {}

// StockUnavailable answers ReserveStock: not enough items.
type StockUnavailable struct {
	OrderID   string `json:"order_id"`
	Available int    `json:"available"`
}

// EventType implements core.EventData.
func (StockUnavailable) EventType() string { return "stock.unavailable" }

// IntoResponse makes it an error reply: the awaiting step fails with it.
func (e StockUnavailable) IntoResponse() core.ResponseValue {
	return core.ErrorResponse(e, fmt.Sprintf("only %d left", e.Available))
}

func (StockUnavailable) stockReply() {}

// StockReleased acknowledges ReleaseStock. The saga does not await it:
// its type is not among the saga's Receives, so it stays in the stock
// stream.
type StockReleased struct {
	OrderID string `json:"order_id"`
}

// EventType implements core.EventData.
func (StockReleased) EventType() string { return "stock.released" }

// StockReply is the union of the replies to ReserveStock, as the saga
// awaits them.
type StockReply interface {
	core.IntoResponse
	stockReply()
}

// The payment service's request and replies, in "payment-<order id>".

// ChargePayment asks the payment service to charge a card.
type ChargePayment struct {
	OrderID string `json:"order_id"`
	Amount  int64  `json:"amount"`
	Card    string `json:"card"`
}

// EventType implements core.EventData.
func (ChargePayment) EventType() string { return "payment.charge-requested" }

// PaymentTaken answers ChargePayment: the card was charged.
type PaymentTaken struct {
	OrderID string `json:"order_id"`
}

// EventType implements core.EventData.
func (PaymentTaken) EventType() string { return "payment.taken" }

// IntoResponse makes it a successful reply.
func (e PaymentTaken) IntoResponse() core.ResponseValue { return core.OKResponse(e) }

func (PaymentTaken) paymentReply() {}

// PaymentDeclined answers ChargePayment: the card was refused.
type PaymentDeclined struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

// EventType implements core.EventData.
func (PaymentDeclined) EventType() string { return "payment.declined" }

// IntoResponse makes it an error reply, with the reason.
func (e PaymentDeclined) IntoResponse() core.ResponseValue { return core.ErrorResponse(e, e.Reason) }

func (PaymentDeclined) paymentReply() {}

// PaymentReply is the union of the replies to ChargePayment.
type PaymentReply interface {
	core.IntoResponse
	paymentReply()
}

// The cards the demo's payment service knows.
const (
	cardOK       = "4242"
	cardDeclined = "0002"
	// cardNoAnswer is a card whose charges the payment service never
	// answers, as a gateway that swallows requests would.
	cardNoAnswer = "0119"
)

// paymentWithin is how long the saga waits for the payment service.
const paymentWithin = time.Second

// Order is the saga's input.
type Order struct {
	Customer string `json:"customer"`
	SKU      string `json:"sku"`
	Qty      int    `json:"qty"`
	Amount   int64  `json:"amount"`
	Card     string `json:"card"`
}

// Receipt is the saga's result.
type Receipt struct {
	OrderID string `json:"order_id"`
	Paid    int64  `json:"paid"`
}

// OrderSaga reserves the stock, takes the payment and confirms the order;
// if the payment fails or never comes, it releases the stock. Each step is
// journaled: after a crash, or when a reply wakes it, the saga runs again
// from the top and each journaled step returns what it returned before,
// so the code between steps must be deterministic.
var OrderSaga = saga.Define("order", 1, placeOrder,
	saga.Receives(StockReserved{}, StockUnavailable{}, PaymentTaken{}, PaymentDeclined{}))

func placeOrder(c *saga.Context, o Order) (Receipt, error) {
	stock := core.StreamID("stock", o.SKU)
	reserve, err := saga.Send(c, stock, core.Any, ReserveStock{OrderID: c.ID(), SKU: o.SKU, Qty: o.Qty})
	if err != nil {
		return Receipt{}, err
	}
	if _, err := saga.AwaitResponse[StockReply](c, reserve); err != nil {
		return Receipt{}, err // StockUnavailable: a *saga.ResponseError
	}
	c.Compensate("release stock", func(c *saga.Context) error {
		_, err := saga.Send(c, stock, core.Any, ReleaseStock{OrderID: c.ID(), SKU: o.SKU, Qty: o.Qty})
		return err
	})
	charge, err := saga.Send(c, core.StreamID("payment", c.ID()), core.NoStream,
		ChargePayment{OrderID: c.ID(), Amount: o.Amount, Card: o.Card})
	if err != nil {
		return Receipt{}, err
	}
	if _, err := saga.AwaitResponse[PaymentReply](c, charge, saga.Within(paymentWithin)); err != nil {
		return Receipt{}, err // PaymentDeclined, or saga.ErrTimeout
	}
	// Exactly once: the confirmation and the step's journal entry commit
	// together.
	return saga.StepTx(c, "confirm", func(ctx context.Context, scope *store.Scope) (Receipt, error) {
		_, err := scope.Append(ctx, core.StreamID("order", c.ID()), core.Exact(1), core.NewEvent(OrderConfirmed{Paid: o.Amount}))
		return Receipt{OrderID: c.ID(), Paid: o.Amount}, err
	})
}

// Stock is the stock service's table of items left, kept in its
// subscription's checkpoint transaction.
type Stock struct {
	table string // quoted, schema-qualified
}

// CreateStock creates the stock table if it is not there.
func CreateStock(ctx context.Context, es *store.EventStore) (*Stock, error) {
	s := &Stock{table: pgx.Identifier{es.Schema(), "stock"}.Sanitize()}
	_, err := es.Pool().Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.table+` (
		sku       text PRIMARY KEY,
		available integer NOT NULL CHECK (available >= 0)
	)`)
	return s, err
}

// Subscription is the stock service: it answers ReserveStock and
// ReleaseStock. Its table changes and its replies commit with its
// checkpoint, so each request is answered once, whatever crashes.
func (s *Stock) Subscription() runner.Subscription {
	return runner.Subscription{Name: "stock-service", Category: "stock",
		TxHandler: runner.TxHandlers(
			runner.OnTx(func(ctx context.Context, scope *store.Scope, req ReserveStock, recorded *core.RecordedEvent) error {
				var available int
				err := scope.Tx().QueryRow(ctx, `SELECT available FROM `+s.table+` WHERE sku = $1 FOR UPDATE`, req.SKU).Scan(&available)
				if err != nil {
					return err
				}
				var reply core.EventData = StockUnavailable{OrderID: req.OrderID, Available: available}
				if available >= req.Qty {
					if _, err := scope.Tx().Exec(ctx, `UPDATE `+s.table+` SET available = available - $2 WHERE sku = $1`, req.SKU, req.Qty); err != nil {
						return err
					}
					reply = StockReserved{OrderID: req.OrderID}
				}
				_, err = saga.Reply(ctx, scope, recorded, recorded.StreamID, core.Any, reply)
				return err
			}),
			runner.OnTx(func(ctx context.Context, scope *store.Scope, req ReleaseStock, recorded *core.RecordedEvent) error {
				if _, err := scope.Tx().Exec(ctx, `UPDATE `+s.table+` SET available = available + $2 WHERE sku = $1`, req.SKU, req.Qty); err != nil {
					return err
				}
				_, err := saga.Reply(ctx, scope, recorded, recorded.StreamID, core.Any, StockReleased{OrderID: req.OrderID})
				return err
			}),
		)}
}

// Available returns how many items of sku are left.
func (s *Stock) Available(ctx context.Context, es *store.EventStore, sku string) (int, error) {
	var available int
	err := es.Pool().QueryRow(ctx, `SELECT available FROM `+s.table+` WHERE sku = $1`, sku).Scan(&available)
	return available, err
}

// paymentService charges cards: it answers ChargePayment, declining card
// cardDeclined and never answering for card cardNoAnswer.
func paymentService() runner.Subscription {
	return runner.Subscription{Name: "payment-service", Category: "payment",
		TxHandler: runner.OnTx(func(ctx context.Context, scope *store.Scope, req ChargePayment, recorded *core.RecordedEvent) error {
			var reply core.EventData
			switch req.Card {
			case cardNoAnswer:
				return nil
			case cardDeclined:
				reply = PaymentDeclined{OrderID: req.OrderID, Reason: "card declined"}
			default:
				reply = PaymentTaken{OrderID: req.OrderID}
			}
			_, err := saga.Reply(ctx, scope, recorded, recorded.StreamID, core.Any, reply)
			return err
		})}
}

// Run is the demo. It prints what happens to out.
func Run(ctx context.Context, out io.Writer, pool *pgxpool.Pool, schema string) (err error) {
	registry := core.NewRegistry()
	for _, e := range []core.EventData{OrderPlaced{}, OrderConfirmed{}, ReserveStock{}, ReleaseStock{}, StockReserved{},
		StockUnavailable{}, StockReleased{}, ChargePayment{}, PaymentTaken{}, PaymentDeclined{}} {
		if err := registry.Add(e); err != nil {
			return err
		}
	}
	es, err := store.New(pool, &store.Config{Schema: schema, Registry: registry})
	if err != nil {
		return err
	}
	if err := es.Migrate(ctx); err != nil {
		return err
	}
	stock, err := CreateStock(ctx, es)
	if err != nil {
		return err
	}
	// Fresh ids per run, so the demo can run again and again.
	run := uuid.NewString()[:8]
	sku := "lamp." + run
	if _, err := es.Pool().Exec(ctx, `INSERT INTO `+stock.table+` (sku, available) VALUES ($1, 10)`, sku); err != nil {
		return err
	}
	fmt.Fprintf(out, "migrated schema %q; %s: 10 in stock\n", schema, sku)

	// One runner routes replies into the sagas' journals (the saga-inbox
	// subscription, which saga.New adds) and runs the two services; one
	// engine runs the sagas. In production the services would run in
	// their own processes, with their own runners.
	r, err := runner.New(es, &runner.Config{WorkerID: "shop"})
	if err != nil {
		return err
	}
	if err := r.Add(stock.Subscription()); err != nil {
		return err
	}
	if err := r.Add(paymentService()); err != nil {
		return err
	}
	engine, err := saga.New(es, r, &saga.Config{WorkerID: "shop"}, OrderSaga)
	if err != nil {
		return err
	}
	if err := r.Start(ctx); err != nil {
		return err
	}
	defer func() { err = cmp.Or(err, stop(ctx, r)) }()
	if err := engine.Start(ctx); err != nil {
		return err
	}
	defer func() { err = cmp.Or(err, stop(ctx, engine)) }()
	fmt.Fprintln(out, "runner and saga engine started")

	// Each order is placed, and its saga started, in one transaction:
	// neither exists without the other.
	orders := []Order{
		{Customer: "ada", SKU: sku, Qty: 2, Amount: 40, Card: cardOK},
		{Customer: "bob", SKU: sku, Qty: 3, Amount: 60, Card: cardDeclined},
		{Customer: "cyd", SKU: sku, Qty: 1, Amount: 20, Card: cardNoAnswer},
	}
	handles := make([]*saga.Handle[Receipt], len(orders))
	for i, o := range orders {
		id := o.Customer + "." + run
		err := es.InScope(ctx, func(scope *store.Scope) error {
			if _, err := scope.Append(ctx, core.StreamID("order", id), core.NoStream, core.NewEvent(OrderPlaced{Order: o})); err != nil {
				return err
			}
			handles[i], err = OrderSaga.StartTx(ctx, engine, scope, id, o)
			return err
		})
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "placed %d orders, each with its saga in the same transaction\n", len(orders))

	for _, h := range handles {
		if err := printOutcome(ctx, out, engine, h); err != nil {
			return err
		}
	}
	// The sagas ended once their release requests were sent; wait until
	// the stock service has handled them.
	stream := core.StreamID("stock", sku)
	version, err := es.StreamVersion(ctx, stream)
	if err != nil {
		return err
	}
	if err := r.WaitFor(ctx, "stock-service", &core.CommittedEvents{StreamID: stream, FromVersion: version, ToVersion: version}); err != nil {
		return err
	}
	available, err := stock.Available(ctx, es, sku)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s: %d in stock (ada's 2 sold; bob's 3 and cyd's 1 released)\n", sku, available)
	return nil
}

// printOutcome waits for a saga to end and prints its outcome and its
// journal.
func printOutcome(ctx context.Context, out io.Writer, engine *saga.Engine, h *saga.Handle[Receipt]) error {
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	receipt, err := h.Result(wait)
	var failed *saga.FailedError
	switch {
	case err == nil:
		fmt.Fprintf(out, "\norder %s: completed, paid %d\n", receipt.OrderID, receipt.Paid)
	case errors.As(err, &failed):
		fmt.Fprintf(out, "\norder %s: %s (%s)\n", h.ID(), failed.Status, failed.Cause)
	default:
		return err
	}
	entries, err := engine.Journal(ctx, OrderSaga.Name(), h.ID())
	if err != nil {
		return err
	}
	for _, line := range journalLines(entries) {
		fmt.Fprintf(out, "  %s\n", line)
	}
	return nil
}

// journalLines describes a journal's entries, one line each: the type and,
// for steps, what they did.
//
// A reply enters the journal when the saga-inbox subscription routes it,
// which can be a moment before the await that takes it is journaled, when
// a participant answers fast. So that the output reads the same on every
// run, replies are listed just before the entry that consumed them.
func journalLines(entries []saga.JournalEntry) []string {
	var lines, replies []string
	for _, e := range entries {
		// The fields of the journal's entries that the demo shows.
		var d struct {
			Kind      string `json:"kind"`
			Name      string `json:"name"`
			EventType string `json:"event_type"`
			Status    string `json:"status"`
		}
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return append(lines, fmt.Sprintf("%s: %v", e.Type, err))
		}
		line := e.Type
		switch e.Type {
		case "saga.stepped":
			line = fmt.Sprintf("%-18s %s %s", e.Type, d.Kind, d.Name)
		case "saga.compensated":
			line = fmt.Sprintf("%-18s %s", e.Type, d.Name)
		case "saga.received":
			replies = append(replies, fmt.Sprintf("%-18s %s", e.Type, d.EventType))
			continue
		case "saga.consumed":
			lines, replies = append(lines, replies...), nil
		case "saga.finished":
			line = fmt.Sprintf("%-18s %s", e.Type, d.Status)
		}
		lines = append(lines, line)
	}
	return append(lines, replies...)
}

func stop(ctx context.Context, s interface{ Stop(context.Context) error }) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return s.Stop(ctx)
}
