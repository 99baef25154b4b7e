package pgenv

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// RunProgram is the test of an example program: it calls the program's run
// function against the test server, with a pool and a fresh schema of its
// own in place of the ones its main would open, fails t on an error and
// returns what run printed.
func RunProgram(t *testing.T, run func(ctx context.Context, out io.Writer, pool *pgxpool.Pool, schema string) error) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), &out, Pool(t), NewSchemaName(t)); err != nil {
		t.Fatal(err)
	}
	return out.String()
}
