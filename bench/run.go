package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
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
	return slices.Concat(o.writers, o.batchWriters, o.saveWriters, o.contendedWriters)
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
	return specs
}

// run measures every scenario of o on its systems and returns the rows,
// logging progress to progress.
func (h *harness) run(ctx context.Context, o options, progress io.Writer) ([]Row, error) {
	var rows []Row
	for _, sc := range o.specs() {
		systems := h.systems(sc)
		if o.warmup > 0 {
			for _, sys := range systems {
				if _, err := h.measure(ctx, sys, sc, &budget{deadline: time.Now().Add(o.warmup)}); err != nil {
					return nil, err
				}
			}
		}
		samples := map[string][]sample{}
		order := slices.Clone(systems)
		for round := range o.rounds {
			// ABBA: reversing every other round gives the orders AB, BA,
			// BA, AB, ... (ABC, CBA, CBA, ABC, ... for three systems).
			if round%2 == 1 {
				slices.Reverse(order)
			}
			for _, sys := range order {
				s, err := h.measure(ctx, sys, sc, &budget{deadline: time.Now().Add(o.duration)})
				if err != nil {
					return nil, err
				}
				samples[sys.name()] = append(samples[sys.name()], s)
				fmt.Fprintf(progress, "%-45v round %d/%d  %-13s %12s events/s\n",
					sc, round+1, o.rounds, sys.name(), thousands(s.eventsPerSec()))
			}
		}
		raw := newRow(sc, systems[0].name(), samples[systems[0].name()], 0)
		rows = append(rows, raw)
		for _, sys := range systems[1:] {
			rows = append(rows, newRow(sc, sys.name(), samples[sys.name()], raw.EventsPerSec))
		}
	}
	return rows, nil
}

// newRow summarizes the samples of one system; rawRate is the baseline's
// median, 0 for the baseline itself.
func newRow(sc spec, system string, samples []sample, rawRate float64) Row {
	row := Row{Scenario: sc.scenario, Writers: sc.writers, System: system, EventsPerOp: sc.batch}
	var total sample
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
	}
	row.EventsPerSec = round(median(row.Samples), 1)
	row.OpsPerSec = round(row.EventsPerSec/float64(sc.batch), 1)
	row.RatioToRaw = 1
	if rawRate > 0 {
		row.RatioToRaw = round(row.EventsPerSec/rawRate, 3)
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
