package store

import (
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/store/internal/dbsqlc"
)

var schemaPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// Config configures an [EventStore]. The zero value is usable.
type Config struct {
	// Schema is the PostgreSQL schema holding mire's tables: lowercase
	// letters, digits and underscores, at most 48 bytes, not starting with a
	// digit or "pg_", and not "information_schema". Stores with different
	// schemas are fully independent (tenants, tests). Defaults to
	// SchemaDefault ("mire").
	Schema string

	// AllowSharedSchema lets the migration methods use a schema that mire
	// did not create: "public", or one that already holds other objects and
	// no mire migrations table. Without it they refuse such a schema with a
	// *core.InvalidInputError, so a mistyped or default Schema cannot mix
	// mire's tables (and its MigrateDown) into an application's schema.
	// Defaults to false.
	AllowSharedSchema bool

	// Registry decodes stored events into Go types and holds upcasters.
	// Appending and raw reads work without registrations; loading aggregates
	// needs their event types registered. Defaults to an empty registry.
	Registry *core.Registry

	// MaxEventBytes limits the encoded size of one event's data plus
	// headers; larger events are rejected with an invalid-input error before
	// anything is written. Defaults to MaxEventBytesDefault (1 MiB).
	MaxEventBytes int

	// MaxBatchBytes limits the encoded size of all of one append's events,
	// data plus headers; a larger append is rejected with an invalid-input
	// error before anything is written, and encoding stops as soon as it
	// passes the limit. Defaults to MaxBatchBytesDefault (64 MiB).
	MaxBatchBytes int

	// ReadPageSize is how many events reads and loads fetch per round trip,
	// at most MaxReadPageSize. Defaults to ReadPageSizeDefault (1,000).
	ReadPageSize int

	// NoSequenceOnRead stops category and whole-log reads from first
	// assigning positions to newly committed events. Set it when the pool
	// points at a read-only replica and a [Sequencer] sequences against the
	// primary. Defaults to false.
	NoSequenceOnRead bool

	// Logger receives the store's diagnostics. Defaults to discarding them.
	Logger *slog.Logger

	// SoloAppends is how many single-event appends on the pool run alone at
	// once, each its own statement and transaction. Appends beyond it, and
	// every append while groups are being written, are grouped (group
	// commit): each group is one statement and one transaction, so one
	// commit and one round trip for every append that arrived while the
	// previous group ran. Each append in a group keeps its
	// own expectation and outcome; one a group cannot store without waiting
	// (for a stream lock, or for a concurrent insert of its version) runs
	// alone as usual. Appends in a caller's transaction and multi-event
	// appends are never grouped. Defaults to SoloAppendsDefault (8); a
	// negative value turns grouping off.
	SoloAppends int

	// Instrumentation observes the store's appends (group commits
	// included), loads, saves, reads and sequencing sweeps, and gives the
	// trace context that appends store in their events' headers
	// (core.TraceParentHeader). Runners and saga engines on the store use
	// it too unless configured otherwise. The module
	// github.com/mire-go/mire/otel provides one for OpenTelemetry.
	// Defaults to none, which costs nothing.
	Instrumentation core.Instrumentation
}

// EventStore appends and reads events in PostgreSQL. It is safe for
// concurrent use; create one per pool and schema and share it.
type EventStore struct {
	pool     *pgxpool.Pool
	queries  *dbsqlc.Queries
	registry *core.Registry
	schema   string
	config   Config
	logger   *slog.Logger
	sql      *sqlRenderer
	// lockSeed keeps the stream locks of different schemas apart: it seeds
	// the hash of the stream ID that keys a stream's advisory lock.
	lockSeed int64
	groups   *appendGroups // nil when grouping is off
	hot      hotStreams
	// versionReads shares StreamVersion reads of hot streams.
	versionReads versionReads
	instr        core.Instrumentation // nil: none

	schemaCheck schemaCheck
	// poolNotReadCommitted: the pool's connections default to another
	// isolation level than READ COMMITTED, so the store's statements on the
	// pool run in transactions that set it (see readCommittedDB).
	poolNotReadCommitted atomic.Bool

	// refreshFailureLogged is when a failed refresh of the statistics was
	// last logged (Unix nanoseconds); see sequenceAndRefresh.
	refreshFailureLogged atomic.Int64
}

// New returns an EventStore on pool. config may be nil for the defaults.
// New does not touch the database; call [EventStore.Migrate] to create or
// update the schema.
func New(pool *pgxpool.Pool, config *Config) (*EventStore, error) {
	if pool == nil {
		return nil, &core.InvalidInputError{Field: "pool", Reason: "is nil"}
	}
	var c Config
	if config != nil {
		c = *config
	}
	c.Schema = cmp.Or(c.Schema, SchemaDefault)
	c.MaxEventBytes = cmp.Or(c.MaxEventBytes, MaxEventBytesDefault)
	c.MaxBatchBytes = cmp.Or(c.MaxBatchBytes, MaxBatchBytesDefault)
	c.ReadPageSize = cmp.Or(c.ReadPageSize, ReadPageSizeDefault)
	c.SoloAppends = cmp.Or(c.SoloAppends, SoloAppendsDefault)
	if c.Registry == nil {
		c.Registry = core.NewRegistry()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	s := &EventStore{
		pool:     pool,
		queries:  dbsqlc.New(),
		registry: c.Registry,
		schema:   c.Schema,
		config:   c,
		logger:   c.Logger,
		sql:      newSQLRenderer(c.Schema),
		lockSeed: streamLockSeed(c.Schema),
		instr:    c.Instrumentation,
	}
	if c.SoloAppends > 0 {
		s.groups = newAppendGroups(s, c.SoloAppends)
	}
	return s, nil
}

// Close stops grouping appends and waits until the groups in flight, and the
// appends queued for them, are written and the goroutines writing them have
// returned, or until ctx ends (then it returns ctx's error, and the groups
// still finish in the background). Appends after Close work as before, each
// alone in its own statement, as with grouping off ([Config].SoloAppends
// below 0). Close is idempotent and safe to call concurrently.
//
// A store needs no Close: it owns no connections (the pool is the caller's,
// and stays open) and its only background goroutines, the group writers, end
// on their own once no appends are queued. Call Close before closing the
// pool, or at shutdown, to wait for them.
func (s *EventStore) Close(ctx context.Context) error {
	if s.groups == nil {
		return nil
	}
	return s.groups.close(ctx)
}

// streamLockSeed is the FNV-1a hash of the schema name.
func streamLockSeed(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte(schema))
	return int64(h.Sum64())
}

func (c *Config) validate() error {
	invalid := func(field, reason string, args ...any) error {
		return &core.InvalidInputError{Field: "Config." + field, Reason: fmt.Sprintf(reason, args...)}
	}
	switch {
	case len(c.Schema) > maxSchemaLength:
		return invalid("Schema", "%q is longer than %d bytes", c.Schema, maxSchemaLength)
	case !schemaPattern.MatchString(c.Schema):
		return invalid("Schema", "%q must be lowercase letters, digits and underscores, not starting with a digit", c.Schema)
	case strings.HasPrefix(c.Schema, "pg_"):
		return invalid("Schema", "%q: the pg_ prefix is reserved by PostgreSQL", c.Schema)
	case c.Schema == "information_schema":
		return invalid("Schema", "%q is PostgreSQL's own schema", c.Schema)
	case c.MaxEventBytes < 0:
		return invalid("MaxEventBytes", "%d is negative", c.MaxEventBytes)
	case c.MaxBatchBytes < 0:
		return invalid("MaxBatchBytes", "%d is negative", c.MaxBatchBytes)
	case c.ReadPageSize < 0:
		return invalid("ReadPageSize", "%d is negative", c.ReadPageSize)
	case c.ReadPageSize > MaxReadPageSize:
		return invalid("ReadPageSize", "%d is over the maximum of %d (MaxReadPageSize)", c.ReadPageSize, MaxReadPageSize)
	}
	return nil
}

// Schema returns the PostgreSQL schema the store uses.
func (s *EventStore) Schema() string { return s.schema }

// Registry returns the store's event type registry.
func (s *EventStore) Registry() *core.Registry { return s.registry }

// Instrumentation returns the store's Config.Instrumentation, nil for
// none.
func (s *EventStore) Instrumentation() core.Instrumentation { return s.instr }

// Pool returns the pool the store was created with.
func (s *EventStore) Pool() *pgxpool.Pool { return s.pool }

// NotificationChannel is the channel the sequencer notifies, with the new
// head position as payload, after it assigns positions. LISTEN on it to wake
// up instead of polling; keep polling as a safety net.
//
// A notification is a hint, never a fact: PostgreSQL has no access control
// on channels, so any role that can connect may LISTEN to it or NOTIFY it
// with any payload. On a notification, read the head ([EventStore.Head]) or
// read on from your checkpoint; do not act on the payload's number.
func (s *EventStore) NotificationChannel() string { return s.schema + ".events" }

// db returns the executor the generated queries run on: exec (the pool or a
// caller's transaction) with the schema filled into every statement, which
// runs only once the schema is known to be at the code's version.
func (s *EventStore) db(exec dbsqlc.DBTX) dbsqlc.DBTX {
	return schemaDB{exec: exec, sql: s.sql, store: s}
}

// uncheckedDB is db without the version check, for the statements that
// create, inspect or grant the schema.
func (s *EventStore) uncheckedDB(exec dbsqlc.DBTX) dbsqlc.DBTX {
	return schemaDB{exec: exec, sql: s.sql}
}

// sqlRenderer fills the schema into the generated queries. Queries name
// tables as "/* TEMPLATE: schema */events"; qualifying every name keeps a
// store independent of the connection's search_path, including inside a
// caller's transaction.
type sqlRenderer struct {
	quoted   string
	replacer *strings.Replacer
	rendered sync.Map // query text → rendered text; the set of queries is fixed
}

func newSQLRenderer(schema string) *sqlRenderer {
	quoted := pgx.Identifier{schema}.Sanitize()
	return &sqlRenderer{quoted: quoted, replacer: strings.NewReplacer(
		"/* TEMPLATE: schema */", quoted+".",
		"/* TEMPLATE: schema_name */mire", quoted,
		"/* TEMPLATE: channel */events", pgx.Identifier{schema + ".events"}.Sanitize(),
		"/* TEMPLATE: channel */leases", pgx.Identifier{schema + ".leases"}.Sanitize(),
	)}
}

func (r *sqlRenderer) quotedSchema() string { return r.quoted }

func (r *sqlRenderer) render(query string) string {
	if rendered, ok := r.rendered.Load(query); ok {
		return rendered.(string) //nolint:errcheck // only strings are stored
	}
	rendered := r.replacer.Replace(query)
	r.rendered.Store(query, rendered)
	return rendered
}

type schemaDB struct {
	exec  dbsqlc.DBTX
	sql   *sqlRenderer
	store *EventStore // checks the schema version first; nil: no check
}

func (d schemaDB) check(ctx context.Context) error {
	if d.store == nil {
		return nil
	}
	return d.store.ensureSchema(ctx, d.exec)
}

// target is where a statement runs: exec, or, for a statement on a pool
// whose connections default to another isolation level, a READ COMMITTED
// transaction of its own.
func (d schemaDB) target() dbsqlc.DBTX {
	if pool, ok := d.exec.(*pgxpool.Pool); ok && d.store != nil && d.store.poolNotReadCommitted.Load() {
		return readCommittedDB{pool}
	}
	return d.exec
}

func (d schemaDB) Exec(ctx context.Context, query string, args ...any) (pgconn.CommandTag, error) {
	if err := d.check(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	return d.target().Exec(ctx, d.sql.render(query), args...)
}

func (d schemaDB) Query(ctx context.Context, query string, args ...any) (pgx.Rows, error) {
	if err := d.check(ctx); err != nil {
		return nil, err
	}
	return d.target().Query(ctx, d.sql.render(query), args...)
}

func (d schemaDB) QueryRow(ctx context.Context, query string, args ...any) pgx.Row {
	if err := d.check(ctx); err != nil {
		return errRow{err}
	}
	return d.target().QueryRow(ctx, d.sql.render(query), args...)
}

// errRow is a pgx.Row whose Scan returns err.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
