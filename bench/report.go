package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what results.json holds.
type Report struct {
	Meta Meta  `json:"meta"`
	Rows []Row `json:"rows"`
}

// Meta describes the run, so that results from different runs and machines
// can be told apart.
type Meta struct {
	Date             string            `json:"date"`
	GoVersion        string            `json:"go_version"`
	Platform         string            `json:"platform"`
	CPUs             int               `json:"cpus"`
	PostgresVersion  string            `json:"postgres_version"`
	PostgresSource   string            `json:"postgres_source"`
	PostgresSettings map[string]string `json:"postgres_settings"`
	Rounds           int               `json:"rounds"`
	DurationSeconds  float64           `json:"duration_seconds"`
	WarmupSeconds    float64           `json:"warmup_seconds"`
	Method           string            `json:"method"`
	RawBaseline      string            `json:"raw_baseline"`
	DataBytes        int               `json:"data_bytes"`     // one event's JSON data, typically
	MetadataBytes    int               `json:"metadata_bytes"` // its headers (mire) or metadata (raw)
	StreamLength     int               `json:"stream_length"`
	SaveStreamLength int               `json:"save_stream_length"` // saves per cart in the save scenario
	ReadEvents       int               `json:"read_events"`        // events of the stream read and load scenarios read
	HeadCheck        *HeadCheck        `json:"head_check,omitempty"`
	TotalSeconds     float64           `json:"total_seconds"`
}

// HeadCheck proves the sequencer kept up: after the run, the highest global
// position equals the number of events appended to mire.
type HeadCheck struct {
	EventsAppended int64 `json:"events_appended"`
	Head           int64 `json:"head"`
	OK             bool  `json:"ok"`
}

// Row is one scenario measured on one system.
type Row struct {
	Scenario     string   `json:"scenario"`
	Writers      int      `json:"writers"`
	System       string   `json:"system"`
	Variant      string   `json:"variant,omitempty"`      // the runner scenarios: the runner's settings
	EventsPerSec float64  `json:"events_per_sec"`         // median of the rounds
	RatioToRaw   *float64 `json:"ratio_to_raw,omitempty"` // absent for a scenario without a baseline
	// RatioToRawIndex compares mire's rows of the append scenarios with
	// raw+index: raw's appends into a table with the version index.
	RatioToRawIndex *float64 `json:"ratio_to_raw_index,omitempty"`
	Note            string   `json:"note,omitempty"` // what a scenario without a baseline measures
	OpsPerSec       float64  `json:"ops_per_sec"`    // appends, reads, loads or saves: events_per_sec / events_per_op

	EventsPerOp       int       `json:"events_per_op"`
	Samples           []float64 `json:"samples_events_per_sec"` // in the order measured
	StatementsPerOp   float64   `json:"statements_per_op"`
	WALBytesPerEvent  float64   `json:"wal_bytes_per_event"`               // whole server, sequencing included
	ServerCPUPerEvent *float64  `json:"server_cpu_us_per_event,omitempty"` // the run's backends; only for a local server
	ClientCPUPerEvent float64   `json:"client_cpu_us_per_event"`           // this process
	CatchUpMillis     float64   `json:"sequencer_catch_up_ms,omitempty"`   // worst round

	LatencyMillis *Latency     `json:"latency_ms,omitempty"`  // latency: over every event of every round; saga: over every step
	Takeover      *Takeover    `json:"takeover_ms,omitempty"` // failover
	Saga          *SagaFigures `json:"saga,omitempty"`
}

// Latency is the distribution of the latency scenario's per-event
// latencies, in milliseconds: from an append's return to the runner's
// handler call.
type Latency struct {
	Events int     `json:"events"`
	P50    float64 `json:"p50"`
	P90    float64 `json:"p90"`
	P99    float64 `json:"p99"`
	Max    float64 `json:"max"`
}

func newLatency(ds []time.Duration) *Latency {
	if len(ds) == 0 {
		return &Latency{}
	}
	sorted := slices.Sorted(slices.Values(ds))
	// Nearest rank.
	at := func(p float64) float64 {
		i := max(int(math.Ceil(p*float64(len(sorted))))-1, 0)
		return round(millis(sorted[i]), 1)
	}
	return &Latency{Events: len(sorted), P50: at(0.5), P90: at(0.9), P99: at(0.99), Max: at(1)}
}

// Takeover is how long a standby runner took to handle its first event
// after the leader ended, in milliseconds, with the lease settings of both
// runners; Bound, for a kill, is LeaseTTL + RecheckInterval, within which
// the runner promises a takeover.
type Takeover struct {
	Median   float64   `json:"median"`
	Max      float64   `json:"max"`
	Samples  []float64 `json:"samples"` // in the order measured
	LeaseTTL float64   `json:"lease_ttl"`
	Recheck  float64   `json:"recheck_interval"`
	Bound    float64   `json:"bound,omitempty"`
}

// SagaFigures is what a saga row measures beyond its rate (ops_per_sec:
// completed sagas per second) and its step latency (latency_ms), over every
// saga of every round.
type SagaFigures struct {
	// Delivery is the first part of a step's latency: from the
	// participant's Reply returning to the awaiting step returning, its
	// consumption of the reply journaled.
	Delivery *Latency `json:"delivery_ms"`
	// Saga is a whole saga as its starter sees it: from Start to Result
	// returning.
	Saga *Latency `json:"saga_ms"`
	// ResultWait is from the last step journaled to Result returning: the
	// transaction that journals the outcome, and Result's polling.
	ResultWait *Latency `json:"result_wait_ms"`
	// RunsPerSaga counts executor runs (a claim until the saga waits or
	// ends; Metrics.Step), and RunMillis is their mean length.
	RunsPerSaga float64 `json:"runs_per_saga"`
	RunMillis   float64 `json:"run_ms"`
	// StatementsPerSaga is the statements sent while the starters ran, by
	// sqlc query name (or first word: begin, commit), per saga: the engine's, the
	// runner's (sequencer, subscriptions, leases) and the starters'.
	StatementsPerSaga map[string]float64 `json:"statements_per_saga"`
	// TransactionsPerSaga counts explicit transactions (BEGIN) per saga;
	// the statements outside them commit on their own.
	TransactionsPerSaga float64 `json:"transactions_per_saga"`
}

func newSagaFigures(samples []*sagaSample, sagas int64) *SagaFigures {
	if len(samples) == 0 || sagas == 0 {
		return nil
	}
	var delivery, whole, finish []time.Duration
	var runs int64
	var runTime time.Duration
	statements := map[string]int64{}
	for _, s := range samples {
		delivery = append(delivery, s.delivery...)
		whole = append(whole, s.sagas...)
		finish = append(finish, s.finish...)
		runs += s.runs
		runTime += s.runTime
		for label, n := range s.statements {
			statements[label] += n
		}
	}
	f := &SagaFigures{Delivery: newLatency(delivery), Saga: newLatency(whole), ResultWait: newLatency(finish),
		RunsPerSaga: round(float64(runs)/float64(sagas), 2), StatementsPerSaga: map[string]float64{}}
	if runs > 0 {
		f.RunMillis = round(millis(runTime)/float64(runs), 1)
	}
	for label, n := range statements {
		f.StatementsPerSaga[label] = round(float64(n)/float64(sagas), 2)
		if label == "begin" {
			f.TransactionsPerSaga = f.StatementsPerSaga[label]
		}
	}
	return f
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func ptr[T any](v T) *T { return &v }

const method = "each scenario runs rounds x (raw, mire), or (raw, mire, mire+snapshot) for load, or (raw, raw+index, mire) " +
	"for append_batch, or (raw, raw+index, mire, mire-ungrouped) for append and (raw, mire, mire-ungrouped) for " +
	"append_contended, mire-ungrouped being the same schema through a store with group commit off " +
	"(Config.SoloAppends -1; -ungrouped=false leaves it out), in ABBA order " +
	"(the order reversed every other round: AB, BA, BA, AB, ...), each for a fixed duration after an unmeasured " +
	"warm-up; events_per_sec is the median of the rounds, ratio_to_raw compares medians; load counts the " +
	"aggregate's events per load (events_per_op) whether replayed or restored from a snapshot, so its ratio is " +
	"the ratio of loads/s; mire appends and saves run with a store.Sequencer (20ms) and a measurement " +
	"ends only once every appended event has a global position; mire runs with its default store.Config, so " +
	"concurrent single-event appends are group-committed (Config.SoloAppends; -solo-appends -1 turns it off); " +
	"the runner scenarios run the projection runner as production does, with its own store.Sequencer and no other: " +
	"catchup times each catch-up of a runner on read_log's block from Runner.Start until WaitFor on the block's last " +
	"append returns (creating the subscription and stopping the runner untimed), as (raw, mire, mire+batch<N>); " +
	"latency and failover have no baseline and run on mire alone: latency reports percentiles over every event of " +
	"every round, failover one takeover per round, without warm-up; saga has no baseline either: starters run " +
	"three-step sagas one after another with the saga engine's and the runner's defaults, ops are completed sagas, " +
	"and latency_ms holds every step of every round"

const rawBaseline = "table with a bigserial primary key and no other index or constraint; one event: " +
	"INSERT ... VALUES autocommit; a batch: one INSERT ... SELECT FROM unnest(arrays) autocommit; " +
	"raw+index (append and append_batch only): the same inserts into a table that also has a unique " +
	"(stream_id, stream_version) index, the version gate an event store needs, its ratio_to_raw against raw; " +
	"mire's rows there also have ratio_to_raw_index, against raw+index; " +
	"reads: SELECT by stream_id ORDER BY stream_version on a copy of the table with a (stream_id, stream_version) " +
	"index, scanned into structs (metadata left as raw JSON, while mire decodes headers into a map); " +
	"load: one SELECT of stream_version, event_type, data from that table ordered by stream_version, each row " +
	"json.Unmarshal-ed into ItemAdded and folded into a Cart (mire: store.Load; mire+snapshot: store.LoadSnapshotted " +
	"from a snapshot at the last version); save: that load, then one INSERT ... VALUES of version last+1 into " +
	"that table, whose (stream_id, stream_version) index is unique as mire's is, two autocommit statements " +
	"(mire: store.LoadOrNew, Root.RecordEvent with the same headers, store.Save); " +
	"both systems JSON-encode the same Go values on every append and pass event ids to pgx as [16]byte, which it " +
	"encodes directly (a uuid.UUID would go through its driver.Valuer); catchup: read_log's query, one SELECT " +
	"of the block from event_log joined to events in position order, every row scanned (the runner also decodes " +
	"each event into an ItemAdded for its handler)"

// writeIndexedRatios prints the append rows' ratios to raw+index, if the
// run had any.
func writeIndexedRatios(w io.Writer, rows []Row) error {
	var parts []string
	for _, row := range rows {
		if row.RatioToRawIndex != nil {
			parts = append(parts, fmt.Sprintf("%s writers=%d %s %.2fx", row.Scenario, row.Writers, row.System, *row.RatioToRawIndex))
		}
	}
	if len(parts) == 0 {
		return nil
	}
	_, err := fmt.Fprintf(w, "\nvs raw+index (raw's inserts into a table with a unique (stream_id, stream_version) index): %s\n",
		strings.Join(parts, ", "))
	return err
}

// newMeta describes the run and the server.
func (h *harness) newMeta(ctx context.Context, o options, source string) (Meta, error) {
	m := Meta{
		Date:             time.Now().UTC().Format(time.RFC3339),
		GoVersion:        runtime.Version(),
		Platform:         runtime.GOOS + "/" + runtime.GOARCH,
		CPUs:             runtime.NumCPU(),
		PostgresSource:   source,
		PostgresSettings: map[string]string{},
		Rounds:           o.rounds,
		DurationSeconds:  o.duration.Seconds(),
		WarmupSeconds:    o.warmup.Seconds(),
		Method:           method,
		RawBaseline:      rawBaseline,
		StreamLength:     o.streamLength,
		SaveStreamLength: saveStreamLength,
		ReadEvents:       o.readEvents,
	}
	data, metadata, err := encode(newItems("cart-1000000", 0, 1)[0])
	if err != nil {
		return m, err
	}
	m.DataBytes, m.MetadataBytes = len(data), len(metadata)
	if err := h.admin.QueryRow(ctx, "SHOW server_version").Scan(&m.PostgresVersion); err != nil {
		return m, err
	}
	rows, err := h.admin.Query(ctx, `SELECT name, current_setting(name) FROM pg_settings
		WHERE name IN ('synchronous_commit', 'fsync', 'shared_buffers', 'wal_level', 'max_connections',
		               'full_page_writes', 'commit_delay', 'max_wal_size', 'checkpoint_timeout')`)
	if err != nil {
		return m, err
	}
	defer rows.Close()
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			return m, err
		}
		m.PostgresSettings[name] = value
	}
	return m, rows.Err()
}

// writeTable prints the report for people.
func writeTable(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tevents/op\twriters\tsystem\tevents/s\tvs raw\tops/s\tstmts/op\tWAL B/event\tserver CPU µs/event\tclient CPU µs/event\t")
	var runnerRows []Row
	for _, row := range r.Rows {
		serverCPU := "n/a"
		if row.ServerCPUPerEvent != nil {
			serverCPU = fmt.Sprintf("%.1f", *row.ServerCPUPerEvent)
		}
		ratio := "n/a"
		if row.RatioToRaw != nil {
			ratio = fmt.Sprintf("%.2fx", *row.RatioToRaw)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%.2f\t%s\t%s\t%.1f\t\n", row.Scenario, row.EventsPerOp, row.Writers,
			row.System, thousands(row.EventsPerSec), ratio, formatRate(row.OpsPerSec), row.StatementsPerOp,
			thousands(row.WALBytesPerEvent), serverCPU, row.ClientCPUPerEvent)
		if (row.LatencyMillis != nil || row.Takeover != nil) && row.Saga == nil {
			runnerRows = append(runnerRows, row)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := writeIndexedRatios(w, r.Rows); err != nil {
		return err
	}
	if err := writeRunnerTable(w, runnerRows); err != nil {
		return err
	}
	if err := writeSagaTable(w, r.Rows); err != nil {
		return err
	}
	m := r.Meta
	fmt.Fprintf(w, "\nmedian of %d rounds of %s per system (ABBA order), %s warm-up; Go %s, %d CPUs, PostgreSQL %s\n",
		m.Rounds, time.Duration(m.DurationSeconds*float64(time.Second)), time.Duration(m.WarmupSeconds*float64(time.Second)),
		m.GoVersion, m.CPUs, m.PostgresVersion)
	if c := m.HeadCheck; c != nil {
		var catchUp float64
		for _, row := range r.Rows {
			catchUp = max(catchUp, row.CatchUpMillis)
		}
		fmt.Fprintf(w, "sequencer check: head %s, events appended to mire %s: ok=%t; positions lagged the last append by at most %.0fms\n",
			thousands(float64(c.Head)), thousands(float64(c.EventsAppended)), c.OK, catchUp)
	}
	_, err := fmt.Fprintf(w, "ops/s: appends, reads, loads or saves per second; stmts/op: statements the workload sent; "+
		"WAL: the whole server's; server CPU: the run's backends, sequencer included\n"+
		"load: events/op is the aggregate's length, replayed or restored from a snapshot, so events/s = %s x loads/s; "+
		"save: load + record + save, a new aggregate every %d saves\n", thousands(float64(m.ReadEvents)), m.SaveStreamLength)
	return err
}

// writeRunnerTable prints what the latency and failover rows measure
// beyond throughput.
func writeRunnerTable(w io.Writer, rows []Row) error {
	if len(rows) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "runner\tsettings\tevents\tp50 ms\tp90 ms\tp99 ms\tmax ms\ttakeover ms: median\tmax\tbound (TTL + recheck)\t")
	for _, row := range rows {
		if l := row.LatencyMillis; l != nil {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t\t\t\t\n", row.Scenario, row.Variant, thousands(float64(l.Events)),
				l.P50, l.P90, l.P99, l.Max)
		}
		if t := row.Takeover; t != nil {
			bound := "-"
			if t.Bound > 0 {
				bound = thousands(t.Bound)
			}
			fmt.Fprintf(tw, "%s\t%s\t\t\t\t\t\t%s\t%s\t%s\t\n", row.Scenario, row.Variant, formatRate(t.Median), formatRate(t.Max), bound)
		}
	}
	return tw.Flush()
}

// writeSagaTable prints what the saga rows measure beyond throughput, and
// where their statements go.
func writeSagaTable(w io.Writer, rows []Row) error {
	rows = slices.DeleteFunc(slices.Clone(rows), func(r Row) bool { return r.Saga == nil || r.LatencyMillis == nil })
	if len(rows) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "saga\tstarters\tsagas/s\tstep p50 ms\tp99 ms\tdelivery p50 ms\tp99 ms\tsaga p50 ms\tp99 ms\t"+
		"result wait p50 ms\truns/saga\trun ms\tstmts/saga\ttx/saga\t")
	for _, row := range rows {
		l, f := row.LatencyMillis, row.Saga
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.2f\t%.1f\t%.1f\t%.1f\t\n", row.Scenario,
			row.Writers, formatRate(row.OpsPerSec), l.P50, l.P99, f.Delivery.P50, f.Delivery.P99, f.Saga.P50, f.Saga.P99,
			f.ResultWait.P50, f.RunsPerSaga, f.RunMillis, row.StatementsPerOp, f.TransactionsPerSaga)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, row := range rows {
		per := row.Saga.StatementsPerSaga
		labels := slices.SortedFunc(maps.Keys(per), func(a, b string) int {
			return cmp.Or(cmp.Compare(per[b], per[a]), cmp.Compare(a, b))
		})
		parts := make([]string, len(labels))
		for i, label := range labels {
			parts[i] = fmt.Sprintf("%s %.2f", label, per[label])
		}
		if _, err := fmt.Fprintf(w, "statements per saga, %d starters: %s\n", row.Writers, strings.Join(parts, ", ")); err != nil {
			return err
		}
	}
	return nil
}

// formatRate formats a rate with one decimal below 100, else like thousands.
func formatRate(x float64) string {
	if x < 100 {
		return fmt.Sprintf("%.1f", x)
	}
	return thousands(x)
}

// writeJSON writes the report to path.
func writeJSON(path string, r *Report) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sorted := slices.Sorted(slices.Values(xs))
	mid := len(sorted) / 2
	if len(sorted)%2 == 1 {
		return sorted[mid]
	}
	return (sorted[mid-1] + sorted[mid]) / 2
}

func round(x float64, decimals int) float64 {
	scale := math.Pow10(decimals)
	return math.Round(x*scale) / scale
}

// thousands formats x rounded to an integer with comma separators.
func thousands(x float64) string {
	s := fmt.Sprintf("%d", int64(math.Round(x)))
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
