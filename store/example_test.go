package store_test

// These examples run against PostgreSQL, as part of `make test`: TestMain
// below finds the server (DATABASE_URL, TEST_DATABASE_URL, or a passwordless
// postgres on localhost:5432) and fails the package when there is none,
// unless MIRE_SKIP_DB=1. They use the schema "mire_example" and fresh stream
// IDs, so they can run again and again. (The integration module's harness,
// pgenv, is not used here: store must not depend on it.)

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/store"
)

func TestMain(m *testing.M) {
	flag.Parse()
	if err := findDatabase(); err != nil {
		if os.Getenv("MIRE_SKIP_DB") != "1" {
			fmt.Fprintf(os.Stderr, "store: the examples need PostgreSQL: %v\n"+
				"set DATABASE_URL, or MIRE_SKIP_DB=1 to skip them\n", err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "store: MIRE_SKIP_DB=1: SKIPPING THE EXAMPLES, which need PostgreSQL: %v\n", err)
		// -run selects examples too: keep only the tests, which need none.
		_ = flag.Set("test.run", "^Test")
	}
	os.Exit(m.Run())
}

// findDatabase points DATABASE_URL, which the examples read, at a server
// that answers.
func findDatabase() error {
	url := cmp.Or(os.Getenv("DATABASE_URL"), os.Getenv("TEST_DATABASE_URL"),
		"postgres://postgres@localhost:5432/postgres?sslmode=disable")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx) //nolint:errcheck // a probe connection; Ping says whether it worked
	if err := conn.Ping(ctx); err != nil {
		return err
	}
	return os.Setenv("DATABASE_URL", url)
}

// The domain of the examples.

type Deposited struct {
	Amount int64 `json:"amount"`
}

func (Deposited) EventType() string { return "account.deposited" }

type Withdrawn struct {
	Amount int64 `json:"amount"`
}

func (Withdrawn) EventType() string { return "account.withdrawn" }

type Account struct{ Balance int64 }

func (*Account) Category() string { return "account" }

func (a *Account) Apply(event core.EventData) {
	switch e := event.(type) {
	case Deposited:
		a.Balance += e.Amount
	case Withdrawn:
		a.Balance -= e.Amount
	}
}

var ErrInsufficientFunds = errors.New("insufficient funds")

// openStore opens the examples' store, as ExampleNew shows.
func openStore(ctx context.Context) (*store.EventStore, func()) {
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	registry := core.NewRegistry()
	core.Register[Deposited](registry)
	core.Register[Withdrawn](registry)
	es, err := store.New(pool, &store.Config{Schema: "mire_example", Registry: registry})
	if err != nil {
		log.Fatal(err)
	}
	if err := es.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	return es, pool.Close
}

// Open a pgx pool, create the store on it and migrate its schema. One store
// per pool and schema, shared by the whole application.
func ExampleNew() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	registry := core.NewRegistry()
	core.Register[Deposited](registry)
	core.Register[Withdrawn](registry)

	es, err := store.New(pool, &store.Config{
		Schema:   "mire_example", // Defaults to "mire".
		Registry: registry,
	})
	if err != nil {
		log.Fatal(err)
	}
	// Idempotent and safe to run from every replica at start-up.
	if err := es.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("migrated schema", es.Schema())
	// Output: migrated schema mire_example
}

// Append events to a stream with an expected version, then read it back.
func ExampleEventStore_Append() {
	ctx := context.Background()
	es, closePool := openStore(ctx)
	defer closePool()

	streamID := core.StreamID("account", uuid.NewString())
	committed, err := es.Append(ctx, streamID, core.NoStream,
		core.NewEvent(Deposited{Amount: 100}), core.NewEvent(Withdrawn{Amount: 30}))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("appended versions %d to %d\n", committed.FromVersion, committed.ToVersion)

	// Appending again as if the stream were new is refused.
	_, err = es.Append(ctx, streamID, core.NoStream, core.NewEvent(Deposited{Amount: 1}))
	fmt.Println("conflict:", errors.Is(err, core.ErrConcurrency))

	for event, err := range es.Read(ctx, core.ReadStream(streamID)) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("v%d %s %s\n", event.StreamVersion, event.EventType, event.Data)
	}
	// Output:
	// appended versions 1 to 2
	// conflict: true
	// v1 account.deposited {"amount": 100}
	// v2 account.withdrawn {"amount": 30}
}

// Load an aggregate (or start a new one), record events on it and save it
// with optimistic concurrency.
func ExampleSave() {
	ctx := context.Background()
	es, closePool := openStore(ctx)
	defer closePool()
	id := uuid.NewString()

	account, err := store.LoadOrNew[Account](ctx, es, id)
	if err != nil {
		log.Fatal(err)
	}
	account.Record(Deposited{Amount: 100})
	if _, err := store.Save(ctx, es, account); err != nil {
		log.Fatal(err)
	}

	// Two loads of the same version: the first save wins.
	first, _ := store.Load[Account](ctx, es, id)
	second, _ := store.Load[Account](ctx, es, id)
	first.Record(Withdrawn{Amount: 30})
	second.Record(Withdrawn{Amount: 50})
	if _, err := store.Save(ctx, es, first); err != nil {
		log.Fatal(err)
	}
	_, err = store.Save(ctx, es, second)
	fmt.Println("second save:", errors.Is(err, core.ErrConcurrency))

	loaded, err := store.Load[Account](ctx, es, id)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("balance %d at version %d\n", loaded.State().Balance, loaded.Version())
	// Output:
	// second save: true
	// balance 70 at version 2
}

// Update runs a command and saves what it records, reloading and running it
// again when another writer saved first. The command decides from the state
// it is given; its own errors end the update with nothing saved.
func ExampleUpdate() {
	ctx := context.Background()
	es, closePool := openStore(ctx)
	defer closePool()
	id := uuid.NewString()

	withdraw := func(amount int64) func(*core.Root[*Account]) error {
		return func(account *core.Root[*Account]) error {
			if account.State().Balance < amount {
				return fmt.Errorf("%w: balance %d", ErrInsufficientFunds, account.State().Balance)
			}
			account.Record(Withdrawn{Amount: amount})
			return nil
		}
	}
	_, err := store.Update(ctx, es, id, func(account *core.Root[*Account]) error {
		account.Record(Deposited{Amount: 100})
		return nil
	}, nil)
	if err != nil {
		log.Fatal(err)
	}
	committed, err := store.Update(ctx, es, id, withdraw(60), nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("withdrew 60 at version", committed.ToVersion)

	_, err = store.Update(ctx, es, id, withdraw(60), &store.UpdateOpts{MaxAttempts: 5})
	fmt.Println(err)
	// Output:
	// withdrew 60 at version 2
	// insufficient funds: balance 40
}
