package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/store"
)

// ItemAdded is the benchmark's event: a typical small domain event whose
// JSON encoding is 150-190 bytes.
type ItemAdded struct {
	CartID     string    `json:"cart_id"`
	Line       int64     `json:"line"`
	SKU        string    `json:"sku"`
	Name       string    `json:"name"`
	Quantity   int       `json:"quantity"`
	PriceCents int64     `json:"price_cents"`
	Currency   string    `json:"currency"`
	AddedAt    time.Time `json:"added_at"`
}

// EventType implements core.EventData.
func (ItemAdded) EventType() string { return "cart.item-added" }

// Cart is the benchmark's aggregate: a shopping cart folding ItemAdded
// events into a line count and a total. Its stream is "cart-<id>".
type Cart struct {
	Lines      int64 `json:"lines"`
	TotalCents int64 `json:"total_cents"`
}

const cartCategory = "cart"

// cartStream returns the stream ID of the cart with ID id.
func cartStream(id string) string { return core.StreamID(cartCategory, id) }

// Category implements core.Aggregate.
func (*Cart) Category() string { return cartCategory }

// Apply implements core.Aggregate.
func (c *Cart) Apply(event core.EventData) {
	if e, ok := event.(ItemAdded); ok {
		c.Lines++
		c.TotalCents += int64(e.Quantity) * e.PriceCents
	}
}

// SnapshotSchemaVersion implements core.Snapshotter.
func (*Cart) SnapshotSchemaVersion() int { return 1 }

// SnapshotFrequency implements core.Snapshotter: the scenarios never cross
// it by saving; the load scenario's snapshot is written at setup.
func (*Cart) SnapshotFrequency() int { return 1000 }

// headers is the metadata every event carries: mire stores it as headers,
// the baseline as its metadata column.
var headers = map[string]string{"tenant": "acme", "user_id": "user-4711"}

var productNames = []string{
	"Stainless steel water bottle, 750 ml",
	"Organic cotton T-shirt, navy, size M",
	"Wireless ergonomic mouse",
	"Cast iron skillet 26 cm",
	"Paperback: The Pragmatic Programmer",
}

// newItems returns n events for stream, numbered from line version+1.
func newItems(stream string, version int64, n int) []ItemAdded {
	items := make([]ItemAdded, n)
	now := time.Now().UTC()
	for i := range items {
		items[i] = ItemAdded{
			CartID:     stream,
			Line:       version + int64(i) + 1,
			SKU:        fmt.Sprintf("SKU-%06d", rand.IntN(1_000_000)),
			Name:       productNames[rand.IntN(len(productNames))],
			Quantity:   1 + rand.IntN(5),
			PriceCents: 199 + rand.Int64N(20_000),
			Currency:   "EUR",
			AddedAt:    now,
		}
	}
	return items
}

// system is one side of a comparison: mire (with or without snapshots) or
// the raw-pgx baseline. All encode the same Go values to JSON on every
// append.
type system interface {
	name() string
	// appendEvents appends items to stream, whose version is version (0 for
	// a new stream), in one round trip and one transaction.
	appendEvents(ctx context.Context, stream string, version int64, items []ItemAdded) error
	// readStream reads every event of stream in version order into memory
	// and returns how many there were.
	readStream(ctx context.Context, stream string) (int, error)
	// loadCart rebuilds the cart with ID id and returns it with the stream
	// version it reflects.
	loadCart(ctx context.Context, id string) (*Cart, int64, error)
	// appendAt appends item to stream if the stream is at version, and
	// reports whether it did: false for a conflict.
	appendAt(ctx context.Context, stream string, version int64, item ItemAdded) (bool, error)
	// streamVersion reads a stream's current version.
	streamVersion(ctx context.Context, stream string) (int64, error)
	// readLog reads the sequenced events at positions from to to, in
	// position order, and returns how many there were.
	readLog(ctx context.Context, from, to int64) (int, error)
	// readCategory reads every sequenced event of category in position
	// order and returns how many there were.
	readCategory(ctx context.Context, category string) (int, error)
	// addItem runs a command on the cart with ID id: it loads the cart,
	// records item and saves it with optimistic concurrency, and returns
	// the cart's version after the save.
	addItem(ctx context.Context, id string, item ItemAdded) (int64, error)
	// catchUp goes through the sequenced events of block in position
	// order, as a projection catching up on them, and returns how many
	// there were and how long it took, setup excluded.
	catchUp(ctx context.Context, block logBlock) (int, time.Duration, error)
}

// mireSystem is mire's EventStore, used as an application would use it:
// with snapshots, it loads with store.LoadSnapshotted and saves with
// store.SaveSnapshotting. It catches up with a runner (runner.go) with
// runnerBatch as its BatchSize, 0 for the default.
type mireSystem struct {
	es          *store.EventStore
	appended    *atomic.Int64 // events appended, to check the sequencer against; shared by the variants
	snapshots   bool
	runnerBatch int
	ungrouped   bool // its store has group commit off
}

func (m *mireSystem) name() string {
	switch {
	case m.snapshots:
		return "mire+snapshot"
	case m.runnerBatch > 0:
		return fmt.Sprintf("mire+batch%d", m.runnerBatch)
	case m.ungrouped:
		return "mire-ungrouped"
	}
	return "mire"
}

// appendEvents appends with an exact expected version: the optimistic path
// of an aggregate save.
func (m *mireSystem) appendEvents(ctx context.Context, stream string, version int64, items []ItemAdded) error {
	events := make([]core.Event, len(items))
	for i, item := range items {
		events[i] = core.Event{Data: item, Metadata: core.EventMetadata{Headers: headers}}
	}
	if _, err := m.es.Append(ctx, stream, core.Exact(version), events...); err != nil {
		return err
	}
	m.appended.Add(int64(len(items)))
	return nil
}

func (m *mireSystem) loadCart(ctx context.Context, id string) (*Cart, int64, error) {
	var root *core.Root[*Cart]
	var err error
	if m.snapshots {
		root, err = store.LoadSnapshotted[Cart](ctx, m.es, id)
	} else {
		root, err = store.Load[Cart](ctx, m.es, id)
	}
	if err != nil {
		return nil, 0, err
	}
	return root.State(), root.Version(), nil
}

// addItem records item with the same headers appends carry. The writers'
// carts are their own, so a conflict (core.ErrConcurrency) never happens
// and fails the measurement if it does.
func (m *mireSystem) addItem(ctx context.Context, id string, item ItemAdded) (int64, error) {
	var root *core.Root[*Cart]
	var err error
	save := store.Save[*Cart]
	if m.snapshots {
		root, err = store.LoadSnapshotted[Cart](ctx, m.es, id)
		if errors.Is(err, core.ErrStreamNotFound) {
			root, err = core.NewRoot(id, &Cart{}), nil
		}
		save = store.SaveSnapshotting[*Cart]
	} else {
		root, err = store.LoadOrNew[Cart](ctx, m.es, id)
	}
	if err != nil {
		return 0, err
	}
	root.RecordEvent(core.Event{Data: item, Metadata: core.EventMetadata{Headers: headers}})
	if _, err := save(ctx, m.es, root); err != nil {
		return 0, err
	}
	m.appended.Add(1)
	return root.Version(), nil
}

func (m *mireSystem) appendAt(ctx context.Context, stream string, version int64, item ItemAdded) (bool, error) {
	_, err := m.es.Append(ctx, stream, core.Exact(version), core.Event{Data: item, Metadata: core.EventMetadata{Headers: headers}})
	if errors.Is(err, core.ErrConcurrency) {
		return false, nil
	}
	if err == nil {
		m.appended.Add(1)
	}
	return err == nil, err
}

func (m *mireSystem) streamVersion(ctx context.Context, stream string) (int64, error) {
	return m.es.StreamVersion(ctx, stream)
}

// readLog and readCategory count what they read, as a catching-up
// projection would handle each event and let it go.
func (m *mireSystem) readLog(ctx context.Context, from, to int64) (int, error) {
	q := core.ReadAll()
	q.FromPosition, q.Limit = from, int(to-from+1)
	return countRead(m.es.Read(ctx, q))
}

func (m *mireSystem) readCategory(ctx context.Context, category string) (int, error) {
	return countRead(m.es.Read(ctx, core.ReadCategory(category)))
}

func countRead(events iter.Seq2[*core.RecordedEvent, error]) (int, error) {
	n := 0
	for _, err := range events {
		if err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

func (m *mireSystem) readStream(ctx context.Context, stream string) (int, error) {
	var events []*core.RecordedEvent
	for event, err := range m.es.Read(ctx, core.ReadStream(stream)) {
		if err != nil {
			return 0, err
		}
		events = append(events, event)
	}
	return len(events), nil
}

// rawSystem is the baseline: plain INSERTs into a table with a bigserial
// primary key and no other index or constraint, in autocommit, a plain
// SELECT for reads, and a hand-written hydrate for loads.
type rawSystem struct {
	pool   *pgxpool.Pool
	schema string

	insertOne, insertMany, loadMany, selectStream string
	selectCart, insertCart                        string
	// selectLog and selectCategory read mire's own tables in one query each:
	// the log joined to the events, in position order.
	selectLog, selectCategory string
	selectVersion             string
}

// rawTable is the baseline's table. raw_events takes appends; the stream
// that read and load scenarios read, and the carts of the save scenario,
// live in raw_stream_events, which also has the (stream_id, stream_version)
// index any real reader needs; it is unique, as mire's is, so that it
// checks a save's optimistic concurrency. raw_indexed_events is
// raw_events with that index, for the raw+index appends (see
// rawIndexedSystem).
const rawTable = `
CREATE TABLE %[1]s.raw_events (
    id bigserial PRIMARY KEY,
    stream_id text NOT NULL,
    stream_version bigint NOT NULL,
    event_id uuid NOT NULL,
    event_type text NOT NULL,
    data jsonb NOT NULL,
    metadata jsonb,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE %[1]s.raw_stream_events (LIKE %[1]s.raw_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE %[1]s.raw_stream_events ADD PRIMARY KEY (id);
CREATE UNIQUE INDEX ON %[1]s.raw_stream_events (stream_id, stream_version);
CREATE TABLE %[1]s.raw_indexed_events (LIKE %[1]s.raw_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE %[1]s.raw_indexed_events ADD PRIMARY KEY (id);
CREATE UNIQUE INDEX ON %[1]s.raw_indexed_events (stream_id, stream_version);
`

// insertMany inserts a batch into a table in one statement, prepared once
// whatever the batch size. For 100 rows it measured as fast as a multi-row
// VALUES list with 600 parameters (within run-to-run noise), and it is the
// same array-parameter shape mire uses.
const insertOne = `INSERT INTO %s (stream_id, stream_version, event_id, event_type, data, metadata)
	VALUES ($1, $2, $3, $4, $5, $6)`

const insertMany = `INSERT INTO %s (stream_id, stream_version, event_id, event_type, data, metadata)
	SELECT $1, $2 + v.i, v.event_id, v.event_type, v.data, v.metadata
	FROM unnest($3::uuid[], $4::text[], $5::jsonb[], $6::jsonb[]) WITH ORDINALITY
	     AS v(event_id, event_type, data, metadata, i)`

func newRawSystem(ctx context.Context, pool *pgxpool.Pool, schema, mireSchema string) (*rawSystem, error) {
	quoted := pgx.Identifier{schema}.Sanitize()
	mire := pgx.Identifier{mireSchema}.Sanitize()
	// The log holds runs: a stream's versions first_version ..
	// first_version + event_count - 1 at consecutive positions.
	// The lateral join reads each run's events as one range of the stream
	// index, whatever the statistics (as a plain join the planner chose
	// hash joins over all of events in some runs).
	logRows := `SELECT l.global_position + (e.stream_version - l.first_version), e.stream_id, e.stream_version,
			e.event_id, e.event_type, e.data, e.headers, e.recorded_at
			FROM ` + mire + `.event_log AS l CROSS JOIN LATERAL (SELECT * FROM ` + mire + `.events AS e
			WHERE e.stream_id = l.stream_id AND e.stream_version >= l.first_version
			AND e.stream_version < l.first_version + l.event_count ORDER BY e.stream_version) AS e `
	ddl := "CREATE SCHEMA " + quoted + ";" + fmt.Sprintf(rawTable, quoted)
	if _, err := pool.Exec(ctx, ddl, pgx.QueryExecModeSimpleProtocol); err != nil {
		return nil, fmt.Errorf("creating the raw baseline in %s: %w", schema, err)
	}
	return &rawSystem{
		pool:       pool,
		schema:     schema,
		insertOne:  fmt.Sprintf(insertOne, quoted+".raw_events"),
		insertMany: fmt.Sprintf(insertMany, quoted+".raw_events"),
		loadMany:   fmt.Sprintf(insertMany, quoted+".raw_stream_events"),
		selectStream: `SELECT id, stream_id, stream_version, event_id, event_type, data, metadata, recorded_at
			FROM ` + quoted + `.raw_stream_events WHERE stream_id = $1 ORDER BY stream_version`,
		selectCart: `SELECT stream_version, event_type, data
			FROM ` + quoted + `.raw_stream_events WHERE stream_id = $1 ORDER BY stream_version`,
		insertCart: fmt.Sprintf(insertOne, quoted+".raw_stream_events"),
		selectLog: logRows + `WHERE l.global_position BETWEEN (SELECT max(s.global_position) FROM ` + mire + `.event_log AS s
			WHERE s.global_position <= $1) AND $2
			AND l.global_position + (e.stream_version - l.first_version) BETWEEN $1 AND $2
			ORDER BY l.global_position, e.stream_version`,
		selectCategory: logRows + `WHERE l.category = $1 ORDER BY l.global_position, e.stream_version`,
		selectVersion:  `SELECT coalesce(max(stream_version), 0) FROM ` + quoted + `.raw_stream_events WHERE stream_id = $1`,
	}, nil
}

func (*rawSystem) name() string { return "raw" }

// rawIndexedName names the second baseline of the append scenarios.
const rawIndexedName = "raw+index"

// rawIndexedSystem is the baseline's appends into raw_indexed_events, whose
// unique (stream_id, stream_version) index is the version gate an event
// store cannot do without (mire's, and the one the contended scenario's
// baseline conflicts on). Beside raw, it tells what that index costs apart
// from what mire adds. Only the append scenarios run it; it inherits the
// rest from rawSystem.
type rawIndexedSystem struct {
	*rawSystem
	indexedOne, indexedMany string
}

func newRawIndexedSystem(raw *rawSystem) *rawIndexedSystem {
	table := pgx.Identifier{raw.schema, "raw_indexed_events"}.Sanitize()
	return &rawIndexedSystem{
		rawSystem:   raw,
		indexedOne:  fmt.Sprintf(insertOne, table),
		indexedMany: fmt.Sprintf(insertMany, table),
	}
}

func (*rawIndexedSystem) name() string { return rawIndexedName }

// appendEvents appends as rawSystem's does, into the indexed table.
func (r *rawIndexedSystem) appendEvents(ctx context.Context, stream string, version int64, items []ItemAdded) error {
	if len(items) == 1 {
		return r.insert(ctx, r.indexedOne, stream, version+1, items[0])
	}
	return r.insertBatch(ctx, r.indexedMany, stream, version, items)
}

// appendEvents inserts one row with VALUES, or a batch in one unnest
// statement (so in one transaction: autocommit).
func (r *rawSystem) appendEvents(ctx context.Context, stream string, version int64, items []ItemAdded) error {
	if len(items) == 1 {
		return r.insert(ctx, r.insertOne, stream, version+1, items[0])
	}
	return r.insertBatch(ctx, r.insertMany, stream, version, items)
}

// insert inserts item as version version of stream with one INSERT ...
// VALUES.
func (r *rawSystem) insert(ctx context.Context, query, stream string, version int64, item ItemAdded) error {
	data, metadata, err := encode(item)
	if err != nil {
		return err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	// [16]byte, not uuid.UUID: pgx encodes it directly instead of through
	// uuid.UUID's driver.Valuer (a string), as mire's store does.
	_, err = r.pool.Exec(ctx, query, stream, version, [16]byte(id), item.EventType(), data, metadata)
	return err
}

// loadStream inserts items into the table read scenarios read.
func (r *rawSystem) loadStream(ctx context.Context, stream string, version int64, items []ItemAdded) error {
	return r.insertBatch(ctx, r.loadMany, stream, version, items)
}

func (r *rawSystem) insertBatch(ctx context.Context, query, stream string, version int64, items []ItemAdded) error {
	ids := make([][16]byte, len(items)) // see insert
	types := make([]string, len(items))
	data := make([][]byte, len(items))
	metadata := make([][]byte, len(items))
	for i, item := range items {
		var err error
		if data[i], metadata[i], err = encode(item); err != nil {
			return err
		}
		id, err := uuid.NewV7()
		if err != nil {
			return err
		}
		ids[i], types[i] = id, item.EventType()
	}
	_, err := r.pool.Exec(ctx, query, stream, version, ids, types, data, metadata)
	return err
}

func encode(item ItemAdded) (data, metadata []byte, err error) {
	if data, err = json.Marshal(item); err != nil {
		return nil, nil, err
	}
	metadata, err = json.Marshal(headers)
	return data, metadata, err
}

// rawEvent is a row of the baseline's table.
type rawEvent struct {
	ID            int64
	StreamID      string
	StreamVersion int64
	EventID       uuid.UUID
	EventType     string
	Data          []byte
	Metadata      []byte
	RecordedAt    time.Time
}

func (r *rawSystem) readStream(ctx context.Context, stream string) (int, error) {
	rows, err := r.pool.Query(ctx, r.selectStream, stream)
	if err != nil {
		return 0, err
	}
	events, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (rawEvent, error) {
		var e rawEvent
		err := row.Scan(&e.ID, &e.StreamID, &e.StreamVersion, &e.EventID, &e.EventType, &e.Data, &e.Metadata, &e.RecordedAt)
		return e, err
	})
	return len(events), err
}

// appendAt inserts into the table with the unique (stream_id,
// stream_version) index: a unique violation is the conflict.
func (r *rawSystem) appendAt(ctx context.Context, stream string, version int64, item ItemAdded) (bool, error) {
	err := r.insert(ctx, r.insertCart, stream, version+1, item)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return false, nil
	}
	return err == nil, err
}

func (r *rawSystem) streamVersion(ctx context.Context, stream string) (int64, error) {
	var version int64
	err := r.pool.QueryRow(ctx, r.selectVersion, stream).Scan(&version)
	return version, err
}

func (r *rawSystem) readLog(ctx context.Context, from, to int64) (int, error) {
	return r.countRows(ctx, r.selectLog, from, to)
}

// catchUp is readLog: the rows a runner reads, in one query.
func (r *rawSystem) catchUp(ctx context.Context, block logBlock) (int, time.Duration, error) {
	start := time.Now()
	n, err := r.readLog(ctx, block.from, block.to)
	return n, time.Since(start), err
}

func (r *rawSystem) readCategory(ctx context.Context, category string) (int, error) {
	return r.countRows(ctx, r.selectCategory, category)
}

// countRows streams a query's rows, scanning each as mire's reads do.
func (r *rawSystem) countRows(ctx context.Context, query string, args ...any) (int, error) {
	rows, err := r.pool.Query(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var (
		n             int
		position, ver int64
		stream, typ   string
		id            [16]byte
		data, headers []byte
		recordedAt    time.Time
	)
	for rows.Next() {
		if err := rows.Scan(&position, &stream, &ver, &id, &typ, &data, &headers, &recordedAt); err != nil {
			return 0, err
		}
		n++
	}
	return n, rows.Err()
}

// loadCart is a hand-written hydrate: one SELECT of the stream's versions,
// types and data in version order, each decoded with json.Unmarshal and
// folded into the cart, checking that versions have no gaps.
func (r *rawSystem) loadCart(ctx context.Context, id string) (*Cart, int64, error) {
	stream := cartStream(id)
	rows, err := r.pool.Query(ctx, r.selectCart, stream)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	cart := &Cart{}
	var last, version int64
	var eventType string
	var data []byte
	for rows.Next() {
		if err := rows.Scan(&version, &eventType, &data); err != nil {
			return nil, 0, err
		}
		if version != last+1 {
			return nil, 0, fmt.Errorf("stream %s: version %d follows version %d", stream, version, last)
		}
		switch eventType {
		case ItemAdded{}.EventType():
			var e ItemAdded
			if err := json.Unmarshal(data, &e); err != nil {
				return nil, 0, fmt.Errorf("stream %s version %d: %w", stream, version, err)
			}
			cart.Apply(e)
		default:
			return nil, 0, fmt.Errorf("stream %s version %d: unknown event type %q", stream, version, eventType)
		}
		last = version
	}
	return cart, last, rows.Err()
}

// addItem loads the cart with loadCart and inserts item as the next
// version, in two autocommit statements; the unique (stream_id,
// stream_version) index rejects a concurrent save.
func (r *rawSystem) addItem(ctx context.Context, id string, item ItemAdded) (int64, error) {
	cart, version, err := r.loadCart(ctx, id)
	if err != nil {
		return 0, err
	}
	cart.Apply(item) // as a command would, to decide and validate
	if err := r.insert(ctx, r.insertCart, cartStream(id), version+1, item); err != nil {
		return 0, err
	}
	return version + 1, nil
}
