// Command replicas runs two runners on one subscription, as two replicas
// of a service would: one leads (it holds the subscription's lease and
// handles the events), the other stands by. When the leader stops, its
// lease is released and the standby takes it over at once, under a higher
// fence token, and goes on from the checkpoint: every order is counted
// once, by one replica or the other.
//
// Here both replicas share one process and one pool; in production each is
// its own process, with its own pool, on the same schema.
//
//	go run ./examples/replicas
package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/runner"
	"github.com/mire-go/mire/store"
)

// main opens a pool on DATABASE_URL, or on a local server with a
// passwordless postgres user, and runs the example in a schema of its own.
func main() {
	ctx := context.Background()
	url := cmp.Or(os.Getenv("DATABASE_URL"), "postgres://postgres@localhost:5432/postgres?sslmode=disable")
	pool, err := pgxpool.New(ctx, url)
	if err == nil {
		err = Run(ctx, os.Stdout, pool, "replicas_example")
		pool.Close()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "replicas: %v\n", err)
		os.Exit(1)
	}
}

// OrderPlaced starts an order's stream.
type OrderPlaced struct {
	Customer string `json:"customer"`
	Amount   int64  `json:"amount"`
}

// EventType implements core.EventData.
func (OrderPlaced) EventType() string { return "order.placed" }

// subscription names the read model's checkpoint and lease.
const subscription = "orders"

// Orders is the read model: one row per order, with the replica that
// handled it.
type Orders struct {
	table string // quoted, schema-qualified
}

// CreateOrders creates the read model's table if it is not there.
func CreateOrders(ctx context.Context, es *store.EventStore) (*Orders, error) {
	o := &Orders{table: pgx.Identifier{es.Schema(), "orders"}.Sanitize()}
	_, err := es.Pool().Exec(ctx, `CREATE TABLE IF NOT EXISTS `+o.table+` (
		order_id   text PRIMARY KEY,
		customer   text NOT NULL,
		amount     bigint NOT NULL,
		handled_by text NOT NULL
	)`)
	return o, err
}

// Handler inserts an order's row in the runner's transaction, naming the
// replica that handled it. An order handled twice would violate the
// primary key: the runner never lets that happen, since a fenced leader's
// transaction cannot move the checkpoint and rolls back.
func (o *Orders) Handler(replica string) runner.TransactionalEventHandler {
	return runner.OnTx(func(ctx context.Context, scope *store.Scope, e OrderPlaced, recorded *core.RecordedEvent) error {
		_, err := scope.Tx().Exec(ctx, `INSERT INTO `+o.table+` (order_id, customer, amount, handled_by) VALUES ($1, $2, $3, $4)`,
			recorded.StreamID, e.Customer, e.Amount, replica)
		return err
	})
}

// Print prints how many of this run's orders each replica handled.
func (o *Orders) Print(ctx context.Context, out io.Writer, pool *pgxpool.Pool, run string) error {
	rows, err := pool.Query(ctx, `SELECT handled_by, count(*), sum(amount) FROM `+o.table+`
		WHERE order_id LIKE 'order-' || $1 || '.%' GROUP BY handled_by ORDER BY handled_by`, run)
	if err != nil {
		return err
	}
	type row struct {
		Replica       string
		Orders, Total int64
	}
	all, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		return err
	}
	for _, r := range all {
		fmt.Fprintf(out, "  handled by %s: %d orders, %d in all\n", r.Replica, r.Orders, r.Total)
	}
	return nil
}

// replica starts a runner named worker, with short leases, so that a
// crashed leader's partition is taken over within LeaseTTL plus
// RecheckInterval. (A graceful stop hands it over at once.)
func replica(ctx context.Context, es *store.EventStore, orders *Orders, worker string) (*runner.Runner, error) {
	r, err := runner.New(es, &runner.Config{WorkerID: worker, LeaseTTL: 2 * time.Second, RecheckInterval: 100 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	err = r.Add(runner.Subscription{Name: subscription, Category: "order", TxHandler: orders.Handler(worker)})
	if err != nil {
		return nil, err
	}
	if err := r.Start(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Run is the demo. It prints what happens to out.
func Run(ctx context.Context, out io.Writer, pool *pgxpool.Pool, schema string) (err error) {
	registry := core.NewRegistry()
	core.Register[OrderPlaced](registry)
	es, err := store.New(pool, &store.Config{Schema: schema, Registry: registry})
	if err != nil {
		return err
	}
	if err := es.Migrate(ctx); err != nil {
		return err
	}
	orders, err := CreateOrders(ctx, es)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "migrated schema %q and created the read model's table\n", schema)

	var started []*runner.Runner
	defer func() {
		stop, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		for _, r := range started {
			err = cmp.Or(err, r.Stop(stop))
		}
	}()

	// Which of two replicas started together leads is a race; start A
	// first and wait until it leads, then B.
	a, err := replica(ctx, es, orders, "replica-a")
	if err != nil {
		return err
	}
	started = append(started, a)
	leaderA, err := waitForLeader(ctx, a.Control(), "replica-a")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "replica-a started and leads %q: fence %d\n", subscription, leaderA.FenceToken)
	b, err := replica(ctx, es, orders, "replica-b")
	if err != nil {
		return err
	}
	started = append(started, b)
	fmt.Fprintln(out, "replica-b started: it stands by while replica-a holds the lease")

	// Fresh order IDs per run, so the demo can run again and again.
	run := uuid.NewString()[:8]
	placeOrders := func(from, to int) (*core.CommittedEvents, error) {
		var last *core.CommittedEvents
		for i := from; i <= to; i++ {
			id := fmt.Sprintf("%s.%02d", run, i)
			committed, err := es.Append(ctx, core.StreamID("order", id), core.NoStream, core.NewEvent(OrderPlaced{Customer: "Ada", Amount: int64(i)}))
			if err != nil {
				return nil, err
			}
			last = committed
		}
		return last, nil
	}
	last, err := placeOrders(1, 10)
	if err != nil {
		return err
	}
	// Any replica's WaitFor works, whichever leads: it reads the
	// subscription's progress in the database.
	if err := b.WaitFor(ctx, subscription, last); err != nil {
		return err
	}
	fmt.Fprintln(out, "placed orders 1-10; replica-b's WaitFor returned")
	if err := orders.Print(ctx, out, pool, run); err != nil {
		return err
	}

	// A graceful stop finishes or rolls back the batch in flight and
	// releases the lease, announcing it: the standby takes over at once.
	if err := a.Stop(ctx); err != nil {
		return err
	}
	fmt.Fprintln(out, "stopped replica-a: it released its lease")
	leaderB, err := waitForLeader(ctx, b.Control(), "replica-b")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "replica-b took over: fence %d (replica-a's was %d), from checkpoint %d\n",
		leaderB.FenceToken, leaderA.FenceToken, leaderB.Checkpoint)

	if last, err = placeOrders(11, 20); err != nil {
		return err
	}
	if err := b.WaitFor(ctx, subscription, last); err != nil {
		return err
	}
	fmt.Fprintln(out, "placed orders 11-20; replica-b's WaitFor returned")
	if err := orders.Print(ctx, out, pool, run); err != nil {
		return err
	}
	statuses, err := b.Control().Status(ctx, subscription)
	if err != nil {
		return err
	}
	for _, s := range statuses {
		fmt.Fprintf(out, "status: worker %s, fence %d, checkpoint %d, head %d, lag %d, %s\n",
			s.Worker, s.FenceToken, s.Checkpoint, s.Head, s.Lag, s.State)
	}
	return nil
}

// waitForLeader polls the subscription's status until worker holds the
// lease of its partition, or fails after a deadline: leases change hands
// asynchronously, so the example waits for them rather than sleeping.
func waitForLeader(ctx context.Context, control *runner.Control, worker string) (runner.LeaseStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var last []runner.LeaseStatus
	for {
		statuses, err := control.Status(ctx, subscription)
		switch {
		case err != nil && ctx.Err() == nil:
			return runner.LeaseStatus{}, err
		case err == nil:
			last = statuses
			if len(statuses) == 1 && statuses[0].Worker == worker {
				return statuses[0], nil
			}
		}
		select {
		case <-ctx.Done():
			return runner.LeaseStatus{}, fmt.Errorf("%s did not take the lease of %q: status %+v", worker, subscription, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
