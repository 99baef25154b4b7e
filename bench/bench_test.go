package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mire-go/mire/integration/pgenv"
)

// The benchmarks share one harness, so that schemas are migrated and the
// read stream is loaded once per process; TestMain drops it.
var shared struct {
	once sync.Once
	h    *harness
	err  error
}

func TestMain(m *testing.M) {
	code := pgenv.RunTests(m)
	if shared.h != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := shared.h.drop(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		cancel()
		shared.h.close()
	}
	os.Exit(code)
}

func sharedHarness(b *testing.B) *harness {
	b.Helper()
	url := pgenv.URL(b) // skips or fails when there is no database
	shared.once.Do(func() {
		mireSchema, rawSchema := newSchemaNames()
		shared.h, shared.err = newHarness(context.Background(), url, 16, mireSchema, rawSchema)
	})
	if shared.err != nil {
		b.Fatal(shared.err)
	}
	return shared.h
}

// benchmark measures sc on the system pick chooses, b.N operations
// (appends, saves, or whole-stream reads or loads) shared by the writers.
func benchmark(b *testing.B, pick func(*harness) system, sc spec) {
	h := sharedHarness(b)
	sc.streamLength = max(1000, sc.batch)
	if sc.scenario == scenarioSave {
		sc.streamLength = saveStreamLength
	}
	ctx := context.Background()
	if sc.reads() {
		// Set up outside the timer.
		if _, err := h.readCart(ctx, sc.batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	s, err := h.measure(ctx, pick(h), sc, &budget{ops: int64(b.N)})
	if err != nil {
		b.Fatal(err)
	}
	// Replace the timer's ns/op, which includes waiting for the sequencer.
	b.ReportMetric(float64(s.elapsed.Nanoseconds())/float64(s.ops), "ns/op")
	b.ReportMetric(s.eventsPerSec(), "events/s")
	b.ReportMetric(float64(s.statements)/float64(s.ops), "stmts/op")
}

func mire(h *harness) system         { return h.mire }
func mireSnapshot(h *harness) system { return h.mireSnapshot }
func raw(h *harness) system          { return h.raw }
func rawIndexed(h *harness) system   { return h.rawIndexed }

func benchmarkWriters(b *testing.B, pick func(*harness) system, scenario string, batch int, writers ...int) {
	for _, w := range writers {
		b.Run(fmt.Sprintf("writers=%d", w), func(b *testing.B) {
			benchmark(b, pick, spec{scenario: scenario, writers: w, batch: batch})
		})
	}
}

func BenchmarkAppend(b *testing.B) { benchmarkWriters(b, mire, scenarioAppend, 1, 1, 16) }

func BenchmarkAppendRaw(b *testing.B) { benchmarkWriters(b, raw, scenarioAppend, 1, 1, 16) }

func BenchmarkAppendBatch100(b *testing.B) { benchmarkWriters(b, mire, scenarioBatch, 100, 1, 4) }

func BenchmarkAppendBatch100Raw(b *testing.B) { benchmarkWriters(b, raw, scenarioBatch, 100, 1, 4) }

func BenchmarkAppendBatch100RawIndex(b *testing.B) {
	benchmarkWriters(b, rawIndexed, scenarioBatch, 100, 1, 4)
}

func BenchmarkReadStream10k(b *testing.B) {
	benchmark(b, mire, spec{scenario: scenarioRead, writers: 1, batch: 10_000})
}

func BenchmarkReadStream10kRaw(b *testing.B) {
	benchmark(b, raw, spec{scenario: scenarioRead, writers: 1, batch: 10_000})
}

func BenchmarkLoad10k(b *testing.B) {
	benchmark(b, mire, spec{scenario: scenarioLoad, writers: 1, batch: 10_000})
}

func BenchmarkLoad10kSnapshot(b *testing.B) {
	benchmark(b, mireSnapshot, spec{scenario: scenarioLoad, writers: 1, batch: 10_000})
}

func BenchmarkLoad10kRaw(b *testing.B) {
	benchmark(b, raw, spec{scenario: scenarioLoad, writers: 1, batch: 10_000})
}

func BenchmarkSave(b *testing.B) { benchmarkWriters(b, mire, scenarioSave, 1, 1, 16) }

func BenchmarkSaveRaw(b *testing.B) { benchmarkWriters(b, raw, scenarioSave, 1, 1, 16) }

// TestRun runs every scenario briefly, to prove the harness works (the
// failover scenario with short leases only).
func TestRun(t *testing.T) {
	t.Parallel()
	url := pgenv.URL(t)
	ctx := context.Background()
	h, err := newHarness(ctx, url, 2, pgenv.NewSchemaName(t), pgenv.NewSchemaName(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.close)

	o := options{
		duration: 100 * time.Millisecond, rounds: 2, writers: []int{2}, batchWriters: []int{1}, saveWriters: []int{2},
		batchSize: 10, readEvents: 250, logEvents: 2000, streamLength: 20, scenarios: scenarios,
		contendedWriters: []int{4}, contendedStreams: []int{2},
		catchUpBatch: 1000, latencyWriters: 2, latencyRate: 200, failoverTTL: time.Second, failoverRecheck: 100 * time.Millisecond,
		sagaStarters: []int{1, 2},
	}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	rows, err := h.run(ctx, o, t.Output())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, row := range rows {
		got = append(got, row.Scenario+"/"+row.System)
		if row.EventsPerSec <= 0 || row.OpsPerSec <= 0 || len(row.Samples) != o.rounds {
			t.Errorf("row %+v: want positive rates from %d samples", row, o.rounds)
		}
	}
	want := []string{"append/raw", "append/raw+index", "append/mire", "append/mire-ungrouped",
		"append_batch/raw", "append_batch/raw+index", "append_batch/mire",
		"append_contended/raw", "append_contended/mire", "append_contended/mire-ungrouped",
		"read_stream/raw", "read_stream/mire", "load/raw", "load/mire", "load/mire+snapshot", "save/raw", "save/mire",
		"read_log/raw", "read_log/mire", "read_category/raw", "read_category/mire",
		"catchup/raw", "catchup/mire", "catchup/mire+batch1000", "latency/mire", "failover/mire", "failover/mire",
		"saga/mire", "saga/mire"}
	if !slices.Equal(got, want) {
		t.Fatalf("got rows %v, want %v", got, want)
	}
	for _, row := range rows {
		noBaseline := row.Scenario == scenarioLatency || row.Scenario == scenarioFailover || row.Scenario == scenarioSaga
		if (row.RatioToRaw == nil) != noBaseline {
			t.Errorf("row %s/%s: ratio to raw %v: want one exactly for scenarios with a baseline", row.Scenario, row.System, row.RatioToRaw)
		}
		// mire's append rows, and only those, are also compared with
		// raw+index, whose rate is raw's times its ratio.
		indexed := (row.Scenario == scenarioAppend || row.Scenario == scenarioBatch) && strings.HasPrefix(row.System, "mire")
		if (row.RatioToRawIndex == nil) == indexed {
			t.Errorf("row %s/%s: ratio to raw+index %v: want one exactly on mire's append rows", row.Scenario, row.System, row.RatioToRawIndex)
		}
	}
	if l := rows[24].LatencyMillis; l == nil || l.Events == 0 || l.P50 > l.P99 || l.P99 > l.Max {
		t.Errorf("latency row %+v: want percentiles over its events", rows[24])
	}
	// A killed leader's lease is taken over once it expires, within
	// LeaseTTL + RecheckInterval (here with a second for a loaded
	// machine); a stopped one's at once, long before it would expire.
	if kill := rows[25].Takeover; kill == nil || len(kill.Samples) != o.rounds || kill.Bound != 1100 || kill.Max > kill.Bound+1000 {
		t.Errorf("failover row after a kill %+v: want %d takeovers within LeaseTTL + RecheckInterval", rows[25], o.rounds)
	}
	if stop := rows[26].Takeover; stop == nil || len(stop.Samples) != o.rounds || stop.Max >= stop.LeaseTTL {
		t.Errorf("failover row after a stop %+v: want %d takeovers before the lease would expire", rows[26], o.rounds)
	}
	// Each saga is timed at both its steps, and commits at least five
	// transactions of its own: its start, its two sends, the confirmation
	// and the one that journals its outcome.
	for _, row := range rows[27:] {
		f, l := row.Saga, row.LatencyMillis
		switch {
		case f == nil || l == nil:
			t.Errorf("saga row %+v: want saga figures and step latencies", row)
		case row.EventsPerOp != sagaEvents || l.Events != 2*f.Saga.Events:
			t.Errorf("saga row %+v: want %d events per saga and two steps timed per saga", row, sagaEvents)
		case f.RunsPerSaga < 1 || f.TransactionsPerSaga < 5 || row.StatementsPerOp < f.TransactionsPerSaga:
			t.Errorf("saga row: %.2f runs, %.2f transactions and %.2f statements per saga: want at least 1 run and 5 transactions",
				f.RunsPerSaga, f.TransactionsPerSaga, row.StatementsPerOp)
		case l.P50 > l.P99 || f.Delivery.P50 > l.P50 || f.Saga.P50 < l.P50:
			t.Errorf("saga row: steps %+v, deliveries %+v, sagas %+v: want deliveries within steps within sagas", l, f.Delivery, f.Saga)
		}
	}
	// A snapshotted load replays nothing: it reads the snapshot, finds no
	// later events and checks the stream's version.
	if row := rows[12]; row.StatementsPerOp > 3 {
		t.Errorf("mire+snapshot load: %.2f statements per load, want at most 3", row.StatementsPerOp)
	}
	check, err := h.headCheck(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !check.OK || check.Head == 0 {
		t.Errorf("head check %+v: want the head to equal a positive number of appended events", check)
	}
}

func TestStatementLabel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ sql, want string }{
		{"-- name: SagaClaim :many\nWITH due AS (SELECT 1)", "SagaClaim"},
		{"  -- name: EventAppendExact :one\nINSERT INTO x", "EventAppendExact"},
		{"begin isolation level read committed", "begin"},
		{"COMMIT", "commit"},
		{"", ""},
	} {
		if got := statementLabel(tc.sql); got != tc.want {
			t.Errorf("statementLabel(%q) = %q, want %q", tc.sql, got, tc.want)
		}
	}
}
