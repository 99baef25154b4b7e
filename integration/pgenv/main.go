package pgenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ExamplesSchema is the schema the example programs share when run by hand.
const ExamplesSchema = "mire_examples"

// RunMain is the main function of an example program: it finds PostgreSQL,
// says which on stderr, opens a pool and calls run with stdout and
// [ExamplesSchema], exiting with status 1 on any error.
func RunMain(name string, run func(ctx context.Context, out io.Writer, pool *pgxpool.Pool, schema string) error) {
	if err := runMain(name, run); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

func runMain(name string, run func(context.Context, io.Writer, *pgxpool.Pool, string) error) error {
	ctx := context.Background()
	env, err := Find(ctx)
	if err != nil {
		return err
	}
	defer env.Close()
	fmt.Fprintf(os.Stderr, "%s: using PostgreSQL from %s\n", name, env.Source)
	pool, err := pgxpool.New(ctx, env.URL)
	if err != nil {
		return err
	}
	defer pool.Close()
	return run(ctx, os.Stdout, pool, ExamplesSchema)
}

// RunProgram is the test of an example program: it calls run, as RunMain
// would, against the test server in a fresh schema of its own, fails t on an
// error and returns what run printed.
func RunProgram(t *testing.T, run func(ctx context.Context, out io.Writer, pool *pgxpool.Pool, schema string) error) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), &out, Pool(t), NewSchemaName(t)); err != nil {
		t.Fatal(err)
	}
	return out.String()
}
