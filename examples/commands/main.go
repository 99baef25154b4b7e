// Command commands shows where validation lives in an event-sourced
// aggregate: in command handlers, which check a command against the current
// state and either reject it with a typed domain error or return the events
// to record. Apply only folds events that already happened.
//
// A rejected command records nothing, so nothing is saved and the stream
// keeps its version; an accepted one is saved with optimistic concurrency.
//
//	go run ./examples/commands
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
		err = Run(ctx, os.Stdout, pool, "commands_example")
		pool.Close()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "commands: %v\n", err)
		os.Exit(1)
	}
}

// Events: facts, named in the past tense. Their EventType is wire format.
// mire-eventgen writes the EventType methods and RegisterAccountEvents into
// mire_events_gen.go (run go generate after adding an event): AccountOpened
// becomes "account.account-opened" unless pinned with name=.
//
//go:generate go tool mire-eventgen -prefix account

// AccountOpened starts an account's stream.
//
//mire:event name=account.opened
type AccountOpened struct {
	Owner string `json:"owner"`
}

// MoneyDeposited adds to the balance.
//
//mire:event
type MoneyDeposited struct {
	Amount int64 `json:"amount"`
}

// MoneyWithdrawn takes from the balance.
//
//mire:event
type MoneyWithdrawn struct {
	Amount int64 `json:"amount"`
}

// AccountClosed ends the account's life: it accepts no more money.
//
//mire:event name=account.closed
type AccountClosed struct{}

// Account is the aggregate's state.
type Account struct {
	Open    bool
	Closed  bool
	Owner   string
	Balance int64
}

// Category implements core.Aggregate.
func (*Account) Category() string { return "account" }

// Apply implements core.Aggregate. It only folds: an event is something that
// already happened, so there is nothing left to check. Rejecting or
// "correcting" an event here would make the state disagree with the stored
// history, and would change what old streams load as whenever a rule
// changes.
func (a *Account) Apply(event core.EventData) {
	switch e := event.(type) {
	case AccountOpened:
		a.Open, a.Owner = true, e.Owner
	case MoneyDeposited:
		a.Balance += e.Amount
	case MoneyWithdrawn:
		a.Balance -= e.Amount
	case AccountClosed:
		a.Closed = true
	}
}

// Domain errors. Callers match them with errors.Is, and a caller that needs
// the details of a refused withdrawal gets them with errors.As.
var (
	ErrAccountExists     = errors.New("account already open")
	ErrAccountNotFound   = errors.New("account not open")
	ErrAccountClosed     = errors.New("account closed")
	ErrInvalidAmount     = errors.New("amount must be positive")
	ErrInsufficientFunds = errors.New("insufficient funds")
	ErrBalanceNotZero    = errors.New("balance must be zero to close")
)

// InsufficientFundsError is a refused withdrawal. It matches
// ErrInsufficientFunds.
type InsufficientFundsError struct {
	Balance, Amount int64
}

func (e *InsufficientFundsError) Error() string {
	return fmt.Sprintf("insufficient funds: balance %d, withdrawal %d", e.Balance, e.Amount)
}

// Is makes the error match ErrInsufficientFunds.
func (e *InsufficientFundsError) Is(target error) bool { return target == ErrInsufficientFunds }

// Command is a request to change one account. Decide is where the business
// rules live: it checks the command against the current state and returns
// the events to record, or a domain error. It is a pure function of the
// state, so it is trivial to unit test, and it must not modify the state.
type Command interface {
	AccountID() string
	Decide(state *Account) ([]core.EventData, error)
}

// OpenAccount opens a new account.
type OpenAccount struct {
	ID, Owner string
}

// AccountID implements Command.
func (c OpenAccount) AccountID() string { return c.ID }

// Decide implements Command.
func (c OpenAccount) Decide(a *Account) ([]core.EventData, error) {
	if a.Open {
		return nil, ErrAccountExists
	}
	return []core.EventData{AccountOpened{Owner: c.Owner}}, nil
}

// Deposit adds money to an open account.
type Deposit struct {
	ID     string
	Amount int64
}

// AccountID implements Command.
func (c Deposit) AccountID() string { return c.ID }

// Decide implements Command.
func (c Deposit) Decide(a *Account) ([]core.EventData, error) {
	if err := usable(a); err != nil {
		return nil, err
	}
	if c.Amount <= 0 {
		return nil, ErrInvalidAmount
	}
	return []core.EventData{MoneyDeposited{Amount: c.Amount}}, nil
}

// Withdraw takes money from an open account, never more than its balance.
type Withdraw struct {
	ID     string
	Amount int64
}

// AccountID implements Command.
func (c Withdraw) AccountID() string { return c.ID }

// Decide implements Command.
func (c Withdraw) Decide(a *Account) ([]core.EventData, error) {
	if err := usable(a); err != nil {
		return nil, err
	}
	if c.Amount <= 0 {
		return nil, ErrInvalidAmount
	}
	if c.Amount > a.Balance {
		return nil, &InsufficientFundsError{Balance: a.Balance, Amount: c.Amount}
	}
	return []core.EventData{MoneyWithdrawn{Amount: c.Amount}}, nil
}

// CloseAccount closes an empty account.
type CloseAccount struct {
	ID string
}

// AccountID implements Command.
func (c CloseAccount) AccountID() string { return c.ID }

// Decide implements Command.
func (c CloseAccount) Decide(a *Account) ([]core.EventData, error) {
	if err := usable(a); err != nil {
		return nil, err
	}
	if a.Balance != 0 {
		return nil, fmt.Errorf("%w: balance is %d", ErrBalanceNotZero, a.Balance)
	}
	return []core.EventData{AccountClosed{}}, nil
}

func usable(a *Account) error {
	switch {
	case !a.Open:
		return ErrAccountNotFound
	case a.Closed:
		return ErrAccountClosed
	}
	return nil
}

// Handle runs a command: load the account (new if it has no events), decide,
// record, save. A rejected command returns before anything is recorded, so
// there is nothing to save. A save that loses a race to another writer
// returns an error matching core.ErrConcurrency; see examples/concurrency
// for retrying it.
func Handle(ctx context.Context, es *store.EventStore, cmd Command) error {
	root, err := store.LoadOrNew[Account](ctx, es, cmd.AccountID())
	if err != nil {
		return err
	}
	events, err := cmd.Decide(root.State())
	if err != nil {
		return err
	}
	root.RecordMany(events...)
	_, err = store.Save(ctx, es, root)
	return err
}

// Run is the demo. It prints what happens to out.
func Run(ctx context.Context, out io.Writer, pool *pgxpool.Pool, schema string) error {
	registry := core.NewRegistry()
	if err := RegisterAccountEvents(registry); err != nil {
		return err
	}

	es, err := store.New(pool, &store.Config{Schema: schema, Registry: registry})
	if err != nil {
		return err
	}
	if err := es.Migrate(ctx); err != nil {
		return err
	}

	// A fresh account per run, so the demo can run again and again.
	id := uuid.NewString()
	streamID := core.StreamID(new(Account).Category(), id)

	steps := []struct {
		label string
		cmd   Command
	}{
		{"deposit 50 before opening", Deposit{ID: id, Amount: 50}},
		{"open for Ada", OpenAccount{ID: id, Owner: "Ada"}},
		{"open for Ada again", OpenAccount{ID: id, Owner: "Ada"}},
		{"deposit 100", Deposit{ID: id, Amount: 100}},
		{"deposit -5", Deposit{ID: id, Amount: -5}},
		{"withdraw 250", Withdraw{ID: id, Amount: 250}},
		{"withdraw 60", Withdraw{ID: id, Amount: 60}},
		{"close", CloseAccount{ID: id}},
		{"withdraw 40", Withdraw{ID: id, Amount: 40}},
		{"close", CloseAccount{ID: id}},
		{"deposit 10 after closing", Deposit{ID: id, Amount: 10}},
	}
	for _, step := range steps {
		err := Handle(ctx, es, step.cmd)
		// The stored version is the evidence: ask the database, not the
		// in-memory root.
		version, verr := es.StreamVersion(ctx, streamID)
		if verr != nil {
			return verr
		}
		var insufficient *InsufficientFundsError
		switch {
		case err == nil:
			fmt.Fprintf(out, "%-26s accepted, stream at version %d\n", step.label, version)
		case errors.As(err, &insufficient):
			// errors.As gives the details a caller can act on.
			fmt.Fprintf(out, "%-26s rejected: %v (short by %d); stream still at version %d\n",
				step.label, err, insufficient.Amount-insufficient.Balance, version)
		case isDomainError(err):
			fmt.Fprintf(out, "%-26s rejected: %v; stream still at version %d\n", step.label, err, version)
		default:
			return fmt.Errorf("%s: %w", step.label, err)
		}
	}

	final, err := store.Load[Account](ctx, es, id)
	if err != nil {
		return err
	}
	s := final.State()
	fmt.Fprintf(out, "account: owner %s, balance %d, closed %t, version %d\n", s.Owner, s.Balance, s.Closed, final.Version())
	fmt.Fprintln(out, "its stream holds only the accepted commands' events:")
	for event, err := range es.Read(ctx, core.ReadStream(streamID)) {
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "  v%d %-24s %s\n", event.StreamVersion, event.EventType, event.Data)
	}
	return nil
}

// isDomainError tells a rejected command from a failure of the store.
func isDomainError(err error) bool {
	for _, target := range []error{ErrAccountExists, ErrAccountNotFound, ErrAccountClosed,
		ErrInvalidAmount, ErrInsufficientFunds, ErrBalanceNotZero} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}
