// Command concurrency shows optimistic concurrency at work: two writers
// deposit into the same account at the same time, each deposit a
// load-record-save cycle. When both load the same version, only the first
// save wins; the other gets a conflict (core.ErrConcurrency), reloads and
// decides again against fresh state. No deposit is lost or stored twice,
// and no lock is held while a command runs.
//
//	go run ./examples/concurrency
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

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
		err = Run(ctx, os.Stdout, pool, "concurrency_example")
		pool.Close()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "concurrency: %v\n", err)
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
		a.Owner = e.Owner
	case MoneyDeposited:
		a.Balance += e.Amount
	}
}

const (
	writers           = 2
	depositsPerWriter = 50
	depositAmount     = 10

	// maxAttempts bounds the retries of one deposit. Every conflict means
	// another writer's save succeeded, so the system as a whole always makes
	// progress; the bound only stops one unlucky writer from retrying
	// forever under heavy contention.
	maxAttempts = 100
)

// Deposit runs one deposit command to completion: load the account, record,
// save; on a conflict, start over from the load. Retrying only the save
// would be wrong: the events were decided against state that is now stale.
// It returns how many conflicts it retried. store.Update is this loop, with
// backoff; it is written out here to show what happens inside.
func Deposit(ctx context.Context, es *store.EventStore, id string, amount int64) (conflicts int, err error) {
	for attempt := 1; ; attempt++ {
		root, err := store.Load[Account](ctx, es, id)
		if err != nil {
			return conflicts, err
		}
		root.Record(MoneyDeposited{Amount: amount})
		// Save expects the stream to still be at the version just loaded;
		// if another writer saved in between, nothing is written.
		_, err = store.Save(ctx, es, root)
		if !errors.Is(err, core.ErrConcurrency) {
			return conflicts, err
		}
		conflicts++
		if attempt == maxAttempts {
			return conflicts, fmt.Errorf("deposit gave up after %d attempts: %w", attempt, err)
		}
		// Two writers need no backoff. With many, add a short random sleep
		// here so that the losers do not all reload at the same instant.
	}
}

// Run is the demo. It prints what happens to out.
func Run(ctx context.Context, out io.Writer, pool *pgxpool.Pool, schema string) error {
	registry := core.NewRegistry()
	core.Register[AccountOpened](registry)
	core.Register[MoneyDeposited](registry)

	es, err := store.New(pool, &store.Config{Schema: schema, Registry: registry})
	if err != nil {
		return err
	}
	if err := es.Migrate(ctx); err != nil {
		return err
	}

	// A fresh account per run, so the demo can run again and again.
	id := uuid.NewString()
	account := core.NewRoot(id, &Account{})
	account.Record(AccountOpened{Owner: "Ada"})
	if _, err := store.Save(ctx, es, account); err != nil {
		return err
	}
	fmt.Fprintf(out, "opened an account for Ada; stream at version %d\n", account.Version())
	fmt.Fprintf(out, "%d writers make %d deposits of %d each to one account, concurrently\n", writers, depositsPerWriter, depositAmount)

	var (
		conflicts atomic.Int64
		wg        sync.WaitGroup
		errs      = make([]error, writers)
		start     = make(chan struct{})
	)
	for w := range writers {
		wg.Go(func() {
			<-start // line the writers up so that they really overlap
			for range depositsPerWriter {
				n, err := Deposit(ctx, es, id, depositAmount)
				conflicts.Add(int64(n))
				if err != nil {
					errs[w] = fmt.Errorf("writer %d: %w", w+1, err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// How many saves lost a race depends on scheduling; that some did is
	// the point.
	fmt.Fprintf(out, "saves that lost a race and were retried: %d\n", conflicts.Load())

	final, err := store.Load[Account](ctx, es, id)
	if err != nil {
		return err
	}
	deposits := writers * depositsPerWriter
	fmt.Fprintf(out, "final balance %d (%d deposits of %d), stream version %d (open + %d deposits)\n",
		final.State().Balance, deposits, depositAmount, final.Version(), deposits)
	if final.State().Balance != int64(deposits*depositAmount) || final.Version() != int64(1+deposits) {
		return fmt.Errorf("lost or duplicated deposits: balance %d, version %d", final.State().Balance, final.Version())
	}
	return nil
}
