package integration_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

// Goroutines inherit the pprof labels of the goroutine that starts them, so
// the goroutines a test's components start carry the test's label, and
// can be counted while other tests run in parallel.
const goroutineLabel = "mire_test"

// labelled runs f with the test's goroutine label.
func labelled(t *testing.T, f func(ctx context.Context)) {
	t.Helper()
	pprof.Do(context.Background(), pprof.Labels(goroutineLabel, t.Name()), f)
}

// labelledGoroutines counts the live goroutines carrying t's label, and
// returns their stacks.
func labelledGoroutines(t *testing.T) (int, string) {
	t.Helper()
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
		t.Fatal(err)
	}
	want := strconv.Quote(goroutineLabel) + ":" + strconv.Quote(t.Name())
	var (
		total, count int
		stacks       strings.Builder
		inMatch      bool
	)
	scanner := bufio.NewScanner(&buf)
	scanner.Buffer(nil, 1<<20)
	for scanner.Scan() {
		line := scanner.Text()
		if n, _, ok := strings.Cut(line, " @ "); ok {
			count, _ = strconv.Atoi(n)
			inMatch = false
			continue
		}
		if strings.HasPrefix(line, "# labels: ") && strings.Contains(line, want) {
			total += count
			inMatch = true
		}
		if inMatch {
			stacks.WriteString(line + "\n")
		}
	}
	return total, stacks.String()
}

// waitNoGoroutines fails t unless t's labelled goroutines are all gone
// within 10 seconds.
func waitNoGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, stacks := labelledGoroutines(t)
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left behind:\n%s", n, stacks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitHead waits until es's head is want.
func waitHead(t *testing.T, es *store.EventStore, want int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		head, err := es.Head(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if head == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("head %d after 20s, want %d", head, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func appendDeposits(t *testing.T, es *store.EventStore, n int) {
	t.Helper()
	for range n {
		if _, err := es.Append(context.Background(), "account-1", core.Any, core.NewEvent(Deposited{Amount: 1})); err != nil {
			t.Fatal(err)
		}
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// A Sequencer numbers events in the background; Stop waits for it and is
// idempotent; a stopped Sequencer numbers nothing, and starts again.
func TestSequencerLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry(), NoSequenceOnRead: true})
	sequencer, err := store.NewSequencer(es, &store.SequencerConfig{Interval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := sequencer.Stop(ctx); err != nil {
		t.Fatalf("Stop before Start: %v", err)
	}

	appendDeposits(t, es, 3)
	labelled(t, func(ctx context.Context) {
		if err := sequencer.Start(ctx); err != nil {
			t.Fatal(err)
		}
	})
	waitHead(t, es, 3)

	stopped := sequencer.Stopped()
	if isClosed(stopped) {
		t.Fatal("Stopped is closed while the Sequencer runs")
	}
	if err := sequencer.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if !isClosed(stopped) {
		t.Fatal("Stop returned before the Sequencer's goroutine did")
	}
	if err := sequencer.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	waitNoGoroutines(t)

	// Stopped: new events wait. Twenty intervals without a position.
	appendDeposits(t, es, 2)
	time.Sleep(100 * time.Millisecond)
	if head, err := es.Head(ctx); err != nil || head != 3 {
		t.Fatalf("head %d, %v while stopped; want 3", head, err)
	}

	labelled(t, func(ctx context.Context) {
		if err := sequencer.Start(ctx); err != nil {
			t.Fatal(err)
		}
	})
	waitHead(t, es, 5)
	if err := sequencer.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitNoGoroutines(t)
	assertGapless(t, readWholeLog(t, es))
}

func TestSequencerConfigValidation(t *testing.T) {
	t.Parallel()
	es := pgenv.NewStore(t, nil, nil)
	for _, tt := range []struct {
		field  string
		config store.SequencerConfig
	}{
		{"SequencerConfig.Interval", store.SequencerConfig{Interval: -1}},
		{"SequencerConfig.RunTimeout", store.SequencerConfig{RunTimeout: -time.Second}},
		{"SequencerConfig.MaxBackoff", store.SequencerConfig{MaxBackoff: -time.Second}},
	} {
		_, err := store.NewSequencer(es, &tt.config)
		assertInvalidInput(t, err, tt.field)
	}
	if _, err := store.NewSequencer(nil, nil); !errors.Is(err, core.ErrInvalidInput) {
		t.Fatalf("NewSequencer(nil): %v, want invalid input", err)
	}
}

// Many goroutines start and stop one Sequencer at once while events are
// appended: the log stays gapless, and the final Stop leaves no goroutine.
func TestSequencerStartStopStress(t *testing.T) {
	t.Parallel()
	const goroutines, rounds, appends = 8, 40, 60
	ctx := context.Background()
	es := pgenv.NewStore(t, pgenv.NewPool(t, 6), &store.Config{Registry: bankRegistry(), NoSequenceOnRead: true})
	sequencer, err := store.NewSequencer(es, &store.SequencerConfig{Interval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	labelled(t, func(ctx context.Context) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range appends {
				if _, err := es.Append(ctx, fmt.Sprintf("account-%d", i%5), core.Any, core.NewEvent(Deposited{Amount: 1})); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		for range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range rounds {
					switch rand.N(3) {
					case 0:
						if err := sequencer.Start(ctx); err != nil {
							t.Error(err)
						}
					case 1:
						if err := sequencer.Stop(ctx); err != nil {
							t.Error(err)
						}
					case 2:
						short, cancel := context.WithTimeout(ctx, time.Duration(rand.N(2000))*time.Microsecond)
						_ = sequencer.Stop(short)
						cancel()
					}
					time.Sleep(time.Duration(rand.N(1000)) * time.Microsecond)
				}
			}()
		}
	})
	wg.Wait()
	if err := sequencer.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if !isClosed(sequencer.Stopped()) {
		t.Fatal("Stopped is open after Stop")
	}
	waitNoGoroutines(t)
	if _, err := es.Sequence(ctx); err != nil {
		t.Fatal(err)
	}
	entries := readWholeLog(t, es)
	assertGapless(t, entries)
	if len(entries) != appends {
		t.Fatalf("%d events in the log, want %d", len(entries), appends)
	}
}

// recordingHandler keeps every log record's message and attributes.
type recordingHandler struct {
	mu      *sync.Mutex
	records *[]loggedRecord
}

type loggedRecord struct {
	at      time.Time
	message string
	attrs   map[string]any
}

func newRecordingHandler() recordingHandler {
	return recordingHandler{mu: &sync.Mutex{}, records: new([]loggedRecord)}
}

func (recordingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h recordingHandler) Handle(_ context.Context, r slog.Record) error {
	rec := loggedRecord{at: time.Now(), message: r.Message, attrs: map[string]any{}}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.Any()
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.records = append(*h.records, rec)
	return nil
}

func (h recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordingHandler) WithGroup(string) slog.Handler      { return h }

// with returns the records with message msg so far.
func (h recordingHandler) with(msg string) []loggedRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []loggedRecord
	for _, r := range *h.records {
		if r.message == msg {
			out = append(out, r)
		}
	}
	return out
}

const (
	sequencingFailed    = "store.Sequencer: sequencing failed"
	sequencingRecovered = "store.Sequencer: sequencing recovered"
)

// waitLogged waits until h has n records with message msg.
func waitLogged(t *testing.T, h recordingHandler, msg string, n int, within time.Duration) []loggedRecord {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		records := h.with(msg)
		if len(records) >= n {
			return records
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records %q after %v, want %d", len(records), msg, within, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// downProxy forwards TCP connections to the test server until it goes
// down: then it cuts every open connection and refuses new ones, as a
// server that crashed would, until it comes up again.
type downProxy struct {
	host string
	port uint16

	mu    sync.Mutex
	down  bool
	conns []net.Conn
}

func newDownProxy(t *testing.T) *downProxy {
	t.Helper()
	listener, port, target := proxyListener(t)
	p := &downProxy{host: "127.0.0.1", port: port}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = listener.Close()
		p.setDown(true)
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := listener.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			down := p.down
			p.mu.Unlock()
			if down {
				_ = client.Close()
				continue
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				_ = client.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, client, server)
			p.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				defer wg.Done()
				defer func() { _, _ = dst.Close(), src.Close() }()
				_, _ = io.Copy(dst, src)
			}
			wg.Add(2)
			go pipe(server, client)
			go pipe(client, server)
		}
	}()
	return p
}

func (p *downProxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.conns = nil
	}
}

// poolThrough returns a pool of its own whose connections go through p.
func (p *downProxy) poolThrough(t *testing.T) *pgxpool.Pool {
	t.Helper()
	config, err := pgxpool.ParseConfig(pgenv.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	config.ConnConfig.Host, config.ConnConfig.Port = p.host, p.port
	config.ConnConfig.Fallbacks = nil
	config.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(context.Background(), config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// While the database is unreachable, a Sequencer backs off instead of
// retrying every Interval, says so once rather than once per attempt, and
// says once that it recovered; then it numbers what was committed meanwhile.
func TestSequencerBacksOffWhileTheDatabaseIsDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry(), NoSequenceOnRead: true})
	proxy := newDownProxy(t)
	logs := newRecordingHandler()
	// The same schema, reached through the proxy.
	behind, err := store.New(proxy.poolThrough(t), &store.Config{Schema: es.Schema(), Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	const interval, maxBackoff = 5 * time.Millisecond, 200 * time.Millisecond
	sequencer, err := store.NewSequencer(behind, &store.SequencerConfig{
		Interval: interval, MaxBackoff: maxBackoff, RunTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	labelled(t, func(ctx context.Context) {
		if err := sequencer.Start(ctx); err != nil {
			t.Fatal(err)
		}
	})
	appendDeposits(t, es, 1)
	waitHead(t, es, 1)

	// Taken first: setDown closes the connections, and the sequencer may
	// log their loss before setDown returns.
	downSince := time.Now()
	proxy.setDown(true)
	const downFor = 1500 * time.Millisecond
	appendDeposits(t, es, 2) // committed while the sequencer cannot reach the server
	time.Sleep(downFor)
	proxy.setDown(false)
	recovered := waitLogged(t, logs, sequencingRecovered, 1, 10*time.Second)
	waitHead(t, es, 3)
	if err := sequencer.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitNoGoroutines(t)

	failed := logs.with(sequencingFailed)
	if len(failed) != 1 || len(recovered) != 1 {
		t.Fatalf("%d %q and %d %q records, want 1 and 1", len(failed), sequencingFailed, len(recovered), sequencingRecovered)
	}
	if err, _ := failed[0].attrs["error"].(error); err == nil {
		t.Errorf("the failure record has no error: %v", failed[0].attrs)
	}
	// Without backoff: a failure per Interval, some 300. With it the pauses
	// double up to 200ms: about a dozen.
	failures, _ := recovered[0].attrs["failures"].(int64)
	t.Logf("%d failed runs in %v down; logged: %v; %v", failures, downFor, failed[0].attrs, recovered[0].attrs)
	if failures < 3 || failures > int64(2*downFor/maxBackoff)+10 {
		t.Errorf("%d failed runs while down for %v, want between 3 and %d", failures, downFor, 2*downFor/maxBackoff+10)
	}
	if failed[0].at.Before(downSince) {
		t.Error("a failure was logged before the database went down")
	}
}

// A sweep stuck behind another holder of the sequencer lock is abandoned
// after RunTimeout and retried; Stop does not wait for RunTimeout.
func TestSequencerRunTimeoutBoundsAStuckSweep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	logs := newRecordingHandler()
	es := pgenv.NewStore(t, pgenv.NewPool(t, 4), &store.Config{Registry: bankRegistry(), NoSequenceOnRead: true, Logger: slog.New(logs)})
	appendDeposits(t, es, 2)

	// Hold the sequencer lock, as a sweep that hangs would.
	tx, err := pgenv.Pool(t).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // rolled back below
	if _, err := tx.Exec(ctx, fmt.Sprintf("SELECT pg_advisory_xact_lock(1296385, '%s'::regclass::oid::integer)",
		storeTable(es, "events"))); err != nil {
		t.Fatal(err)
	}

	const runTimeout = 300 * time.Millisecond
	sequencer, err := store.NewSequencer(es, &store.SequencerConfig{
		Interval: 5 * time.Millisecond, RunTimeout: runTimeout, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	labelled(t, func(ctx context.Context) {
		if err := sequencer.Start(ctx); err != nil {
			t.Fatal(err)
		}
	})
	failed := waitLogged(t, logs, sequencingFailed, 1, 10*time.Second)
	if took := failed[0].at.Sub(started); took < runTimeout || took > runTimeout+2*time.Second {
		t.Errorf("the stuck sweep failed after %v, want about RunTimeout (%v)", took, runTimeout)
	}
	if err, _ := failed[0].attrs["error"].(error); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the stuck sweep failed with %v, want a deadline", err)
	}

	// Released: the next run numbers the events and recovers.
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	waitLogged(t, logs, sequencingRecovered, 1, 10*time.Second)
	waitHead(t, es, 2)
	if err := sequencer.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(logs.with(sequencingFailed)); n != 1 {
		t.Errorf("%d failure records, want 1", n)
	}

	// Stuck again, with a long RunTimeout: Stop cancels the run.
	tx, err = pgenv.Pool(t).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // rolled back below
	if _, err := tx.Exec(ctx, fmt.Sprintf("SELECT pg_advisory_xact_lock(1296385, '%s'::regclass::oid::integer)",
		storeTable(es, "events"))); err != nil {
		t.Fatal(err)
	}
	appendDeposits(t, es, 1) // a sweep with nothing to do takes no lock
	patient, err := store.NewSequencer(es, &store.SequencerConfig{RunTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	labelled(t, func(ctx context.Context) {
		if err := patient.Start(ctx); err != nil {
			t.Fatal(err)
		}
	})
	waitForLockWaiters(t, es, 1)
	stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := patient.Stop(stopCtx); err != nil {
		t.Fatalf("Stop of a Sequencer stuck on the lock: %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	waitNoGoroutines(t)
}

// Close waits for a group of appends in flight, bounded by its ctx, and is
// idempotent; appends after it run alone and succeed.
func TestStoreCloseWaitsForGroupedAppends(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := groupedStore(t, 8)
	if err := es.Close(ctx); err != nil {
		t.Fatalf("Close with nothing in flight: %v", err)
	}
	es = groupedStore(t, 8)
	const held = "account-held"

	// A transaction holds version 1 of a stream. One append to it runs
	// alone and waits; the next is grouped, and its group waits up to the
	// group lock timeout (100ms) before giving up on it.
	tx, err := es.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // committed below
	if _, err := es.AppendTx(ctx, tx, held, core.NoStream, core.NewEvent(Opened{Owner: "holder"})); err != nil {
		t.Fatal(err)
	}
	results := make(chan error, 2)
	labelled(t, func(ctx context.Context) {
		for range 2 {
			go func() {
				_, err := es.Append(ctx, held, core.NoStream, core.NewEvent(Opened{Owner: "waiter"}))
				results <- err
			}()
		}
	})
	groupActive := func() int {
		t.Helper()
		var n int
		if err := pgenv.Pool(t).QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE state = 'active' AND pid <> pg_backend_pid()
			  AND query LIKE '%EventAppendGroup%' AND strpos(query, $1) > 0`, es.Schema()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); groupActive() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no grouped statement ran within 10s")
		}
	}

	// Closing while the group waits for its lock.
	short, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	if err := es.Close(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close bounded by 1ms while a group is in flight: %v, want DeadlineExceeded", err)
	}
	closed := make(chan error, 2)
	for range 2 {
		go func() { closed <- es.Close(ctx) }()
	}
	for range 2 {
		if err := <-closed; err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	if n := groupActive(); n != 0 {
		t.Fatalf("Close returned while %d grouped statements ran", n)
	}
	if err := es.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	// The grouped append went back to its caller, who waits alone.
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		var conflict *core.VersionConflictError
		if err := <-results; !errors.As(err, &conflict) {
			t.Fatalf("append to the held stream: %v, want a conflict", err)
		}
	}

	// After Close, concurrent appends work, each alone.
	grouped := sharedTransactions(t, es)
	var wg sync.WaitGroup
	labelled(t, func(ctx context.Context) {
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := es.Append(ctx, fmt.Sprintf("account-after-%d", i), core.NoStream, core.NewEvent(Opened{Owner: "after"})); err != nil {
					t.Errorf("append after Close: %v", err)
				}
			}()
		}
	})
	wg.Wait()
	if after := sharedTransactions(t, es); after != grouped {
		t.Errorf("%d appends shared a transaction after Close, want none (%d before)", after-grouped, grouped)
	}
	waitNoGoroutines(t)
}
