// Command projection keeps a read model current with a runner: a table of
// account balances, written by a transactional handler in the transaction
// that moves the subscription's checkpoint, so that each event counts
// exactly once. It appends deposits and withdrawals, waits with WaitFor
// until the read model has them (read your writes), and queries the table.
// Then it stops the runner, appends while nothing projects (the status
// shows the lag), and starts a new runner, which goes on from the
// checkpoint under a higher fence token.
//
//	go run ./examples/projection
package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
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
		err = Run(ctx, os.Stdout, pool, "projection_example")
		pool.Close()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "projection: %v\n", err)
		os.Exit(1)
	}
}

// AccountOpened starts an account's stream.
type AccountOpened struct {
	Owner string `json:"owner"`
}

// EventType implements core.EventData.
func (AccountOpened) EventType() string { return "account.opened" }

// MoneyDeposited adds to the balance.
type MoneyDeposited struct {
	Amount int64 `json:"amount"`
}

// EventType implements core.EventData.
func (MoneyDeposited) EventType() string { return "account.money-deposited" }

// MoneyWithdrawn takes from the balance.
type MoneyWithdrawn struct {
	Amount int64 `json:"amount"`
}

// EventType implements core.EventData.
func (MoneyWithdrawn) EventType() string { return "account.money-withdrawn" }

// category holds the accounts' streams: account "ada" is "account-ada".
const category = "account"

// subscription names the read model's checkpoint and lease.
const subscription = "account-balances"

// Balances is the read model: one row per account, kept by Handler. It is
// a plain table in the store's schema; queries read it like any other.
type Balances struct {
	table string // quoted, schema-qualified
}

// CreateBalances creates the read model's table if it is not there.
func CreateBalances(ctx context.Context, es *store.EventStore) (*Balances, error) {
	b := &Balances{table: pgx.Identifier{es.Schema(), "account_balances"}.Sanitize()}
	_, err := es.Pool().Exec(ctx, `CREATE TABLE IF NOT EXISTS `+b.table+` (
		account text PRIMARY KEY,
		owner   text NOT NULL,
		balance bigint NOT NULL,
		events  bigint NOT NULL
	)`)
	return b, err
}

// Handler applies events to the table through the runner's transaction
// (scope.Tx()): the rows change if and only if the checkpoint moves past
// the events, so no event is counted twice or lost, whatever crashes. It
// never commits: the runner does.
func (b *Balances) Handler() runner.TransactionalEventHandler {
	return runner.TxHandlers(
		runner.OnTx(func(ctx context.Context, scope *store.Scope, e AccountOpened, recorded *core.RecordedEvent) error {
			_, err := scope.Tx().Exec(ctx, `INSERT INTO `+b.table+` (account, owner, balance, events) VALUES ($1, $2, 0, 1)`,
				accountID(recorded), e.Owner)
			return err
		}),
		runner.OnTx(func(ctx context.Context, scope *store.Scope, e MoneyDeposited, recorded *core.RecordedEvent) error {
			return b.add(ctx, scope, recorded, e.Amount)
		}),
		runner.OnTx(func(ctx context.Context, scope *store.Scope, e MoneyWithdrawn, recorded *core.RecordedEvent) error {
			return b.add(ctx, scope, recorded, -e.Amount)
		}),
	)
}

func (b *Balances) add(ctx context.Context, scope *store.Scope, recorded *core.RecordedEvent, amount int64) error {
	tag, err := scope.Tx().Exec(ctx, `UPDATE `+b.table+` SET balance = balance + $2, events = events + 1 WHERE account = $1`,
		accountID(recorded), amount)
	if err == nil && tag.RowsAffected() != 1 {
		// Events of a stream arrive in version order: the opening first.
		err = fmt.Errorf("account %q has no row", accountID(recorded))
	}
	return err
}

// Print prints the rows of accounts, by owner.
func (b *Balances) Print(ctx context.Context, out io.Writer, pool *pgxpool.Pool, accounts []string) error {
	rows, err := pool.Query(ctx, `SELECT account, owner, balance, events FROM `+b.table+` WHERE account = ANY($1) ORDER BY owner`, accounts)
	if err != nil {
		return err
	}
	type row struct {
		Account, Owner  string
		Balance, Events int64
	}
	all, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  %-14s %-6s %7s %6s\n", "account", "owner", "balance", "events")
	for _, r := range all {
		fmt.Fprintf(out, "  %-14s %-6s %7d %6d\n", r.Account, r.Owner, r.Balance, r.Events)
	}
	return nil
}

// accountID is the account of an event: its stream id without the category.
func accountID(recorded *core.RecordedEvent) string {
	return strings.TrimPrefix(recorded.StreamID, category+core.CategorySeparator)
}

// startRunner starts a runner that keeps balances current. A fixed WorkerID
// names it in leases and status (the default adds the host, the process id
// and a random suffix).
func startRunner(ctx context.Context, es *store.EventStore, balances *Balances) (*runner.Runner, error) {
	r, err := runner.New(es, &runner.Config{WorkerID: "projector"})
	if err != nil {
		return nil, err
	}
	err = r.Add(runner.Subscription{
		Name:      subscription,
		Category:  category,
		TxHandler: balances.Handler(),
	})
	if err != nil {
		return nil, err
	}
	if err := r.Start(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

func stopRunner(ctx context.Context, r *runner.Runner) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return r.Stop(ctx)
}

// Run is the demo. It prints what happens to out.
func Run(ctx context.Context, out io.Writer, pool *pgxpool.Pool, schema string) (err error) {
	registry := core.NewRegistry()
	core.Register[AccountOpened](registry)
	core.Register[MoneyDeposited](registry)
	core.Register[MoneyWithdrawn](registry)

	es, err := store.New(pool, &store.Config{Schema: schema, Registry: registry})
	if err != nil {
		return err
	}
	if err := es.Migrate(ctx); err != nil {
		return err
	}
	balances, err := CreateBalances(ctx, es)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "migrated schema %q and created the read model's table\n", schema)

	r, err := startRunner(ctx, es, balances)
	if err != nil {
		return err
	}
	running := true
	defer func() {
		if running {
			err = cmp.Or(err, stopRunner(ctx, r))
		}
	}()
	fmt.Fprintf(out, "runner %q started: subscription %q follows category %q\n", r.WorkerID(), subscription, category)

	// Fresh accounts per run, so the demo can run again and again.
	run := uuid.NewString()[:8]
	ada, bob, cyd := "ada."+run, "bob."+run, "cyd."+run
	accounts := []string{ada, bob, cyd}
	appends := []struct {
		account string
		events  []core.EventData
	}{
		{ada, []core.EventData{AccountOpened{Owner: "Ada"}, MoneyDeposited{Amount: 100}}},
		{bob, []core.EventData{AccountOpened{Owner: "Bob"}, MoneyDeposited{Amount: 50}}},
		{ada, []core.EventData{MoneyWithdrawn{Amount: 30}}},
		{cyd, []core.EventData{AccountOpened{Owner: "Cyd"}}},
		{bob, []core.EventData{MoneyWithdrawn{Amount: 20}, MoneyDeposited{Amount: 5}}},
	}
	var last *core.CommittedEvents
	events := 0
	for _, a := range appends {
		last, err = es.Append(ctx, core.StreamID(category, a.account), core.Any, core.Events(a.events...)...)
		if err != nil {
			return err
		}
		events += len(a.events)
	}
	fmt.Fprintf(out, "appended %d events to %d accounts; the last append: %s v%d-%d\n",
		events, len(accounts), last.StreamID, last.FromVersion, last.ToVersion)

	// Read your writes: WaitFor returns once the subscription has handled
	// what the append returned (and, with one partition, everything before
	// it in the log).
	if err := r.WaitFor(ctx, subscription, last); err != nil {
		return err
	}
	fmt.Fprintln(out, "WaitFor returned: the read model has them")
	if err := balances.Print(ctx, out, pool, accounts); err != nil {
		return err
	}
	if err := printStatus(ctx, out, r.Control()); err != nil {
		return err
	}

	// A graceful stop releases the lease. Events appended meanwhile wait
	// in the log: the checkpoint says where the next runner goes on.
	running = false
	if err := stopRunner(ctx, r); err != nil {
		return err
	}
	fmt.Fprintln(out, "stopped the runner")
	if _, err := es.Append(ctx, core.StreamID(category, ada), core.Any, core.NewEvent(MoneyDeposited{Amount: 10})); err != nil {
		return err
	}
	if last, err = es.Append(ctx, core.StreamID(category, cyd), core.Any, core.NewEvent(MoneyDeposited{Amount: 40})); err != nil {
		return err
	}
	// The runner ran the sequencer that numbers new events; with it
	// stopped, number them here so that the head shows them.
	if _, err := es.Sequence(ctx); err != nil {
		return err
	}
	fmt.Fprintln(out, "appended 2 events while no runner ran")
	if err := printStatus(ctx, out, r.Control()); err != nil {
		return err
	}

	if r, err = startRunner(ctx, es, balances); err != nil {
		return err
	}
	running = true
	if err := r.WaitFor(ctx, subscription, last); err != nil {
		return err
	}
	fmt.Fprintln(out, "started a new runner: it went on from the checkpoint, under a new fence")
	if err := printStatus(ctx, out, r.Control()); err != nil {
		return err
	}
	return balances.Print(ctx, out, pool, accounts)
}

// printStatus prints the subscription's partitions as the database sees
// them: who leads each, under which fence token, and how far it got.
func printStatus(ctx context.Context, out io.Writer, control *runner.Control) error {
	statuses, err := control.Status(ctx, subscription)
	if err != nil {
		return err
	}
	for _, s := range statuses {
		fmt.Fprintf(out, "status of %s partition %d/%d: worker %s, fence %d, checkpoint %d, head %d, lag %d, %s\n",
			s.Subscription, s.Partition, s.Partitions, cmp.Or(s.Worker, "(none)"), s.FenceToken, s.Checkpoint, s.Head, s.Lag, s.State)
	}
	return nil
}
