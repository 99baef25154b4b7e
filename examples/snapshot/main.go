// Command snapshot shows aggregate snapshots: a long stream loads from its
// latest snapshot plus the events after it instead of replaying everything,
// and a snapshot whose schema version does not match the loading type is
// ignored, so changing the state's shape never loads stale or wrong state.
//
//	go run ./examples/snapshot
package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"

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
		err = Run(ctx, os.Stdout, pool, "snapshot_example")
		pool.Close()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "snapshot: %v\n", err)
		os.Exit(1)
	}
}

// ReadingTaken is one reading of an electricity meter, in watt-hours.
type ReadingTaken struct {
	Wh int64 `json:"wh"`
}

// EventType implements core.EventData.
func (ReadingTaken) EventType() string { return "meter.reading-taken" }

// Meter is the aggregate: a meter that sees thousands of readings, the kind
// of long stream that snapshots are for.
//
// Its state is stored as JSON in snapshots, so every field is exported.
// How much work a load did is not state: the root's LoadInfo says it.
type Meter struct {
	Readings int64 `json:"readings"`
	TotalWh  int64 `json:"total_wh"`
}

// Category implements core.Aggregate.
func (*Meter) Category() string { return "meter" }

// Apply implements core.Aggregate.
func (m *Meter) Apply(event core.EventData) {
	if e, ok := event.(ReadingTaken); ok {
		m.Readings++
		m.TotalWh += e.Wh
	}
}

// SnapshotSchemaVersion implements core.Snapshotter: the version of the
// JSON shape above.
func (*Meter) SnapshotSchemaVersion() int { return 1 }

// SnapshotFrequency implements core.Snapshotter: a save that crosses a
// multiple of 100 events writes a snapshot, so a load replays fewer than
// 100 events plus whatever one save adds.
func (*Meter) SnapshotFrequency() int { return 100 }

// MeterV2 is the next release of Meter: it also tracks the peak reading.
// The JSON shape changed, so the schema version goes up. A version-1
// snapshot has no peak; were it restored, PeakWh would silently be 0. With
// the bump, LoadSnapshotted ignores it and replays the stream instead.
//
// It shares Meter's category: it is the same aggregate, the same streams,
// loaded by newer code.
type MeterV2 struct {
	Readings int64 `json:"readings"`
	TotalWh  int64 `json:"total_wh"`
	PeakWh   int64 `json:"peak_wh"`
}

// Category implements core.Aggregate.
func (*MeterV2) Category() string { return "meter" }

// Apply implements core.Aggregate.
func (m *MeterV2) Apply(event core.EventData) {
	if e, ok := event.(ReadingTaken); ok {
		m.Readings++
		m.TotalWh += e.Wh
		m.PeakWh = max(m.PeakWh, e.Wh)
	}
}

// SnapshotSchemaVersion implements core.Snapshotter.
func (*MeterV2) SnapshotSchemaVersion() int { return 2 }

// SnapshotFrequency implements core.Snapshotter.
func (*MeterV2) SnapshotFrequency() int { return 100 }

const (
	events    = 1000
	batchSize = 75 // events per save; saves need not line up with the frequency
	tail      = 42 // events saved after the last snapshot
)

// reading is a deterministic reading for event n, with one peak.
func reading(n int) int64 {
	if n == 777 {
		return 9000
	}
	return 100 + int64(n%50)
}

// Run is the demo. It prints what happens to out.
func Run(ctx context.Context, out io.Writer, pool *pgxpool.Pool, schema string) error {
	registry := core.NewRegistry()
	core.Register[ReadingTaken](registry)

	es, err := store.New(pool, &store.Config{Schema: schema, Registry: registry})
	if err != nil {
		return err
	}
	if err := es.Migrate(ctx); err != nil {
		return err
	}

	// A fresh meter per run, so the demo can run again and again.
	id := uuid.NewString()
	meter := core.NewRoot(id, &Meter{})
	saves := 0
	for n := 1; n <= events; n++ {
		meter.Record(ReadingTaken{Wh: reading(n)})
		if n%batchSize == 0 || n == events {
			// SaveSnapshotting is Save plus a snapshot whenever the save
			// crosses a multiple of SnapshotFrequency.
			if _, err := store.SaveSnapshotting(ctx, es, meter); err != nil {
				return err
			}
			saves++
		}
	}
	fmt.Fprintf(out, "saved %d readings in %d saves of up to %d; snapshots every %d events\n",
		events, saves, batchSize, meter.State().SnapshotFrequency())

	// The last save crossed version 1000, so the latest snapshot is at 1000.
	// Add a few more readings that do not reach the next multiple: they are
	// what a snapshotted load still has to replay.
	for n := events + 1; n <= events+tail; n++ {
		meter.Record(ReadingTaken{Wh: reading(n)})
	}
	if _, err := store.SaveSnapshotting(ctx, es, meter); err != nil {
		return err
	}
	fmt.Fprintf(out, "saved %d more readings; stream at version %d\n", tail, meter.Version())

	full, err := store.Load[Meter](ctx, es, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Load:                replayed %4d events -> %d readings, %d Wh\n",
		full.LoadInfo().Replayed, full.State().Readings, full.State().TotalWh)

	fast, err := store.LoadSnapshotted[Meter](ctx, es, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "LoadSnapshotted:     replayed %4d events -> %d readings, %d Wh\n",
		fast.LoadInfo().Replayed, fast.State().Readings, fast.State().TotalWh)
	if *full.State() != *fast.State() || full.Version() != fast.Version() {
		return fmt.Errorf("snapshotted load differs: %+v at %d, want %+v at %d",
			*fast.State(), fast.Version(), *full.State(), full.Version())
	}
	fmt.Fprintf(out, "same state, same version (%d)\n", fast.Version())

	// New code, new shape: the version-1 snapshot is ignored and the
	// stream replayed, so the new field is right from the first load.
	v2, err := store.LoadSnapshotted[MeterV2](ctx, es, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "LoadSnapshotted (v2): replayed %4d events -> %d readings, %d Wh, peak %d Wh\n",
		v2.LoadInfo().Replayed, v2.State().Readings, v2.State().TotalWh, v2.State().PeakWh)

	// The next snapshot v2 code takes replaces the old one, and v2 loads
	// are fast again. SaveSnapshot writes one now, whatever the frequency.
	if err := store.SaveSnapshot(ctx, es, v2); err != nil {
		return err
	}
	v2, err = store.LoadSnapshotted[MeterV2](ctx, es, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "after a v2 snapshot:  replayed %4d events -> %d readings, %d Wh, peak %d Wh\n",
		v2.LoadInfo().Replayed, v2.State().Readings, v2.State().TotalWh, v2.State().PeakWh)

	// And the other way round: v1 code still running during a rollout
	// ignores the v2 snapshot rather than misreading it.
	old, err := store.LoadSnapshotted[Meter](ctx, es, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "LoadSnapshotted (v1): replayed %4d events -> %d readings, %d Wh\n",
		old.LoadInfo().Replayed, old.State().Readings, old.State().TotalWh)
	return nil
}
