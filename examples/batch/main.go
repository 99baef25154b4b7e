// Command batch shows bulk ingest: importing a feed of 10,000 events for 100
// streams, as from a legacy system or a message queue, in chunks of 500.
// Each chunk is grouped by stream, each group becomes one append (one round
// trip however many events it holds), and each chunk commits in one
// transaction.
//
// Appends store events without a global position; the sequencer numbers
// them after commit. The demo then sequences, checks the head, and reads a
// stream back.
//
//	go run ./examples/batch
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

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
		err = Run(ctx, os.Stdout, pool, "batch_example")
		pool.Close()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "batch: %v\n", err)
		os.Exit(1)
	}
}

// TemperatureRecorded is one reading of a sensor.
type TemperatureRecorded struct {
	Seq         int `json:"seq"`
	DeciCelsius int `json:"deci_celsius"`
}

// EventType implements core.EventData.
func (TemperatureRecorded) EventType() string { return "sensor.temperature-recorded" }

const (
	totalEvents = 10_000
	streams     = 100
	chunkSize   = 500
)

// FeedItem is one event of the incoming feed and the stream it belongs to.
type FeedItem struct {
	StreamID string
	Event    core.Event
}

// feed returns the events to import, interleaved across streams as they
// would arrive from outside. prefix makes the stream IDs unique per run.
func feed(prefix string) []FeedItem {
	items := make([]FeedItem, totalEvents)
	for i := range items {
		sensor := i % streams
		items[i] = FeedItem{
			StreamID: sensorStream(prefix, sensor),
			Event:    core.NewEvent(TemperatureRecorded{Seq: i / streams, DeciCelsius: 180 + (i*7)%60}),
		}
	}
	return items
}

func sensorStream(prefix string, sensor int) string {
	return core.StreamID("sensor", fmt.Sprintf("%s.%03d", prefix, sensor))
}

// Ingester appends a feed chunk by chunk. It remembers the version of every
// stream it wrote, so each append states what it expects: NoStream for a
// stream's first events, Exact(v) afterwards. A stream that someone else
// also writes, or a chunk imported twice, then fails with a version
// conflict instead of silently interleaving or duplicating events.
type Ingester struct {
	es       *store.EventStore
	versions map[string]int64

	Transactions, Appends int
}

// NewIngester returns an Ingester that starts with empty streams.
func NewIngester(es *store.EventStore) *Ingester {
	return &Ingester{es: es, versions: make(map[string]int64)}
}

// Ingest appends one chunk in one transaction: all of it, or none of it, so
// that an import that stops can resume at a chunk boundary.
func (in *Ingester) Ingest(ctx context.Context, chunk []FeedItem) error {
	// Group by stream, keeping the feed's order within each stream and the
	// order in which streams first appear.
	var order []string
	groups := make(map[string][]core.Event)
	for _, item := range chunk {
		if _, ok := groups[item.StreamID]; !ok {
			order = append(order, item.StreamID)
		}
		groups[item.StreamID] = append(groups[item.StreamID], item.Event)
	}

	// Versions become true only if the transaction commits.
	updated := make(map[string]int64, len(order))
	err := in.es.InScope(ctx, func(scope *store.Scope) error {
		for _, streamID := range order {
			expected := core.NoStream
			if v := in.versions[streamID]; v > 0 {
				expected = core.Exact(v)
			}
			committed, err := scope.Append(ctx, streamID, expected, groups[streamID]...)
			if err != nil {
				return err
			}
			updated[streamID] = committed.ToVersion
		}
		return nil
	})
	if err != nil {
		return err
	}
	for streamID, v := range updated {
		in.versions[streamID] = v
	}
	in.Transactions++
	in.Appends += len(order)
	return nil
}

// Run is the demo. It prints what happens to out.
func Run(ctx context.Context, out io.Writer, pool *pgxpool.Pool, schema string) error {
	registry := core.NewRegistry()
	core.Register[TemperatureRecorded](registry)

	es, err := store.New(pool, &store.Config{Schema: schema, Registry: registry})
	if err != nil {
		return err
	}
	if err := es.Migrate(ctx); err != nil {
		return err
	}

	// Start from a fully sequenced log, so that what Sequence assigns below
	// is exactly this run's events. (A fresh schema has nothing to do.)
	if _, err := es.Sequence(ctx); err != nil {
		return err
	}
	headBefore, err := es.Head(ctx)
	if err != nil {
		return err
	}

	// Fresh streams per run, so the demo can run again and again.
	prefix := strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
	items := feed(prefix)
	fmt.Fprintf(out, "ingesting %d events for %d streams in chunks of %d\n", len(items), streams, chunkSize)

	ingester := NewIngester(es)
	started := time.Now()
	for chunk := range slices.Chunk(items, chunkSize) {
		if err := ingester.Ingest(ctx, chunk); err != nil {
			return err
		}
	}
	elapsed := time.Since(started)
	fmt.Fprintf(out, "ingested in %d transactions of %d appends: %.0f events/s\n",
		ingester.Transactions, ingester.Appends/ingester.Transactions, float64(len(items))/elapsed.Seconds())

	// An importer that restarts without knowing where it stopped cannot
	// import a chunk twice: its first append expects no stream.
	err = NewIngester(es).Ingest(ctx, items[:chunkSize])
	var conflict *core.VersionConflictError
	if !errors.As(err, &conflict) {
		return fmt.Errorf("re-importing a chunk: want a version conflict, got %w", err)
	}
	fmt.Fprintf(out, "re-importing the first chunk is refused: %s expected %s, found version %d\n",
		display(conflict.StreamID, prefix), conflict.Expected, conflict.Actual)

	// Stream reads do not wait for the sequencer: the events are there,
	// positions not yet.
	first := sensorStream(prefix, 7)
	unsequenced, err := es.ReadEvents(ctx, core.StreamQuery{StreamID: first, Limit: 1})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "before sequencing, %s v1 has global position %d\n", display(first, prefix), unsequenced[0].GlobalPosition)

	// Sequence numbers everything committed so far in insertion order. Reads
	// of a category or of the whole log do this themselves, and a
	// store.Sequencer does it in the background.
	assigned, err := es.Sequence(ctx)
	if err != nil {
		return err
	}
	head, err := es.Head(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Sequence assigned %d positions; Head moved up by %d\n", assigned, head-headBefore)

	// Every new position is taken, once: read the log from just after the
	// old head and check positions are gapless and cover this run.
	next, count := headBefore+1, 0
	for event, err := range es.Read(ctx, core.StreamQuery{FromPosition: headBefore + 1}) {
		if err != nil {
			return err
		}
		if event.GlobalPosition != next {
			return fmt.Errorf("position %d follows %d", event.GlobalPosition, next-1)
		}
		next++
		count++
	}
	fmt.Fprintf(out, "the log after the old head holds %d events at gapless positions\n", count)

	// One stream back, in stream order, now with positions.
	events, err := es.ReadEvents(ctx, core.ReadStream(first))
	if err != nil {
		return err
	}
	// Positions depend on what the log held before, so they are printed
	// relative to the old head, H.
	fmt.Fprintf(out, "%s: %d events, versions %d..%d, at increasing positions:\n", display(first, prefix), len(events),
		events[0].StreamVersion, events[len(events)-1].StreamVersion)
	for i, event := range events {
		if i > 0 && event.GlobalPosition <= events[i-1].GlobalPosition {
			return fmt.Errorf("stream positions out of order at version %d", event.StreamVersion)
		}
		if i < 3 || i == len(events)-1 {
			fmt.Fprintf(out, "  v%-3d at H+%-4d %s\n", event.StreamVersion, event.GlobalPosition-headBefore, event.Data)
		} else if i == 3 {
			fmt.Fprintln(out, "  ...")
		}
	}
	return nil
}

// display hides the run's prefix in a stream ID.
func display(streamID, prefix string) string {
	return strings.Replace(streamID, prefix, "<run>", 1)
}
