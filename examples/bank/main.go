// Command bank is mire's end-to-end demo: it migrates a schema, opens an
// account, deposits, loses an optimistic-concurrency race and retries it
// with store.Update, loads the aggregate back and reads the log in global
// order.
//
//	go run ./examples/bank
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/store"
)

// main opens a pool on DATABASE_URL, or on a local server with a
// passwordless postgres user, and runs the example in a schema of its own.
func main() {
	ctx := context.Background()
	url := cmp.Or(os.Getenv("DATABASE_URL"), "postgres://postgres@localhost:5432/postgres?sslmode=disable")
	pool, err := pgxpool.New(ctx, url)
	if err == nil {
		err = Run(ctx, os.Stdout, pool, "bank_example")
		pool.Close()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bank: %v\n", err)
		os.Exit(1)
	}
}

// The domain: events are plain structs with a stable EventType.

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

// Account is the aggregate's state, rebuilt by Apply.
type Account struct {
	Owner   string
	Balance int64
}

// Category implements core.Aggregate: account "42" lives in stream "account-42".
func (*Account) Category() string { return "account" }

// Apply implements core.Aggregate. No validation here: only folding.
func (a *Account) Apply(event core.EventData) {
	switch e := event.(type) {
	case AccountOpened:
		a.Owner = e.Owner
	case MoneyDeposited:
		a.Balance += e.Amount
	case MoneyWithdrawn:
		a.Balance -= e.Amount
	}
}

// Withdraw is a command: it validates against the current state, then records.
func Withdraw(root *core.Root[*Account], amount int64) error {
	if amount > root.State().Balance {
		return fmt.Errorf("insufficient funds: balance %d, withdrawal %d", root.State().Balance, amount)
	}
	root.Record(MoneyWithdrawn{Amount: amount})
	return nil
}

// Run is the demo. It prints what happens to out.
func Run(ctx context.Context, out io.Writer, pool *pgxpool.Pool, schema string) error {
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
	fmt.Fprintf(out, "migrated schema %q\n", schema)

	// A fresh account per run, so the demo can run again and again.
	id := "ada." + uuid.NewString()[:8]
	account := core.NewRoot(id, &Account{})
	account.Record(AccountOpened{Owner: "Ada"})
	account.Record(MoneyDeposited{Amount: 100})
	if _, err := store.Save(ctx, es, account); err != nil {
		return err
	}
	fmt.Fprintf(out, "opened an account for Ada with 100; stream at version %d\n", account.Version())

	// Two clerks load the same version; the first to save wins.
	clerk1, err := store.Load[Account](ctx, es, id)
	if err != nil {
		return err
	}
	clerk2, err := store.Load[Account](ctx, es, id)
	if err != nil {
		return err
	}
	if err := Withdraw(clerk1, 30); err != nil {
		return err
	}
	if _, err := store.Save(ctx, es, clerk1); err != nil {
		return err
	}
	fmt.Fprintln(out, "clerk 1 withdrew 30")

	// Meanwhile another account is opened: its events land in the global
	// log between Ada's.
	bob := core.NewRoot("bob."+uuid.NewString()[:8], &Account{})
	bob.Record(AccountOpened{Owner: "Bob"})
	if _, err := store.Save(ctx, es, bob); err != nil {
		return err
	}
	fmt.Fprintln(out, "opened an account for Bob")

	if err := Withdraw(clerk2, 50); err != nil {
		return err
	}
	_, err = store.Save(ctx, es, clerk2)
	var conflict *core.VersionConflictError
	if !errors.As(err, &conflict) {
		return fmt.Errorf("expected a concurrency conflict, got %w", err)
	}
	fmt.Fprintf(out, "clerk 2 lost the race: expected version %s, stream is at %d\n", conflict.Expected, conflict.Actual)

	// The retry: store.Update reloads, runs the command again against fresh
	// state and saves, as often as conflicts require (within a bound).
	committed, err := store.Update(ctx, es, id, func(root *core.Root[*Account]) error {
		return Withdraw(root, 50)
	}, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "clerk 2 retried with store.Update: reloaded at version %d and withdrew 50\n", committed.FromVersion-1)

	final, err := store.Load[Account](ctx, es, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "loaded account: owner %s, balance %d, version %d\n", final.State().Owner, final.State().Balance, final.Version())

	fmt.Fprintln(out, "the account's stream:")
	for event, err := range es.Read(ctx, core.ReadStream(final.StreamID())) {
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "  v%d %-24s %s\n", event.StreamVersion, event.EventType, event.Data)
	}

	// A category read sees every account's events in one global order, by
	// position (it sequences newly committed events first). Newest first,
	// the last five are this run's: Bob's opening falls between Ada's
	// withdrawals.
	fmt.Fprintln(out, "the last 5 events of category \"account\", newest first:")
	for event, err := range es.Read(ctx, core.StreamQuery{Category: "account", Direction: core.Backward, Limit: 5}) {
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "  position %-3d %s v%d  %s\n", event.GlobalPosition, event.StreamID, event.StreamVersion, event.EventType)
	}
	return nil
}
