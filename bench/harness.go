package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/store"
)

// harness owns what one benchmark run needs: a mire store and a raw baseline,
// each in a fresh schema, on a workload pool whose statements are counted,
// plus an admin pool for the sequencer and for measuring the server.
type harness struct {
	pool  *pgxpool.Pool // the workload's pool: appends and reads only
	admin *pgxpool.Pool // sequencer, head checks, WAL positions, DDL
	stmts *statementCounter
	cpu   *cpuMeter
	// poolConfig is what both pools are made from: the failover scenario
	// opens a pool per runner from it.
	poolConfig *pgxpool.Config

	mire         *mireSystem
	mireSnapshot *mireSystem // the same store, loading from snapshots
	// mireUngrouped is the schema through a store with group commit off,
	// beside the default one in the single-event append scenarios; nil
	// without -ungrouped or when -solo-appends turns grouping off anyway.
	mireUngrouped *mireSystem
	raw           *rawSystem
	rawIndexed    *rawIndexedSystem // raw's appends into a table with the version index
	saga          *sagaPool         // the saga scenario's pool, on mire's schema; nil until it runs

	// sequencing is the mire store on the admin pool, so that sequencing and
	// head checks stay out of the workload's statement count.
	sequencing *store.EventStore

	carts atomic.Int64 // numbers cart IDs, unique within the run

	mu        sync.Mutex
	readCarts map[int]string // events → the cart read and load scenarios read
	logBlocks map[int]logBlock
}

// newHarness connects to url with room for maxConns concurrent workload
// connections and creates and migrates the two schemas, which must not
// exist yet.
func newHarness(ctx context.Context, url string, maxConns int32, mireSchema, rawSchema string) (_ *harness, err error) {
	config, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parsing database URL: %w", err)
	}
	h := &harness{stmts: &statementCounter{}, cpu: &cpuMeter{}, readCarts: map[int]string{}, logBlocks: map[int]logBlock{}}
	config.AfterConnect = h.cpu.afterConnect
	h.poolConfig = config
	defer func() {
		if err != nil {
			h.close()
		}
	}()

	workload := config.Copy()
	workload.MaxConns = maxConns
	workload.MinConns = maxConns // connect up front, not during a measurement
	workload.ConnConfig.Tracer = h.stmts
	if h.pool, err = pgxpool.NewWithConfig(ctx, workload); err != nil {
		return nil, fmt.Errorf("opening pool: %w", err)
	}
	admin := config.Copy()
	admin.MaxConns = 4
	if h.admin, err = pgxpool.NewWithConfig(ctx, admin); err != nil {
		return nil, fmt.Errorf("opening admin pool: %w", err)
	}

	registry := core.NewRegistry()
	core.Register[ItemAdded](registry)
	es, err := store.New(h.pool, &store.Config{Schema: mireSchema, Registry: registry, SoloAppends: soloAppends})
	if err != nil {
		return nil, err
	}
	if err := es.Migrate(ctx); err != nil {
		return nil, fmt.Errorf("migrating %s: %w", mireSchema, err)
	}
	if h.sequencing, err = store.New(h.admin, &store.Config{Schema: mireSchema, Registry: registry}); err != nil {
		return nil, err
	}
	appended := &atomic.Int64{}
	h.mire = &mireSystem{es: es, appended: appended}
	h.mireSnapshot = &mireSystem{es: es, appended: appended, snapshots: true}
	if compareUngrouped && soloAppends >= 0 {
		ungrouped, err := store.New(h.pool, &store.Config{Schema: mireSchema, Registry: registry, SoloAppends: -1})
		if err != nil {
			return nil, err
		}
		h.mireUngrouped = &mireSystem{es: ungrouped, appended: appended, ungrouped: true}
	}
	if h.raw, err = newRawSystem(ctx, h.pool, rawSchema, mireSchema); err != nil {
		return nil, err
	}
	h.rawIndexed = newRawIndexedSystem(h.raw)
	return h, nil
}

// close closes the pools. It does not drop the schemas: see drop.
func (h *harness) close() {
	pools := []*pgxpool.Pool{h.pool, h.admin}
	if h.saga != nil {
		pools = append(pools, h.saga.pool)
	}
	for _, pool := range pools {
		if pool != nil {
			pool.Close()
		}
	}
}

// drop drops both schemas and everything in them.
func (h *harness) drop(ctx context.Context) error {
	var errs []error
	for _, schema := range []string{h.mire.es.Schema(), h.raw.schema} {
		if _, err := h.admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			errs = append(errs, fmt.Errorf("dropping schema %s: %w", schema, err))
		}
	}
	return errors.Join(errs...)
}

// newCartID returns a cart ID not used before in this run; its stream is
// cartStream(id).
func (h *harness) newCartID() string {
	return strconv.FormatInt(h.carts.Add(1), 10)
}

// systems returns the systems sc compares, the baseline first (then, in the
// append scenarios, raw+index); latency, failover and saga have none, and
// run on mire alone.
func (h *harness) systems(sc spec) []system {
	switch sc.scenario {
	case scenarioLoad:
		return []system{h.raw, h.mire, h.mireSnapshot}
	case scenarioCatchUp:
		if sc.runnerBatch > 0 {
			return []system{h.raw, h.mire, &mireSystem{es: h.mire.es, appended: h.mire.appended, runnerBatch: sc.runnerBatch}}
		}
	case scenarioLatency, scenarioFailover, scenarioSaga:
		return []system{h.mire}
	case scenarioAppend:
		if h.mireUngrouped != nil {
			return []system{h.raw, h.rawIndexed, h.mire, h.mireUngrouped}
		}
		return []system{h.raw, h.rawIndexed, h.mire}
	case scenarioBatch:
		return []system{h.raw, h.rawIndexed, h.mire}
	case scenarioContended:
		if h.mireUngrouped != nil {
			return []system{h.raw, h.mire, h.mireUngrouped}
		}
	}
	return []system{h.raw, h.mire}
}

// readCart returns the ID of the cart of n events that read and load
// scenarios read, appending it to both systems the first time: in appends
// of up to 100 events, then sequenced, with both tables vacuumed so that
// neither read pays for dead row versions (sequencing rewrites every mire
// row), and with a mire snapshot at its last version.
//
// The first time, it also copies as many of the baseline's appended events
// as mire has appended into the table the baseline reads, so that both
// systems read tables of the same size holding many streams. With the read
// stream alone in it, the planner reads that table with a sequential scan,
// and a prepared statement can keep the plan for later reads of short
// streams (the save scenario's).
func (h *harness) readCart(ctx context.Context, n int) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if id, ok := h.readCarts[n]; ok {
		return id, nil
	}
	if len(h.readCarts) == 0 {
		raw := pgx.Identifier{h.raw.schema}.Sanitize()
		copyEvents := "INSERT INTO " + raw + ".raw_stream_events SELECT * FROM " + raw + ".raw_events ORDER BY id LIMIT $1"
		if _, err := h.admin.Exec(ctx, copyEvents, h.mire.appended.Load()); err != nil {
			return "", fmt.Errorf("raw: copying the appended events: %w", err)
		}
	}
	id := h.newCartID()
	stream := cartStream(id)
	for version := int64(0); version < int64(n); version += 100 {
		items := newItems(stream, version, min(100, n-int(version)))
		if err := h.raw.loadStream(ctx, stream, version, items); err != nil {
			return "", fmt.Errorf("raw: loading the stream to read: %w", err)
		}
		if err := h.mire.appendEvents(ctx, stream, version, items); err != nil {
			return "", fmt.Errorf("mire: loading the stream to read: %w", err)
		}
	}
	if _, err := h.sequencing.Sequence(ctx); err != nil {
		return "", err
	}
	if _, err := h.waitSequenced(ctx); err != nil {
		return "", err
	}
	for _, table := range []pgx.Identifier{{h.mire.es.Schema(), "events"}, {h.raw.schema, "raw_stream_events"}} {
		if _, err := h.admin.Exec(ctx, "VACUUM ANALYZE "+table.Sanitize()); err != nil {
			return "", fmt.Errorf("vacuuming %s: %w", table, err)
		}
	}
	root, err := store.Load[Cart](ctx, h.sequencing, id)
	if err != nil {
		return "", fmt.Errorf("mire: loading the cart to snapshot: %w", err)
	}
	if err := store.SaveSnapshot(ctx, h.sequencing, root); err != nil {
		return "", fmt.Errorf("mire: snapshotting the cart to load: %w", err)
	}
	h.readCarts[n] = id
	return id, nil
}

// soloAppends is mire's Config.SoloAppends: 0 for the store's default, -1
// to measure appends without grouping.
var soloAppends int

// compareUngrouped adds mire with group commit off (Config.SoloAppends -1)
// to the append and append_contended scenarios, measured in the same run.
var compareUngrouped = true

// sequencerInterval is the interval of the sequencer that runs beside mire's
// appends and saves (-sequencer-interval).
var sequencerInterval = store.SequencerIntervalDefault

// startSequencer starts a background sequencer as production runs one,
// every 20ms, and returns its stop function.
func (h *harness) startSequencer(ctx context.Context) (stop func(), err error) {
	seq, err := store.NewSequencer(h.sequencing, &store.SequencerConfig{Interval: sequencerInterval})
	if err != nil {
		return nil, err
	}
	if err := seq.Start(ctx); err != nil {
		return nil, err
	}
	return func() { _ = seq.Stop(context.WithoutCancel(ctx)) }, nil
}

// waitSequenced waits until every event appended to mire so far has a
// global position, sequencing itself if no sequencer is running, and returns
// how long that took. It fails if the head ever passes the number of
// appended events, or after 30 seconds.
func (h *harness) waitSequenced(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	want := h.mire.appended.Load()
	for {
		head, err := h.sequencing.Head(ctx)
		switch {
		case err != nil:
			return 0, err
		case head == want:
			return time.Since(start), nil
		case head > want:
			return 0, fmt.Errorf("mire head %d is past the %d events appended", head, want)
		case time.Since(start) > 30*time.Second:
			return 0, fmt.Errorf("mire head is %d after 30s, %d events appended", head, want)
		case time.Since(start) > time.Second:
			// No sequencer running (or a stuck one): sequence here. This is
			// safe alongside a sequencer.
			if _, err := h.sequencing.Sequence(ctx); err != nil {
				return 0, err
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// walPosition returns the server's current WAL insert position.
func (h *harness) walPosition(ctx context.Context) (string, error) {
	var lsn string
	err := h.admin.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn)
	return lsn, err
}

// walSince returns how many bytes of WAL the whole server wrote since lsn.
func (h *harness) walSince(ctx context.Context, lsn string) (int64, error) {
	var bytes int64
	err := h.admin.QueryRow(ctx, "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn)::bigint", lsn).Scan(&bytes)
	return bytes, err
}

// statementCounter is a pgx tracer counting the statements a pool sends,
// each one round trip once prepared.
type statementCounter struct{ n atomic.Int64 }

func (c *statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (c *statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// newSchemaNames returns a fresh pair of schema names for mire and the raw
// baseline.
func newSchemaNames() (mireSchema, rawSchema string) {
	var random [5]byte
	_, _ = rand.Read(random[:]) // never fails
	mireSchema = "mire_bench_" + hex.EncodeToString(random[:])
	return mireSchema, mireSchema + "_raw"
}

// logCategory is the category of half the events of the block the
// read_log, read_category and catchup scenarios read; the other half is in
// cartCategory.
const logCategory = "ledger"

// logBlock is a run of sequenced events: positions from to to, the last
// of them appended by last.
type logBlock struct {
	from, to int64
	last     *core.CommittedEvents
}

// logBlockSize is how many events the block sc reads holds.
func logBlockSize(sc spec) int {
	if sc.scenario == scenarioReadCategory {
		return 2 * sc.batch
	}
	return sc.batch
}

// logBlock returns the block of n events that read_log, read_category and
// catchup read, appending it the first time: streams of 100 events, every other
// one in logCategory (the only events of that category), then sequenced.
func (h *harness) logBlock(ctx context.Context, n int) (logBlock, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if block, ok := h.logBlocks[n]; ok {
		return block, nil
	}
	if len(h.logBlocks) > 0 {
		return logBlock{}, fmt.Errorf("one log block a run: read_category reads all of %q", logCategory)
	}
	if _, err := h.waitSequenced(ctx); err != nil {
		return logBlock{}, err
	}
	head, err := h.sequencing.Head(ctx)
	if err != nil {
		return logBlock{}, err
	}
	var stream string
	for i := 0; i < n/100; i++ {
		stream = cartStream(h.newCartID())
		if i%2 == 0 {
			stream = core.StreamID(logCategory, h.newCartID())
		}
		if err := h.mire.appendEvents(ctx, stream, 0, newItems(stream, 0, 100)); err != nil {
			return logBlock{}, fmt.Errorf("mire: appending the log to read: %w", err)
		}
	}
	if _, err := h.sequencing.Sequence(ctx); err != nil {
		return logBlock{}, err
	}
	if _, err := h.waitSequenced(ctx); err != nil {
		return logBlock{}, err
	}
	block := logBlock{from: head + 1, to: head + int64(n), last: &core.CommittedEvents{StreamID: stream, FromVersion: 1, ToVersion: 100}}
	h.logBlocks[n] = block
	return block, nil
}
