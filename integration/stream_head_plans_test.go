package integration_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

// The statements that read a stream's head (its last version) cost the same
// on a long stream as on a short one, with the plans PostgreSQL made while
// the table was nearly empty and without statistics: the plans a prepared
// statement keeps for the life of a connection opened early, and
// PL/pgSQL's for the life of its session. Written as max(stream_version),
// the head was planned as an aggregate over every version of the stream
// (the planner expected one row per stream), so a refused append, a stream
// version, a load or an append of a batch read the whole stream.
//
// The store's statements are recorded as it sends them, on a short and on a
// long stream of one schema, and each is then run with a generic plan made
// on the short stream's arguments, before the long stream existed (a write
// in a transaction rolled back).
//
// The plans are made in four states a young store can be in: without
// statistics, as on a store whose autovacuum has not run yet (or is off);
// and with the statistics of a table of one page, of one stream of 100
// events, or of 100 streams of one event, as they stand on a store whose
// autovacuum is off once one ANALYZE ran early (by hand, after a restore or
// an upgrade). With such statistics the planner expected a stream's events
// or its runs in the log to be a handful of rows in a page or two, and a
// generic plan scanned the whole table for them: a read of a one-event
// stream went from 0.4 to 40 ms after 100,000 events.
func TestStreamHeadReadsCostTheSameOnLongStreams(t *testing.T) {
	t.Parallel()
	for _, early := range []youngStore{
		{name: "without statistics", streamLength: 100},
		{name: "with a page's statistics", streamLength: 10, analyzed: true},
		{name: "with a stream's statistics", streamLength: 100, analyzed: true},
		{name: "with statistics of streams of one", streamLength: 100, singleStreams: 100, analyzed: true},
	} {
		t.Run(early.name, func(t *testing.T) {
			t.Parallel()
			streamReadsCostTheSameOnLongStreams(t, early)
		})
	}
}

// youngStore is the state of a store when the plans are made: a short
// stream of streamLength events, singleStreams streams of one event, and
// statistics of the tables as they are then if analyzed.
type youngStore struct {
	name          string
	streamLength  int
	singleStreams int
	analyzed      bool
}

func streamReadsCostTheSameOnLongStreams(t *testing.T, early youngStore) {
	ctx := context.Background()
	pool, recorded := recordingPool(t)
	// Alone, so that each single-event append runs its own statement.
	es := pgenv.NewStore(t, pool, &store.Config{Registry: bankRegistry(), ReadPageSize: 10, SoloAppends: -1})
	grouping, err := store.New(pool, &store.Config{Schema: es.Schema(), Registry: bankRegistry(), SoloAppends: 1})
	if err != nil {
		t.Fatal(err)
	}
	conn := genericPlansConn(t)

	grow := func(stream string, events int) {
		batch := make([]core.Event, 100)
		for i := range batch {
			batch[i] = core.NewEvent(Deposited{Amount: 1})
		}
		for appended := 0; appended < events; appended += len(batch) {
			batch := batch[:min(len(batch), events-appended)]
			if _, err := es.Append(ctx, stream, core.Any, batch...); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Every statement that reads the head of id's stream, each once; the
	// stream's length stays a multiple of the page size before a load, so
	// that a load's last page holds as many events on either stream.
	exercise := func(id string) map[string]recordedStatement {
		stream := "account-" + id
		recorded.start()
		head, err := es.StreamVersion(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		deposit := func() core.Event { return core.NewEvent(Deposited{Amount: 1}) }
		for _, append := range []struct {
			expected core.ExpectedVersion
			events   []core.Event
		}{
			{core.Exact(head), []core.Event{deposit()}},                // EventAppendExact
			{core.Any, []core.Event{deposit()}},                        // EventAppendNext
			{core.Exact(head + 2), []core.Event{deposit(), deposit()}}, // EventAppendAtomic
		} {
			if _, err := es.Append(ctx, stream, append.expected, append.events...); err != nil {
				t.Fatal(err)
			}
		}
		// Refused, and asked why (EventAppendRefused); the stream is hot
		// now, so the next append says why itself if refused
		// (EventAppendExactExplained, refused when run again below).
		var conflict *core.VersionConflictError
		if _, err := es.Append(ctx, stream, core.Exact(head), deposit()); !errors.As(err, &conflict) {
			t.Fatalf("append at a stale version: %v, want a version conflict", err)
		}
		if _, err := es.Append(ctx, stream, core.Exact(head+4), deposit()); err != nil {
			t.Fatal(err)
		}
		// StreamLock and EventLoadStream, then EventAppend in the scope.
		err = es.InScope(ctx, func(scope *store.Scope) error {
			root, err := store.LoadForUpdate[Account](ctx, scope, id)
			if err != nil {
				return err
			}
			root.RecordEvent(deposit())
			root.RecordEvent(deposit())
			_, err = store.Save(ctx, scope, root)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		// Pages of the stream's last versions, both ways, with and without a
		// type filter (EventReadStream*, EventReadStreamRange*).
		if _, err := es.Sequence(ctx); err != nil {
			t.Fatal(err)
		}
		for _, types := range [][]string{nil, {"account.deposited"}} {
			if _, err := es.ReadEvents(ctx, core.StreamQuery{StreamID: stream, FromVersion: head - 9, EventTypes: types}); err != nil {
				t.Fatal(err)
			}
			// From the head as the exercise found it, as the appends below
			// change what the stream's newest events are.
			back := core.StreamQuery{StreamID: stream, Direction: core.Backward, FromVersion: head, Limit: 10, EventTypes: types}
			if _, err := es.ReadEvents(ctx, back); err != nil {
				t.Fatal(err)
			}
		}
		// The log's head (EventHead), and a snapshot looked up
		// (SnapshotGet) among thousands once the store is grown.
		if _, err := es.Head(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := store.LoadSnapshottedOrNew[Ledger](ctx, es, id); err != nil {
			t.Fatal(err)
		}
		// A batch sent twice: the second is refused and recognised as a
		// retry by its stored event ids (EventFindByIDs).
		at, err := es.StreamVersion(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		retried := []core.Event{deposit(), deposit()}
		for i := range retried {
			retried[i].Metadata.EventID = uuid.New()
		}
		for range 2 {
			if _, err := es.Append(ctx, stream, core.Exact(at), retried...); err != nil {
				t.Fatal(err)
			}
		}
		// Single-event appends that arrive together, grouped into one
		// statement (EventAppendGroup) by a store that groups whatever
		// does not run alone; grouping needs appends that overlap, so
		// rounds are sent until one was grouped.
		for round := 0; !recorded.has("EventAppendGroup"); round++ {
			if round == 100 {
				t.Fatal("no append was grouped in 100 rounds of 8 concurrent appends")
			}
			var writers sync.WaitGroup
			for range 8 {
				writers.Go(func() {
					if _, err := grouping.Append(ctx, stream, core.Any, deposit()); err != nil {
						t.Error(err)
					}
				})
			}
			writers.Wait()
		}
		return recorded.stop()
	}

	grow("account-short", early.streamLength)
	for i := range early.singleStreams {
		if _, err := es.Append(ctx, fmt.Sprintf("early-%d", i), core.NoStream, core.NewEvent(Deposited{Amount: 1})); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := es.Sequence(ctx); err != nil {
		t.Fatal(err)
	}
	if early.analyzed {
		for _, table := range []string{"events", "event_log", "snapshots"} {
			if _, err := conn.Exec(ctx, "ANALYZE "+pgx.Identifier{es.Schema(), table}.Sanitize()); err != nil {
				t.Fatal(err)
			}
		}
	}
	short := exercise("short")
	costs := map[string]int{}
	for name, statement := range short {
		if _, err := conn.Exec(ctx, fmt.Sprintf("PREPARE %s AS %s", pgx.Identifier{name}.Sanitize(), statement.sql)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// Twice: a statement's first run also reads what the session
		// caches (index metapages, the sequence).
		explainExecute(t, conn, name, statement.args)
		costs[name] = explainExecute(t, conn, name, statement.args) / grouped(name, statement.args)
	}
	grow("account-long", 20_000)
	// Snapshots of other streams.
	_, err = conn.Exec(ctx, "INSERT INTO "+pgx.Identifier{es.Schema(), "snapshots"}.Sanitize()+
		" (stream_id, stream_version, schema_version, state) SELECT 'ledger-' || n, 1, 1, '{}' FROM generate_series(1, 10000) AS n")
	if err != nil {
		t.Fatal(err)
	}
	// Other streams of one event each, so that the log holds thousands of
	// runs besides the long stream's two hundred.
	for written := 0; written < 10_000; written += 1_000 {
		err := es.InScope(ctx, func(scope *store.Scope) error {
			for i := range 1_000 {
				if _, err := scope.Append(ctx, fmt.Sprintf("other-%d", written+i), core.NoStream, core.NewEvent(Deposited{Amount: 1})); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	long := exercise("long")
	for _, name := range []string{"StreamVersion", "EventAppendExact", "EventAppendNext", "EventAppendAtomic",
		"EventAppendRefused", "EventAppendExactExplained", "StreamLock", "EventLoadStream", "EventAppend",
		"EventReadStreamForward", "EventReadStreamBackward", "EventReadStreamRangeForward", "EventReadStreamRangeBackward",
		"EventHead", "SnapshotGet", "EventFindByIDs", "EventAppendGroup"} {
		if _, ok := short[name]; !ok {
			t.Errorf("%s: not sent on the short stream", name)
			continue
		}
		statement, ok := long[name]
		if !ok {
			t.Errorf("%s: not sent on the long stream", name)
			continue
		}
		cost := explainExecute(t, conn, name, statement.args) / grouped(name, statement.args)
		t.Logf("%s: %d buffers on a stream of %d events, %d on one of 20,000", name, costs[name], early.streamLength, cost)
		// A level more in each index the statement descends, and pages
		// holding rows other statements left (rolled back, or not yet known
		// visible), are all the longer stream may cost: 1 to 2.5 times the
		// short one's. A plan that scanned the stream or the log cost 20 to
		// 600 times as much (180 to 1,400 buffers).
		if cost > 3*costs[name]+10 {
			t.Errorf("%s: %d buffers on a stream of 20,000 events, against %d on one of %d", name, cost, costs[name], early.streamLength)
		}
	}
}

// grouped returns how many appends a call of the named statement with args
// makes: a group's cost is compared per append, as groups differ in size.
func grouped(name string, args []any) int {
	if name != "EventAppendGroup" {
		return 1
	}
	streams, _ := args[0].([]string) // the group's stream ids
	return max(len(streams), 1)
}

// recordingPool returns a pool whose connections record the statements
// sent on them.
func recordingPool(t *testing.T) (*pgxpool.Pool, *statementRecorder) {
	t.Helper()
	config, err := pgxpool.ParseConfig(pgenv.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	recorded := &statementRecorder{}
	config.ConnConfig.Tracer = recorded
	pool, err := pgxpool.NewWithConfig(context.Background(), config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, recorded
}

// genericPlansConn returns a connection on which statements prepared are
// planned generically from their first run, as a connection's cached plans
// are after a few.
func genericPlansConn(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgenv.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	return conn
}

// statementRecorder is a pgx tracer that keeps the last call of each of the
// store's named statements (sqlc's "-- name: X" comment) while it records.
type statementRecorder struct {
	mu        sync.Mutex
	recording bool
	calls     map[string]recordedStatement
}

type recordedStatement struct {
	sql  string
	args []any
}

func (r *statementRecorder) start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recording, r.calls = true, map[string]recordedStatement{}
}

func (r *statementRecorder) has(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.calls[name]
	return ok
}

func (r *statementRecorder) stop() map[string]recordedStatement {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recording = false
	return r.calls
}

func (r *statementRecorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	name, ok := strings.CutPrefix(data.SQL, "-- name: ")
	if !ok {
		return ctx
	}
	name, _, _ = strings.Cut(name, " ")
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.recording {
		r.calls[name] = recordedStatement{sql: data.SQL, args: slices.Clone(data.Args)}
	}
	return ctx
}

func (*statementRecorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// explainExecute runs the statement prepared as name with args, in a
// transaction rolled back, and returns the buffers it touched. EXPLAIN
// takes no parameters, so args are written as literals of the statement's
// parameter types, in their text form.
func explainExecute(t *testing.T, conn *pgx.Conn, name string, args []any) int {
	t.Helper()
	ctx := context.Background()
	var oids []uint32
	var types []string
	err := conn.QueryRow(ctx, "SELECT parameter_types::oid[], parameter_types::text[] FROM pg_prepared_statements WHERE name = $1",
		name).Scan(&oids, &types)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(oids) != len(args) {
		t.Fatalf("%s: %d parameters, %d arguments", name, len(oids), len(args))
	}
	literals := make([]string, len(args))
	for i, arg := range args {
		text, err := conn.TypeMap().Encode(oids[i], pgtype.TextFormatCode, arg, nil)
		if err != nil {
			t.Fatalf("%s: argument %d: %v", name, i+1, err)
		}
		literal := "NULL"
		if text != nil {
			literal = "'" + strings.ReplaceAll(string(text), "'", "''") + "'"
		}
		literals[i] = literal + "::" + types[i]
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // only ever rolled back
	execute := "EXECUTE " + pgx.Identifier{name}.Sanitize()
	if len(literals) > 0 {
		execute += "(" + strings.Join(literals, ", ") + ")"
	}
	return explainBuffers(t, tx, execute)
}
