// Command bench measures mire against a raw-pgx baseline on the same
// PostgreSQL server in the same run, and writes a table to stdout and, with
// -out, the results to a JSON file.
//
//	go run ./bench                      # from the repository root, about 4 minutes
//	go run ./bench -quick               # a sanity check, about 30 seconds
//	go run ./bench -out bench/results.json  # record the committed results (make bench-record)
//	go run ./bench -writers 1,4,16 -rounds 5 -duration 5s
//	go test -bench . ./bench/...        # the same scenarios as Go benchmarks
//
// Scenarios, each run on mire and on the baseline:
//
//   - append: one event per append; each writer appends to streams of its
//     own with exact expected versions (a new stream every -stream-length
//     events), once per -writers entry.
//   - append_batch: -batch events per append, once per -batch-writers entry.
//   - read_stream: read a stream of -read-events events, oldest first.
//   - append_contended: writers sharing streams (16 on 4, 64 on 1), each
//     appending at the version it last saw and re-reading it after a
//     conflict.
//   - read_log: catch up on -log-events events of the whole log from a
//     position on; read_category: on the half of them in one category.
//     Both against one raw query over the same rows of mire's tables.
//   - load: rebuild a Cart aggregate from that stream: mire with store.Load,
//     and as mire+snapshot with store.LoadSnapshotted from a snapshot at
//     the stream's last version (written at setup), so replaying nothing.
//     Its events/s is -read-events times loads/s for all three systems.
//   - save: a command's full cycle per operation: load a Cart, record one
//     event, save it with optimistic concurrency (mire: store.LoadOrNew,
//     Root.RecordEvent, store.Save); each writer saves to carts of its own,
//     a new one every 100 saves, once per -save-writers entry.
//   - catchup: the projection runner (github.com/mire-go/mire/runner)
//     catching up on read_log's block: a subscription over the whole log,
//     its checkpoint just before the block, with a no-op TxHandler, timed
//     from Runner.Start until WaitFor on the block's last append returns;
//     with the default BatchSize and, as mire+batch<N>, with -catchup-batch.
//     Against read_log's raw query over the same rows.
//   - latency: -latency-writers writers append one event at a time, pacing
//     -latency-rate events/s in all, for -duration, while a runner with
//     default settings handles them (an EventHandler); each event's latency
//     is from its append's return to the handler's call. No baseline.
//   - failover: two runners, each on a pool of its own, lead one
//     subscription under the latency scenario's appends; the leader is
//     killed (its sessions terminated with pg_terminate_backend, its pool
//     refusing connections, so it neither renews nor releases its lease),
//     or stopped (Runner.Stop, which releases it), and the takeover is the
//     time until the standby handles its first event. With -failover-ttl
//     and -failover-recheck, and -failover-default-rounds times with the
//     runner's defaults. No baseline.
//   - saga: the saga engine (github.com/mire-go/mire/saga) running a
//     three-step order saga (reserve stock, take payment, confirm) with
//     in-process participants, runner subscriptions replying with
//     saga.Reply; once per -saga-starters entry, each starter starting a
//     saga and waiting for its Result before the next. Reports sagas/s
//     (ops/s), the step latency (a participant's Reply returning to the
//     saga's next step journaled) and statements per saga by query. Engine
//     and runner defaults; -saga-sequencer-interval replaces the runner's
//     sequencer by a faster one. No baseline.
//
// The baseline inserts into a table with a bigserial primary key and no
// other index, in autocommit: one event with INSERT ... VALUES, a batch with
// one INSERT ... SELECT FROM unnest(...). Its reads select the stream's rows
// ordered by version and scan them into structs. Its loads select the
// rows' versions, types and data, json.Unmarshal each into an ItemAdded and
// fold it into a Cart; its saves are such a load followed by an INSERT of
// the next version, against a unique (stream_id, stream_version) index.
//
// Each scenario runs -rounds rounds; a round measures both systems for
// -duration, reversing their order every other round (raw mire, mire raw,
// mire raw, raw mire, ...) so that drift on the server hits all alike, and
// the report gives the median of the rounds (latency: percentiles over
// every event of every round). Appends and saves to mire run
// with a store.Sequencer assigning global
// positions every 20ms, as in production (the runner scenarios run the
// runner's own, as production does); every measurement waits until all
// appended events have a position, and the run ends by checking that the
// log's head equals the number of events appended.
//
// Besides events/s and the ratio to raw, the report gives statements sent
// per operation (round trips), WAL bytes per event (the whole server's),
// and CPU time per event of this process and, when PostgreSQL runs on this
// machine, of the backends serving the run: CPU per event shows where the
// cost is, and is much less disturbed by other load than throughput.
//
// PostgreSQL is found with pgenv.Find (DATABASE_URL, localhost:5432, or a
// Docker container). The run uses two fresh schemas, mire_bench_<random> and
// mire_bench_<random>_raw, and drops them at the end.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mire-go/mire/integration/pgenv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() (err error) {
	o := options{
		writers:      []int{1, 16},
		batchWriters: []int{1, 4},
		saveWriters:  []int{1, 16},
		// 16 writers on 4 streams, and 64 on one.
		contendedWriters: []int{16, 64},
		contendedStreams: []int{4, 1},
		scenarios:        slices.Clone(scenarios),
		sagaStarters:     []int{1, 16},
	}
	runnerLog := false
	flag.DurationVar(&o.duration, "duration", 2500*time.Millisecond, "how long each measurement runs")
	flag.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "unmeasured warm-up per scenario and system")
	flag.IntVar(&o.rounds, "rounds", 3, "measurements per scenario and system; the median is reported")
	flag.Var((*intList)(&o.writers), "writers", "comma-separated writer counts for the append scenario")
	flag.Var((*intList)(&o.batchWriters), "batch-writers", "comma-separated writer counts for the batch scenario")
	flag.Var((*intList)(&o.saveWriters), "save-writers", "comma-separated writer counts for the save scenario")
	flag.IntVar(&o.batchSize, "batch", 100, "events per append in the batch scenario")
	flag.IntVar(&o.readEvents, "read-events", 10_000, "length of the stream the read and load scenarios read")
	flag.Var((*intList)(&o.contendedWriters), "contended-writers", "comma-separated writer counts for append_contended")
	flag.Var((*intList)(&o.contendedStreams), "contended-streams", "comma-separated stream counts for append_contended, one per writer count")
	flag.IntVar(&o.logEvents, "log-events", 100_000, "events the read_log scenario reads from a position on and catchup catches up on; read_category reads half of them")
	flag.IntVar(&o.streamLength, "stream-length", 1000, "events a writer appends to a stream before starting a new one")
	flag.Var((*stringList)(&o.scenarios), "scenarios", "comma-separated scenarios to run: "+strings.Join(scenarios, ", "))
	flag.IntVar(&o.catchUpBatch, "catchup-batch", 1000, "runner BatchSize of catchup's second mire row, beside the default's; 0 for none")
	flag.IntVar(&o.latencyWriters, "latency-writers", 16, "writers appending during the latency and failover scenarios")
	flag.IntVar(&o.latencyRate, "latency-rate", 2000, "events/s those writers append in all")
	flag.DurationVar(&o.failoverTTL, "failover-ttl", 2*time.Second, "runner LeaseTTL in the failover scenario")
	flag.DurationVar(&o.failoverRecheck, "failover-recheck", 200*time.Millisecond, "runner RecheckInterval in the failover scenario")
	flag.IntVar(&o.failoverDefaultRounds, "failover-default-rounds", 1,
		"rounds of the failover scenario with the runner's default LeaseTTL and RecheckInterval (a kill takes 13-17s); 0 for none")
	flag.Var((*intList)(&o.sagaStarters), "saga-starters", "comma-separated starter counts for the saga scenario")
	flag.DurationVar(&o.sagaSequencer, "saga-sequencer-interval", 0,
		"run the saga scenario's runner with NoSequencer beside a store.Sequencer at this interval; 0 for the runner's own")
	flag.BoolVar(&runnerLog, "runner-log", false, "log the runners' and saga engines' diagnostics to stderr")
	flag.DurationVar(&sequencerInterval, "sequencer-interval", sequencerInterval, "interval of the sequencer running beside mire's appends and saves")
	flag.IntVar(&soloAppends, "solo-appends", 0, "mire's Config.SoloAppends: 0 for the default, -1 to turn group commit off")
	flag.BoolVar(&compareUngrouped, "ungrouped", compareUngrouped,
		"also run append and append_contended on mire with group commit off (mire-ungrouped), in the same run")
	quick := flag.Bool("quick", false,
		"a short sanity run (about 30s): -rounds 1 -duration 750ms -warmup 150ms -failover-default-rounds 0 (unless given)")
	// Only when asked: bench/results.json is committed, and a sanity run
	// must not overwrite it.
	out := flag.String("out", "", "where to write the JSON results (make bench-record: bench/results.json); empty for nowhere")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of this process to `file`")
	flag.Parse()
	if *quick {
		o.rounds, o.duration, o.warmup = 1, 750*time.Millisecond, 150*time.Millisecond
		if !flagGiven("failover-default-rounds") {
			o.failoverDefaultRounds = 0
		}
	}
	if runnerLog {
		runnerLogger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if err := o.validate(); err != nil {
		return err
	}
	if *out != "" {
		// Fail now rather than after the run.
		if _, err := os.Stat(filepath.Dir(*out)); err != nil {
			return fmt.Errorf("-out %s: %w (run from the repository root, or set -out)", *out, err)
		}
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	env, err := pgenv.Find(ctx)
	if err != nil {
		return err
	}
	defer env.Close()
	fmt.Fprintf(os.Stderr, "using PostgreSQL from %s\n", env.Source)

	mireSchema, rawSchema := newSchemaNames()
	maxWriters := slices.Max(o.allWriters())
	h, err := newHarness(ctx, env.URL, int32(maxWriters), mireSchema, rawSchema)
	if err != nil {
		return err
	}
	defer h.close()
	defer func() {
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		err = errors.Join(err, h.drop(cleanup))
	}()
	fmt.Fprintf(os.Stderr, "schemas %s and %s (dropped at the end)\n", mireSchema, rawSchema)

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, f.Close()) }()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	start := time.Now()
	report := &Report{}
	if report.Meta, err = h.newMeta(ctx, o, env.Source); err != nil {
		return err
	}
	if report.Rows, err = h.run(ctx, o, os.Stderr); err != nil {
		return err
	}
	if report.Meta.HeadCheck, err = h.headCheck(ctx); err != nil {
		return err
	}
	report.Meta.TotalSeconds = round(time.Since(start).Seconds(), 1)

	fmt.Println()
	if err := writeTable(os.Stdout, report); err != nil {
		return err
	}
	if *out != "" {
		if err := writeJSON(*out, report); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "wrote %s\n", *out)
	}
	if !report.Meta.HeadCheck.OK {
		return fmt.Errorf("sequencer check failed: head %d, %d events appended",
			report.Meta.HeadCheck.Head, report.Meta.HeadCheck.EventsAppended)
	}
	return nil
}

// headCheck waits for the sequencer's last positions and compares the log's
// head with the number of events appended to mire.
func (h *harness) headCheck(ctx context.Context) (*HeadCheck, error) {
	if _, err := h.sequencing.Sequence(ctx); err != nil {
		return nil, err
	}
	head, err := h.sequencing.Head(ctx)
	if err != nil {
		return nil, err
	}
	appended := h.mire.appended.Load()
	return &HeadCheck{EventsAppended: appended, Head: head, OK: head == appended}, nil
}

// flagGiven reports whether the flag name was given on the command line.
func flagGiven(name string) bool {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// intList is a flag of comma-separated integers.
type intList []int

func (l *intList) String() string {
	s := make([]string, len(*l))
	for i, n := range *l {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func (l *intList) Set(value string) error {
	*l = nil
	for _, field := range strings.Split(value, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil {
			return err
		}
		*l = append(*l, n)
	}
	return nil
}

// stringList is a flag of comma-separated words.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(value string) error {
	*l = strings.Split(value, ",")
	return nil
}
