package pgenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/store"
)

// SkipEnvVar names the variable that, set to 1, lets tests run without a database: the database
// tests are skipped instead of failing. Without it a missing database fails
// the run, so a green run always means the store was tested.
const SkipEnvVar = "MIRE_SKIP_DB"

// skipping reports whether SkipEnvVar asks to skip the database tests.
func skipping() bool { return os.Getenv(SkipEnvVar) == "1" }

var shared struct {
	once sync.Once
	env  *Env
	pool *pgxpool.Pool
	err  error
}

// RunTests is the body of a test package's TestMain: it finds the server
// first, so that a missing one fails the package at once with the
// explanation (or, with SkipEnvVar=1, says loudly that the database tests
// will be skipped); then it runs the tests and releases the server pgenv
// started, if any.
//
//	func TestMain(m *testing.M) { os.Exit(pgenv.RunTests(m)) }
func RunTests(m *testing.M) int {
	if err := setUp(); err != nil {
		if !skipping() {
			fmt.Fprintf(os.Stderr, "%v\n(set %s=1 to run the tests anyway, skipping every database test)\n", err, SkipEnvVar)
			return 1
		}
		fmt.Fprintf(os.Stderr, "pgenv: %s=1: SKIPPING EVERY DATABASE TEST of this package: %v\n", SkipEnvVar, err)
	}
	code := m.Run()
	if shared.pool != nil {
		shared.pool.Close()
	}
	shared.env.Close()
	return code
}

// setUp finds the shared server and opens its pool, once per process.
func setUp() error {
	shared.once.Do(func() {
		shared.env, shared.err = Find(context.Background())
		if shared.err != nil {
			return
		}
		fmt.Fprintf(os.Stderr, "pgenv: using PostgreSQL from %s\n", shared.env.Source)
		shared.pool, shared.err = pgxpool.New(context.Background(), shared.env.URL)
	})
	return shared.err
}

func sharedEnv(tb testing.TB) *Env {
	tb.Helper()
	if err := setUp(); err != nil {
		if skipping() {
			tb.Skipf("SKIPPED: no database and %s=1: %v", SkipEnvVar, err)
		}
		tb.Fatalf("no database (set %s=1 to skip instead): %v", SkipEnvVar, err)
	}
	return shared.env
}

// URL returns the test server's connection string, failing tb when there is
// none (or skipping it, see SkipEnvVar).
func URL(tb testing.TB) string {
	tb.Helper()
	return sharedEnv(tb).URL
}

// Pool returns a pool shared by the tests of the package.
func Pool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	sharedEnv(tb)
	return shared.pool
}

// NewPool returns a pool of its own with up to maxConns connections, closed
// when tb ends; for tests that need many real connections at once.
func NewPool(tb testing.TB, maxConns int32) *pgxpool.Pool {
	tb.Helper()
	config, err := pgxpool.ParseConfig(URL(tb))
	if err != nil {
		tb.Fatalf("pgenv: parsing URL: %v", err)
	}
	config.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), config)
	if err != nil {
		tb.Fatalf("pgenv: opening pool: %v", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// NewSchemaName returns a schema name no other test uses, and drops the
// schema (if created) when tb ends.
func NewSchemaName(tb testing.TB) string {
	tb.Helper()
	var random [6]byte
	if _, err := rand.Read(random[:]); err != nil {
		tb.Fatal(err)
	}
	name := "mire_test_" + hex.EncodeToString(random[:])
	url := URL(tb)
	tb.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			tb.Errorf("pgenv: dropping schema %s: %v", name, err)
			return
		}
		defer conn.Close(ctx) //nolint:errcheck // cleanup; the DROP's error is reported
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
			tb.Errorf("pgenv: dropping schema %s: %v", name, err)
		}
	})
	return name
}

// NewStore returns a store on pool (the shared pool when nil) in a fresh,
// migrated schema of its own, dropped when tb ends. config may be nil; its
// Schema is overwritten.
func NewStore(tb testing.TB, pool *pgxpool.Pool, config *store.Config) *store.EventStore {
	tb.Helper()
	if pool == nil {
		pool = Pool(tb)
	}
	var c store.Config
	if config != nil {
		c = *config
	}
	c.Schema = NewSchemaName(tb)
	es, err := store.New(pool, &c)
	if err != nil {
		tb.Fatalf("pgenv: store.New: %v", err)
	}
	if err := es.Migrate(context.Background()); err != nil {
		tb.Fatalf("pgenv: migrating schema %s: %v", c.Schema, err)
	}
	return es
}
