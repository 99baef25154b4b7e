package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/mire-go/mire/runner"
)

// options are what a run measures and for how long.
type options struct {
	duration     time.Duration // per measurement
	warmup       time.Duration // per system and scenario, unmeasured
	rounds       int
	writers      []int // writer counts of the single-event append scenario
	batchWriters []int // writer counts of the batch append scenario
	saveWriters  []int // writer counts of the save scenario
	batchSize    int
	readEvents   int // length of the stream read and load scenarios read
	logEvents    int // events of the block the read_log scenario reads (read_category reads half)
	// contendedWriters[i] writers share contendedStreams[i] streams.
	contendedWriters, contendedStreams []int
	streamLength                       int
	scenarios                          []string // some of scenarios

	// The runner scenarios: catchup's tuned BatchSize (0: the default
	// only); latency's and failover's writers and their events/s in all;
	// failover's LeaseTTL and RecheckInterval, and its rounds with the
	// runner's defaults (0: none).
	catchUpBatch                 int
	latencyWriters, latencyRate  int
	failoverTTL, failoverRecheck time.Duration
	failoverDefaultRounds        int

	// sagaStarters are the starter counts of the saga scenario;
	// sagaSequencer, when not 0, replaces the runner's sequencer (at the
	// store's default interval) by a store.Sequencer at this interval.
	sagaStarters  []int
	sagaSequencer time.Duration
}

// validate reports options that cannot run, naming the flag.
func (o options) validate() error {
	switch {
	case o.duration <= 0:
		return errors.New("-duration must be positive")
	case o.rounds < 1:
		return errors.New("-rounds must be at least 1")
	case len(o.writers) == 0 || len(o.batchWriters) == 0 || len(o.saveWriters) == 0:
		return errors.New("-writers, -batch-writers and -save-writers need at least one count")
	case len(o.contendedWriters) != len(o.contendedStreams) || slices.Contains(o.contendedStreams, 0):
		return fmt.Errorf("-contended-writers and -contended-streams: %v and %v: want as many of each, streams > 0", o.contendedWriters, o.contendedStreams)
	case o.logEvents < 200 || o.logEvents%200 != 0:
		return fmt.Errorf("-log-events: %d is not a positive multiple of 200", o.logEvents)
	case o.batchSize < 1 || o.readEvents < 1:
		return errors.New("-batch and -read-events must be positive")
	case o.streamLength < o.batchSize:
		return errors.New("-stream-length must be at least -batch")
	case o.catchUpBatch < 0 || o.catchUpBatch > runner.MaxBatchSize:
		return fmt.Errorf("-catchup-batch: %d: want 0 to %d", o.catchUpBatch, runner.MaxBatchSize)
	case o.latencyRate < 1:
		return errors.New("-latency-rate must be positive")
	case o.failoverTTL < 300*time.Millisecond || o.failoverRecheck <= 0:
		return errors.New("-failover-ttl must be at least 300ms, and -failover-recheck positive")
	case o.failoverDefaultRounds < 0:
		return errors.New("-failover-default-rounds must not be negative")
	case slices.Contains(o.scenarios, scenarioSaga) && len(o.sagaStarters) == 0:
		return errors.New("-saga-starters needs at least one count")
	case o.sagaSequencer < 0:
		return errors.New("-saga-sequencer-interval must not be negative")
	}
	for _, n := range o.sagaStarters {
		if n < 1 {
			return fmt.Errorf("-saga-starters: %d: must be positive", n)
		}
	}
	for _, w := range o.allWriters() {
		if w < 1 {
			return fmt.Errorf("writer count %d: must be positive", w)
		}
	}
	for _, s := range o.scenarios {
		if !slices.Contains(scenarios, s) {
			return fmt.Errorf("-scenarios: unknown scenario %q", s)
		}
	}
	return nil
}

// allWriters returns every writer count of o.
func (o options) allWriters() []int {
	return slices.Concat(o.writers, o.batchWriters, o.saveWriters, o.contendedWriters, []int{o.latencyWriters})
}

// specs returns the scenarios o selects, in the order they run.
func (o options) specs() []spec {
	var specs []spec
	add := func(scenario string, writers []int, batch, streamLength int) {
		if !slices.Contains(o.scenarios, scenario) {
			return
		}
		for _, w := range writers {
			specs = append(specs, spec{scenario: scenario, writers: w, batch: batch, streamLength: streamLength})
		}
	}
	add(scenarioAppend, o.writers, 1, o.streamLength)
	add(scenarioBatch, o.batchWriters, o.batchSize, o.streamLength)
	if slices.Contains(o.scenarios, scenarioContended) {
		for i, w := range o.contendedWriters {
			specs = append(specs, spec{scenario: scenarioContended, writers: w, batch: 1, streams: o.contendedStreams[i]})
		}
	}
	add(scenarioRead, []int{1}, o.readEvents, 0)
	add(scenarioLoad, []int{1}, o.readEvents, 0)
	add(scenarioSave, o.saveWriters, 1, saveStreamLength)
	add(scenarioReadLog, []int{1}, o.logEvents, 0)
	add(scenarioReadCategory, []int{1}, o.logEvents/2, 0)
	if slices.Contains(o.scenarios, scenarioCatchUp) {
		batch := o.catchUpBatch
		if batch == runner.BatchSizeDefault {
			batch = 0 // the default is measured anyway
		}
		specs = append(specs, spec{scenario: scenarioCatchUp, writers: 1, batch: o.logEvents, runnerBatch: batch})
	}
	if slices.Contains(o.scenarios, scenarioLatency) {
		specs = append(specs, spec{scenario: scenarioLatency, writers: o.latencyWriters, batch: 1, streamLength: o.streamLength,
			rate: o.latencyRate})
	}
	if slices.Contains(o.scenarios, scenarioFailover) {
		add := func(f failover, rounds int) {
			specs = append(specs, spec{scenario: scenarioFailover, writers: o.latencyWriters, batch: 1, streamLength: o.streamLength,
				rate: o.latencyRate, failover: f, rounds: rounds})
		}
		for _, kill := range []bool{true, false} {
			add(failover{kill: kill, ttl: o.failoverTTL, recheck: o.failoverRecheck}, 0)
		}
		if o.failoverDefaultRounds > 0 {
			for _, kill := range []bool{true, false} {
				add(failover{kill: kill}, o.failoverDefaultRounds)
			}
		}
	}
	if slices.Contains(o.scenarios, scenarioSaga) {
		for _, n := range o.sagaStarters {
			specs = append(specs, spec{scenario: scenarioSaga, writers: n, batch: sagaEvents, sagaSequencer: o.sagaSequencer})
		}
	}
	return specs
}

// run measures every scenario of o on its systems and returns the rows,
// logging progress to progress.
func (h *harness) run(ctx context.Context, o options, progress io.Writer) ([]Row, error) {
	var rows []Row
	if slices.Contains(o.scenarios, scenarioSaga) {
		if err := h.openSagaPool(ctx, slices.Max(o.sagaStarters)); err != nil {
			return nil, err
		}
	}
	for _, sc := range o.specs() {
		systems := h.systems(sc)
		rounds := cmp.Or(sc.rounds, o.rounds)
		// A failover is no throughput to warm up for, and takes seconds.
		if o.warmup > 0 && sc.scenario != scenarioFailover {
			for _, sys := range systems {
				if _, err := h.measure(ctx, sys, sc, &budget{duration: o.warmup}); err != nil {
					return nil, err
				}
			}
		}
		samples := map[string][]sample{}
		order := slices.Clone(systems)
		for round := range rounds {
			// ABBA: reversing every other round gives the orders AB, BA,
			// BA, AB, ... (ABC, CBA, CBA, ABC, ... for three systems).
			if round%2 == 1 {
				slices.Reverse(order)
			}
			for _, sys := range order {
				s, err := h.measure(ctx, sys, sc, &budget{duration: o.duration})
				if err != nil {
					return nil, err
				}
				samples[sys.name()] = append(samples[sys.name()], s)
				fmt.Fprintf(progress, "%-45v round %d/%d  %-13s %12s events/s%s\n",
					sc, round+1, rounds, sys.name(), thousands(s.eventsPerSec()), s.runnerFigures())
			}
		}
		if _, ok := systems[0].(*rawSystem); !ok {
			for _, sys := range systems {
				rows = append(rows, newRow(sc, sys.name(), samples[sys.name()], -1))
			}
			continue
		}
		raw := newRow(sc, systems[0].name(), samples[systems[0].name()], 0)
		rows = append(rows, raw)
		var indexed *Row // raw+index, in the append scenarios
		for _, sys := range systems[1:] {
			row := newRow(sc, sys.name(), samples[sys.name()], raw.EventsPerSec)
			if _, ok := sys.(*rawIndexedSystem); ok {
				indexed = &row
			} else if indexed != nil {
				row.RatioToRawIndex = ptr(round(row.EventsPerSec/indexed.EventsPerSec, 3))
			}
			rows = append(rows, row)
		}
	}
	return rows, nil
}

// runnerFigures is what progress shows of a runner scenario's sample
// beyond events/s.
func (s sample) runnerFigures() string {
	switch {
	case s.saga != nil:
		l := newLatency(s.latencies)
		return fmt.Sprintf("  %.1f sagas/s, step p50 %.1fms p99 %.1fms", float64(s.ops)/s.elapsed.Seconds(), l.P50, l.P99)
	case len(s.latencies) > 0:
		l := newLatency(s.latencies)
		return fmt.Sprintf("  latency p50 %.1fms p99 %.1fms max %.1fms", l.P50, l.P99, l.Max)
	case s.takeover > 0:
		return fmt.Sprintf("  takeover %.0fms", millis(s.takeover))
	}
	return ""
}

// newRow summarizes the samples of one system; rawRate is the baseline's
// median, 0 for the baseline itself, -1 for a scenario without one.
func newRow(sc spec, system string, samples []sample, rawRate float64) Row {
	row := Row{Scenario: sc.scenario, Writers: sc.writers, System: system, EventsPerOp: sc.batch}
	var total sample
	var takeovers []float64
	var sagas []*sagaSample
	serverCPU := true // measurable in every round
	for _, s := range samples {
		row.Samples = append(row.Samples, round(s.eventsPerSec(), 1))
		total.events += s.events
		total.ops += s.ops
		total.statements += s.statements
		total.walBytes += s.walBytes
		total.clientCPU += s.clientCPU
		total.serverCPU += s.serverCPU
		serverCPU = serverCPU && s.serverCPU >= 0
		total.catchUp = max(total.catchUp, s.catchUp)
		total.latencies = append(total.latencies, s.latencies...)
		if sc.scenario == scenarioFailover {
			takeovers = append(takeovers, round(millis(s.takeover), 1))
		}
		if s.saga != nil {
			sagas = append(sagas, s.saga)
		}
	}
	row.EventsPerSec = round(median(row.Samples), 1)
	row.OpsPerSec = round(row.EventsPerSec/float64(sc.batch), 1)
	switch {
	case rawRate == 0:
		row.RatioToRaw = ptr(1.0)
	case rawRate > 0:
		row.RatioToRaw = ptr(round(row.EventsPerSec/rawRate, 3))
	}
	switch sc.scenario {
	case scenarioCatchUp:
		batch := sc.runnerBatch // mire+batch<runnerBatch>
		if system == "mire" {
			batch = runner.BatchSizeDefault
		}
		if system != "raw" {
			row.Variant = fmt.Sprintf("BatchSize %d, other runner settings default; a no-op TxHandler", batch)
		}
	case scenarioLatency:
		row.Variant = fmt.Sprintf("%d writers pacing %d events/s in all; runner defaults; an EventHandler", sc.writers, sc.rate)
		row.Note = "no raw baseline: the time from an append's return to the runner's handler call, per event"
		if len(total.latencies) > 0 {
			row.LatencyMillis = newLatency(total.latencies)
		}
	case scenarioFailover:
		ttl, recheck := sc.failover.settings()
		row.Variant = sc.failover.String()
		row.Note = fmt.Sprintf("no raw baseline: the time from the leader's %s to the standby's first handled event, "+
			"under %d writers pacing %d events/s in all", sc.failover.how(), sc.writers, sc.rate)
		t := &Takeover{Samples: takeovers, Median: round(median(takeovers), 1), Max: slices.Max(takeovers),
			LeaseTTL: millis(ttl), Recheck: millis(recheck)}
		if sc.failover.kill {
			t.Bound = millis(ttl + recheck)
		}
		row.Takeover = t
	case scenarioSaga:
		row.Variant = fmt.Sprintf("%d starters, each starting a saga and waiting for its Result; saga engine and runner defaults", sc.writers)
		if sc.sagaSequencer > 0 {
			row.Variant += fmt.Sprintf(", but the runner's sequencer replaced by a store.Sequencer at %v", sc.sagaSequencer)
		}
		row.Note = sagaNote
		if len(total.latencies) > 0 {
			row.LatencyMillis = newLatency(total.latencies)
		}
		row.Saga = newSagaFigures(sagas, total.ops)
	}
	if total.ops > 0 {
		row.StatementsPerOp = round(float64(total.statements)/float64(total.ops), 2)
	}
	if total.events > 0 {
		row.WALBytesPerEvent = round(float64(total.walBytes)/float64(total.events), 0)
		perEvent := func(d time.Duration) float64 { return round(float64(d.Microseconds())/float64(total.events), 1) }
		row.ClientCPUPerEvent = perEvent(total.clientCPU)
		if serverCPU {
			cpu := perEvent(total.serverCPU)
			row.ServerCPUPerEvent = &cpu
		}
	}
	row.CatchUpMillis = round(total.catchUp.Seconds()*1000, 1)
	return row
}
