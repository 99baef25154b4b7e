package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"math"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
)

func TestSQLRendererQualifiesEveryName(t *testing.T) {
	t.Parallel()
	r := newSQLRenderer("tenant_1")
	tests := map[string]string{
		"SELECT * FROM /* TEMPLATE: schema */events e JOIN /* TEMPLATE: schema */streams s USING (stream_id)": `SELECT * FROM "tenant_1".events e JOIN "tenant_1".streams s USING (stream_id)`,
		"CREATE SCHEMA IF NOT EXISTS /* TEMPLATE: schema_name */mire":                                         `CREATE SCHEMA IF NOT EXISTS "tenant_1"`,
		"SELECT 1": "SELECT 1",
	}
	for query, want := range tests {
		for range 2 { // the second time from the cache
			if got := r.render(query); got != want {
				t.Errorf("render(%q) = %q, want %q", query, got, want)
			}
		}
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	pgErr := func(code string) error { return fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: code}) }
	tests := []struct {
		err  error
		want core.DBErrorKind
	}{
		{pgErr("42P01"), core.DBSchemaNotMigrated},
		{pgErr("3F000"), core.DBSchemaNotMigrated},
		{pgErr("42883"), core.DBSchemaNotMigrated},
		{pgErr("55P03"), core.DBLockNotAvailable},
		{pgErr("40001"), core.DBSerializationFailure},
		{pgErr("40P01"), core.DBDeadlock},
		{pgErr("23505"), core.DBUniqueViolation},
		{pgErr("42501"), core.DBPermissionDenied},
		{pgErr("57014"), core.DBTimeout},
		{pgErr("57P01"), core.DBConnection},
		{pgErr("08006"), core.DBConnection},
		{pgErr("22P02"), core.DBOther},
		{context.Canceled, core.DBTimeout},
		{fmt.Errorf("query: %w", context.DeadlineExceeded), core.DBTimeout},
		{&net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, core.DBConnection},
		{io.ErrUnexpectedEOF, core.DBConnection},
		{errors.New("something else"), core.DBOther},
	}
	for _, tt := range tests {
		if got := classify(tt.err); got != tt.want {
			t.Errorf("classify(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}

// A closed pool is a connection failure, not "other": callers that retry
// on connection errors must see it as one.
func TestClassifyClosedPool(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// pgxpool connects lazily: a pool on an address nothing listens on is
	// enough to get the error a closed pool returns.
	pool, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:1/none?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	pool.Close()
	_, err = pool.Exec(ctx, "SELECT 1")
	if err == nil {
		t.Fatal("Exec on a closed pool succeeded")
	}
	if got := classify(err); got != core.DBConnection {
		t.Errorf("classify(%v) = %s, want %s", err, got, core.DBConnection)
	}
}

func TestInterpretErrorKeepsCause(t *testing.T) {
	t.Parallel()
	s := &EventStore{schema: "tenant"}
	err := s.interpretError("append", fmt.Errorf("x: %w", context.Canceled))
	var dbErr *core.DatabaseError
	if !errors.As(err, &dbErr) || dbErr.Kind != core.DBTimeout || !errors.Is(err, context.Canceled) || !errors.Is(err, core.ErrDatabase) {
		t.Fatalf("interpretError = %#v", err)
	}
	missing := s.interpretError("read", &pgconn.PgError{Code: "42P01"})
	if !errors.Is(missing, core.ErrSchemaNotMigrated) {
		t.Fatalf("undefined table is not ErrSchemaNotMigrated: %v", missing)
	}
	if s.interpretError("x", nil) != nil {
		t.Fatal("interpretError(nil) != nil")
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	bad := []Config{
		{Schema: "Upper"},
		{Schema: "1abc"},
		{Schema: "pg_catalog"},
		{Schema: "has-dash"},
		{Schema: "a23456789012345678901234567890123456789012345678x"},
		{MaxEventBytes: -1},
		{ReadPageSize: -1},
		{ReadPageSize: MaxReadPageSize + 1},
		{ReadPageSize: 1 << 31},
		{ReadPageSize: 1 << 32},
		{ReadPageSize: 1<<32 + 1},
		{MaxBatchBytes: -1},
	}
	for _, c := range bad {
		c.Schema = cmp.Or(c.Schema, SchemaDefault)
		if err := c.validate(); !errors.Is(err, core.ErrInvalidInput) {
			t.Errorf("validate(%+v) = %v, want ErrInvalidInput", c, err)
		}
	}
	for _, good := range []Config{{Schema: "tenant_42"}, {Schema: "s", ReadPageSize: MaxReadPageSize, MaxBatchBytes: 1}} {
		if err := good.validate(); err != nil {
			t.Errorf("validate(%+v) = %v", good, err)
		}
	}
}

// The queries take the page size as an int32: no configured value may wrap
// around, even one New would refuse.
func TestPageSizeFitsTheQueries(t *testing.T) {
	t.Parallel()
	tests := map[int]int32{1: 1, 500: 500, MaxReadPageSize: MaxReadPageSize, MaxReadPageSize + 1: MaxReadPageSize,
		1 << 31: MaxReadPageSize, 1 << 32: MaxReadPageSize, 1<<32 + 1: MaxReadPageSize, 0: 1, -1: 1}
	for size, want := range tests {
		s := &EventStore{config: Config{ReadPageSize: size}}
		if got := s.pageSize(); got != want {
			t.Errorf("pageSize() with ReadPageSize %d = %d, want %d", size, got, want)
		}
	}
}

// How an expectation reaches SQL (the batch and group statements' CASE).
func TestExpectedKind(t *testing.T) {
	for expected, want := range map[core.ExpectedVersion]string{
		{}:                        "any",
		core.Any:                  "any",
		core.NoStream:             "no_stream",
		core.Exact(0):             "no_stream",
		core.StreamExists:         "stream_exists",
		core.Exact(7):             "exact",
		core.Exact(-1):            "exact",
		core.Exact(math.MaxInt64): "exact",
	} {
		if got := expectedKind(expected); got != want {
			t.Errorf("expectedKind(%v) = %q, want %q", expected, got, want)
		}
	}
}

// Store logic speaks mire's types: only the typed layer (db.go), the
// executor wrapper (store.go) and the migration code, which has
// administrative statements of its own, use the generated package.
func TestOnlyTheTypedLayerImportsGeneratedCode(t *testing.T) {
	t.Parallel()
	allowed := []string{"db.go", "db_test.go", "store.go", "schemacheck.go", "migrate.go", "migrate_resolve.go", "migrate_session.go"}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		parsed, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, spec := range parsed.Imports {
			path, _ := strconv.Unquote(spec.Path.Value)
			if path == "github.com/mire-go/mire/store/internal/dbsqlc" && !slices.Contains(allowed, file) {
				t.Errorf("%s imports the generated package; go through the typed layer in db.go", file)
			}
		}
	}
}
