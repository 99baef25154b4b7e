// Command transfer shows a transaction scope: a money transfer between two
// accounts that must change both or neither. The scope locks both streams,
// checks the funds while no one else can change them, and saves both
// aggregates in one PostgreSQL transaction.
//
// Scopes are the escape hatch, not the default: most commands should change
// one aggregate. A transfer whose two halves must never be seen apart is
// what they are for.
//
//	go run ./examples/transfer
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

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
		err = Run(ctx, os.Stdout, pool, "transfer_example")
		pool.Close()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "transfer: %v\n", err)
		os.Exit(1)
	}
}

// AccountOpened starts an account's stream with an initial balance.
type AccountOpened struct {
	Owner   string `json:"owner"`
	Balance int64  `json:"balance"`
}

// EventType implements core.EventData.
func (AccountOpened) EventType() string { return "account.opened" }

// TransferSent takes a transfer's amount from the sending account.
type TransferSent struct {
	TransferID string `json:"transfer_id"`
	To         string `json:"to"`
	Amount     int64  `json:"amount"`
}

// EventType implements core.EventData.
func (TransferSent) EventType() string { return "account.transfer-sent" }

// TransferReceived adds a transfer's amount to the receiving account.
type TransferReceived struct {
	TransferID string `json:"transfer_id"`
	From       string `json:"from"`
	Amount     int64  `json:"amount"`
}

// EventType implements core.EventData.
func (TransferReceived) EventType() string { return "account.transfer-received" }

// Account is the aggregate's state.
type Account struct {
	Owner   string
	Balance int64
}

// Category implements core.Aggregate.
func (*Account) Category() string { return "account" }

// Apply implements core.Aggregate.
func (a *Account) Apply(event core.EventData) {
	switch e := event.(type) {
	case AccountOpened:
		a.Owner, a.Balance = e.Owner, e.Balance
	case TransferSent:
		a.Balance -= e.Amount
	case TransferReceived:
		a.Balance += e.Amount
	}
}

// Domain errors.
var (
	ErrAccountNotFound   = errors.New("account not found")
	ErrSameAccount       = errors.New("cannot transfer to the same account")
	ErrInvalidAmount     = errors.New("amount must be positive")
	ErrInsufficientFunds = errors.New("insufficient funds")
)

// Transfer moves amount from one account to the other, atomically: both
// accounts record their half of the transfer, or neither does.
func Transfer(ctx context.Context, es *store.EventStore, from, to string, amount int64) error {
	return transfer(ctx, es, from, to, amount, nil)
}

// transfer is Transfer with a hook that runs between the two saves, which
// the demo uses to fail halfway through.
func transfer(ctx context.Context, es *store.EventStore, from, to string, amount int64, afterFirstSave func() error) error {
	switch {
	case from == to:
		return ErrSameAccount
	case amount <= 0:
		return ErrInvalidAmount
	}
	transferID := uuid.NewString()

	// InScope commits if the function returns nil and rolls back otherwise,
	// panics included.
	return es.InScope(ctx, func(scope *store.Scope) error {
		// LoadForUpdate locks each stream until the scope ends. Two
		// transfers between the same accounts in opposite directions would
		// deadlock if each locked its own sender first; taking the locks in
		// one global order (by ID) makes the second wait instead.
		first, second := from, to
		if second < first {
			first, second = second, first
		}
		accounts := make(map[string]*core.Root[*Account], 2)
		for _, id := range []string{first, second} {
			root, err := store.LoadForUpdate[Account](ctx, scope, id)
			if errors.Is(err, core.ErrStreamNotFound) {
				return fmt.Errorf("%w: %s", ErrAccountNotFound, id)
			}
			if err != nil {
				return err
			}
			accounts[id] = root
		}
		sender, receiver := accounts[from], accounts[to]

		// The check holds until commit: no one else can write either stream
		// while the scope holds the locks.
		if sender.State().Balance < amount {
			return fmt.Errorf("%w: %s has %d, transfer of %d", ErrInsufficientFunds,
				sender.State().Owner, sender.State().Balance, amount)
		}
		sender.Record(TransferSent{TransferID: transferID, To: to, Amount: amount})
		receiver.Record(TransferReceived{TransferID: transferID, From: from, Amount: amount})

		if _, err := store.Save(ctx, scope, sender); err != nil {
			return err
		}
		if afterFirstSave != nil {
			// Whatever fails here, the sender's saved events roll back with
			// the scope. (The roots were marked saved; they are discarded
			// with this closure, as a rolled-back root must be.)
			if err := afterFirstSave(); err != nil {
				return err
			}
		}
		_, err := store.Save(ctx, scope, receiver)
		return err
	})
}

// Run is the demo. It prints what happens to out.
func Run(ctx context.Context, out io.Writer, pool *pgxpool.Pool, schema string) error {
	registry := core.NewRegistry()
	core.Register[AccountOpened](registry)
	core.Register[TransferSent](registry)
	core.Register[TransferReceived](registry)

	es, err := store.New(pool, &store.Config{Schema: schema, Registry: registry})
	if err != nil {
		return err
	}
	if err := es.Migrate(ctx); err != nil {
		return err
	}

	// Fresh accounts per run, so the demo can run again and again.
	ada, bob := uuid.NewString(), uuid.NewString()
	for _, open := range []struct {
		id    string
		event AccountOpened
	}{{ada, AccountOpened{Owner: "Ada", Balance: 100}}, {bob, AccountOpened{Owner: "Bob", Balance: 20}}} {
		root := core.NewRoot(open.id, &Account{})
		root.Record(open.event)
		if _, err := store.Save(ctx, es, root); err != nil {
			return err
		}
	}
	show := func(label string) error {
		fmt.Fprintf(out, "%s\n", label)
		for _, id := range []string{ada, bob} {
			root, err := store.Load[Account](ctx, es, id)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "  %-3s balance %3d, stream version %d\n", root.State().Owner, root.State().Balance, root.Version())
		}
		return nil
	}
	if err := show("opened two accounts:"); err != nil {
		return err
	}

	if err := Transfer(ctx, es, ada, bob, 30); err != nil {
		return err
	}
	if err := show("Ada sent Bob 30; both streams moved:"); err != nil {
		return err
	}

	err = Transfer(ctx, es, bob, ada, 500)
	if !errors.Is(err, ErrInsufficientFunds) {
		return fmt.Errorf("want insufficient funds, got %w", err)
	}
	fmt.Fprintf(out, "Bob tries to send Ada 500: %v\n", err)
	if err := show("nothing was written to either stream:"); err != nil {
		return err
	}

	crash := errors.New("simulated failure after saving the sender")
	err = transfer(ctx, es, ada, bob, 10, func() error { return crash })
	if !errors.Is(err, crash) {
		return fmt.Errorf("want the simulated failure, got %w", err)
	}
	fmt.Fprintf(out, "Ada sends Bob 10, but: %v\n", err)
	if err := show("the sender's saved half rolled back with the scope:"); err != nil {
		return err
	}

	// Opposite transfers at the same time: with locks taken in one order
	// they queue up instead of deadlocking.
	const rounds = 10
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, pair := range [][2]string{{ada, bob}, {bob, ada}} {
		wg.Go(func() {
			for range rounds {
				if err := Transfer(ctx, es, pair[0], pair[1], 1); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return show(fmt.Sprintf("%d transfers of 1 each way, concurrently; no deadlock, balances unchanged:", rounds))
}
