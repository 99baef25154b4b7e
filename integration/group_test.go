package integration_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

// groupedStore returns a store on its own pool that groups every
// single-event append beyond the first one in flight.
func groupedStore(t *testing.T, conns int32) *store.EventStore {
	t.Helper()
	return pgenv.NewStore(t, pgenv.NewPool(t, conns), &store.Config{Registry: bankRegistry(), SoloAppends: 1})
}

// sharedTransactions counts the events that were written in a transaction
// together with another event: grouped appends.
func sharedTransactions(t *testing.T, es *store.EventStore) int {
	t.Helper()
	var n int
	err := es.Pool().QueryRow(context.Background(), fmt.Sprintf(
		`SELECT coalesce(sum(c), 0) FROM (SELECT count(*) AS c FROM %s GROUP BY xid HAVING count(*) > 1) AS g`,
		storeTable(es, "events"))).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Many writers on their own streams, every kind of expectation: every
// append succeeds exactly once at the right version, and most of them share
// a transaction with others.
func TestGroupedAppendsKeepEachAppendsOutcome(t *testing.T) {
	t.Parallel()
	const (
		writers = 24
		appends = 40
	)
	ctx := context.Background()
	es := groupedStore(t, 8)

	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := fmt.Sprintf("account-%d", w)
			for i := range appends {
				var expected core.ExpectedVersion
				switch {
				case i == 0:
					expected = core.NoStream
				case i%3 == 0:
					expected = core.Any
				case i%3 == 1:
					expected = core.Exact(int64(i))
				default:
					expected = core.StreamExists
				}
				committed, err := es.Append(ctx, stream, expected, core.Event{Data: Deposited{Amount: int64(i)}})
				if err != nil {
					errs <- fmt.Errorf("%s append %d (%s): %w", stream, i, expected, err)
					return
				}
				if committed.FromVersion != int64(i+1) || committed.Duplicate {
					errs <- fmt.Errorf("%s append %d: got version %d (duplicate %v), want %d",
						stream, i, committed.FromVersion, committed.Duplicate, i+1)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	for w := range writers {
		stream := fmt.Sprintf("account-%d", w)
		var version int64
		for event, err := range es.Read(ctx, core.ReadStream(stream)) {
			if err != nil {
				t.Fatal(err)
			}
			version++
			if event.StreamVersion != version {
				t.Fatalf("%s: version %d where %d belongs", stream, event.StreamVersion, version)
			}
		}
		if version != appends {
			t.Errorf("%s has %d events, want %d", stream, version, appends)
		}
	}
	grouped := sharedTransactions(t, es)
	t.Logf("%d of %d appends shared a transaction", grouped, writers*appends)
	if grouped == 0 {
		t.Error("no two appends shared a transaction: grouping never happened")
	}
}

// Writers racing for each version of one stream, beside writers on their
// own streams, all grouped together: one racer wins each round, the others
// get the conflict with the winning version, and the bystanders never fail.
func TestGroupedAppendsIsolateConflicts(t *testing.T) {
	t.Parallel()
	const (
		racers     = 8
		bystanders = 8
		rounds     = 25
	)
	ctx := context.Background()
	es := groupedStore(t, 8)
	const hot = "account-hot"

	for version := int64(0); version < rounds; version++ {
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			wins  int
			start = make(chan struct{})
		)
		for r := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := es.Append(ctx, hot, core.Exact(version), core.Event{Data: Deposited{Amount: int64(r)}})
				var conflict *core.VersionConflictError
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.As(err, &conflict):
					if conflict.Actual != version+1 {
						t.Errorf("round %d: conflict reports version %d, want %d", version, conflict.Actual, version+1)
					}
				default:
					t.Errorf("round %d: %v", version, err)
				}
			}()
		}
		for b := range bystanders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				stream := fmt.Sprintf("account-bystander-%d", b)
				if _, err := es.Append(ctx, stream, core.Exact(version), core.Event{Data: Deposited{Amount: 1}}); err != nil {
					t.Errorf("bystander %s round %d: %v", stream, version, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if wins != 1 {
			t.Fatalf("round %d: %d winners, want 1", version, wins)
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("%d appends shared a transaction", sharedTransactions(t, es))
}

// A retry racing its original, with the same event id: both return the one
// stored event, whether they met in one group or not.
func TestGroupedAppendsResolveRacingRetries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := groupedStore(t, 8)

	const pairs = 30
	var wg sync.WaitGroup
	results := make([][2]*core.CommittedEvents, pairs)
	for p := range pairs {
		event := core.Event{Data: Deposited{Amount: int64(p)}, Metadata: core.EventMetadata{EventID: uuid.New()}}
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				committed, err := es.Append(ctx, fmt.Sprintf("account-retry-%d", p), core.NoStream, event)
				if err != nil {
					t.Errorf("pair %d, append %d: %v", p, i, err)
					return
				}
				results[p][i] = committed
			}()
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for p, pair := range results {
		if pair[0].FromVersion != 1 || pair[1].FromVersion != 1 {
			t.Errorf("pair %d: versions %d and %d, want 1 and 1", p, pair[0].FromVersion, pair[1].FromVersion)
		}
		if pair[0].Duplicate == pair[1].Duplicate {
			t.Errorf("pair %d: duplicate %v and %v, want exactly one retry", p, pair[0].Duplicate, pair[1].Duplicate)
		}
	}
}

// The hazard of grouping: a caller holds a transaction that inserted a
// stream's next version, and before committing it appends to another
// stream on the pool. If that append shared a statement with appends
// racing for the held version, and the statement waited for the holder,
// the holder would wait for itself forever. The grouped statement gives up
// instead, and the holder's appends go through.
func TestGroupedAppendsNeverWaitForTheirOwnCaller(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := groupedStore(t, 12)
	const held = "account-held"

	tx, err := es.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op once committed
	if _, err := es.AppendTx(ctx, tx, held, core.NoStream, core.Event{Data: Opened{Owner: "holder"}}); err != nil {
		t.Fatal(err)
	}

	// Racers for the held version, giving up after a moment and coming
	// back, so that some of them are queued whenever the holder appends.
	racersCtx, stopRacers := context.WithCancel(ctx)
	defer stopRacers()
	var racers sync.WaitGroup
	for range 6 {
		racers.Add(1)
		go func() {
			defer racers.Done()
			for racersCtx.Err() == nil {
				attempt, cancel := context.WithTimeout(racersCtx, 20*time.Millisecond)
				_, err := es.Append(attempt, held, core.NoStream, core.Event{Data: Opened{Owner: "racer"}})
				cancel()
				if err == nil {
					t.Error("a racer opened the held stream")
					return
				}
			}
		}()
	}
	waitForLockWaiters(t, es, 1)

	// The holder's own appends, while tx is open, finish.
	holderCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for i := range 20 {
		if _, err := es.Append(holderCtx, fmt.Sprintf("account-other-%d", i), core.NoStream,
			core.Event{Data: Opened{Owner: "holder"}}); err != nil {
			t.Fatalf("holder's append %d while holding a version others wait for: %v", i, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	stopRacers()
	racers.Wait()
}

// An append whose caller has already gone while it waits for a group
// reports that and writes nothing.
func TestGroupedAppendOfAGoneCallerWritesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := groupedStore(t, 4)

	// Hold the one solo slot: an append blocked on a version tx holds.
	tx, err := es.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op once committed
	if _, err := es.AppendTx(ctx, tx, "account-held", core.NoStream, core.Event{Data: Opened{Owner: "holder"}}); err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() {
		_, err := es.Append(ctx, "account-held", core.NoStream, core.Event{Data: Opened{Owner: "solo"}})
		blocked <- err
	}()
	waitForLockWaiters(t, es, 1)

	gone, cancel := context.WithCancel(ctx)
	cancel()
	for i := range 10 {
		stream := fmt.Sprintf("account-gone-%d", i)
		_, err := es.Append(gone, stream, core.NoStream, core.Event{Data: Opened{Owner: "gone"}})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("append of a gone caller: %v, want context.Canceled", err)
		}
		assertStreamVersion(t, es, stream, 0)
	}

	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var conflict *core.VersionConflictError
	if err := <-blocked; !errors.As(err, &conflict) {
		t.Fatalf("the blocked append: %v, want a conflict", err)
	}
}

// Connections die under grouped appends: a group's statement is killed
// before, during or after its commit. Writers that see an error append
// again with the same event ids, as the docs tell them to. Every stream
// ends with exactly its events, once each, in order.
func TestGroupedAppendsSurviveKilledConnections(t *testing.T) {
	t.Parallel()
	const (
		writers = 12
		appends = 30
	)
	ctx := context.Background()
	es := groupedStore(t, 8)
	admin := pgenv.Pool(t)

	stop := make(chan struct{})
	killerDone := make(chan int)
	go func() {
		kills := 0
		defer func() { killerDone <- kills }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Millisecond):
			}
			var n int
			err := admin.QueryRow(ctx, `SELECT count(*) FROM (
				SELECT pg_terminate_backend(pid) FROM pg_stat_activity
				WHERE pid <> pg_backend_pid() AND state = 'active'
				  AND query LIKE '%EventAppendGroup%' AND strpos(query, $1) > 0) AS killed`,
				es.Schema()).Scan(&n)
			if err != nil {
				t.Errorf("killer: %v", err)
				return
			}
			kills += n
		}
	}()

	var wg sync.WaitGroup
	ids := make([][]uuid.UUID, writers)
	var failures sync.Map
	for w := range writers {
		ids[w] = make([]uuid.UUID, appends)
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := fmt.Sprintf("account-%d", w)
			for i := range appends {
				ids[w][i] = uuid.New()
				event := core.Event{Data: Deposited{Amount: int64(i)}, Metadata: core.EventMetadata{EventID: ids[w][i]}}
				for attempt := 1; ; attempt++ {
					committed, err := es.Append(ctx, stream, core.Exact(int64(i)), event)
					if err == nil {
						if committed.FromVersion != int64(i+1) {
							t.Errorf("%s append %d: version %d", stream, i, committed.FromVersion)
						}
						break
					}
					failures.Store(fmt.Sprintf("%s/%d/%d", stream, i, attempt), err)
					if attempt == 50 {
						t.Errorf("%s append %d: still failing after %d attempts: %v", stream, i, attempt, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	kills := <-killerDone
	// The last kills can leave dead connections idle in the pool.
	es.Pool().Reset()

	errorsSeen := 0
	failures.Range(func(_, _ any) bool { errorsSeen++; return true })
	t.Logf("%d grouped statements killed; writers saw %d errors and appended again", kills, errorsSeen)
	if kills == 0 {
		t.Error("the killer never caught a grouped statement: the test proved nothing")
	}
	for w := range writers {
		stream := fmt.Sprintf("account-%d", w)
		i := 0
		for event, err := range es.Read(ctx, core.ReadStream(stream)) {
			if err != nil {
				t.Fatal(err)
			}
			if i >= appends || event.Metadata.EventID != ids[w][i] || event.StreamVersion != int64(i+1) {
				t.Fatalf("%s: event %d is %v at version %d, want %v at %d", stream, i, event.Metadata.EventID, event.StreamVersion, ids[w][i], i+1)
			}
			i++
		}
		if i != appends {
			t.Errorf("%s has %d events, want %d", stream, i, appends)
		}
	}
}

// A network partition stalls the connections of grouped statements. Their
// callers give up; the groups must give up with them, or the drainers would
// stay stuck on dead connections and every later append would queue behind
// them until TCP gave up.
func TestGroupedAppendsLetGoOfStalledConnections(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	proxy := newStallProxy(t)
	config, err := pgxpool.ParseConfig(pgenv.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	config.ConnConfig.Host, config.ConnConfig.Port = proxy.host, proxy.port
	config.ConnConfig.Fallbacks = nil
	config.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(ctx, config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	// Before the pool closes: a stalled connection takes pgxpool 15s to
	// give up on.
	t.Cleanup(proxy.end)
	es := pgenv.NewStore(t, pool, &store.Config{Registry: bankRegistry(), SoloAppends: 1})

	// Prepare the statements, then cut the network.
	appendAll := func(wave string, n int, timeout time.Duration) []error {
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				appendCtx, cancel := context.WithTimeout(ctx, timeout)
				defer cancel()
				_, errs[i] = es.Append(appendCtx, fmt.Sprintf("account-%s-%d", wave, i), core.NoStream,
					core.Event{Data: Opened{Owner: wave}})
			}()
		}
		wg.Wait()
		return errs
	}
	for _, err := range appendAll("warm", 8, 10*time.Second) {
		if err != nil {
			t.Fatal(err)
		}
	}
	proxy.stall()

	// Two waves, so that both drainers take a group onto a stalled
	// connection; every caller gives up.
	var waves sync.WaitGroup
	for _, wave := range []string{"first", "second"} {
		waves.Add(1)
		go func() {
			defer waves.Done()
			for _, err := range appendAll(wave, 6, 300*time.Millisecond) {
				if err == nil {
					t.Errorf("%s wave: an append went through a stalled connection", wave)
				}
			}
		}()
		time.Sleep(50 * time.Millisecond)
	}
	waves.Wait()

	// The network is back for new connections; an append must go through.
	proxy.heal()
	pool.Reset()
	appendCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := es.Append(appendCtx, "account-after", core.NoStream, core.Event{Data: Opened{Owner: "after"}}); err != nil {
		t.Fatalf("append after the partition: %v (are the drainers still stuck on stalled connections?)", err)
	}
}

// stallProxy forwards TCP connections to the test server. While it stalls,
// as in a network partition, it forwards nothing; a connection it stalled
// stays so until the test ends.
type stallProxy struct {
	host    string
	port    uint16
	target  string
	release chan struct{} // closed by end
	ending  sync.Once

	mu       sync.Mutex
	stalled  []*atomic.Bool
	stalling bool // connections opened now stall too
}

// proxyListener listens on a free loopback port for a test proxy and
// returns the listener, its port and the test server's address to forward
// to.
func proxyListener(t *testing.T) (listener net.Listener, port uint16, target string) {
	t.Helper()
	config, err := pgx.ParseConfig(pgenv.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	listener, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	address, ok := listener.Addr().(*net.TCPAddr)
	if !ok {
		t.Fatalf("listening on %v, not TCP", listener.Addr())
	}
	return listener, uint16(address.Port), net.JoinHostPort(config.Host, strconv.Itoa(int(config.Port)))
}

func newStallProxy(t *testing.T) *stallProxy {
	t.Helper()
	listener, port, target := proxyListener(t)
	p := &stallProxy{host: "127.0.0.1", port: port, target: target, release: make(chan struct{})}
	t.Cleanup(func() {
		p.end()
		_ = listener.Close()
	})
	go func() {
		for {
			client, err := listener.Accept()
			if err != nil {
				return
			}
			go p.forward(client)
		}
	}()
	return p
}

func (p *stallProxy) forward(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = client.Close()
		return
	}
	stalled := &atomic.Bool{}
	p.mu.Lock()
	stalled.Store(p.stalling)
	p.stalled = append(p.stalled, stalled)
	p.mu.Unlock()
	pipe := func(dst, src net.Conn) {
		defer func() { _, _ = dst.Close(), src.Close() }()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if stalled.Load() {
				<-p.release
				return
			}
			if n > 0 {
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go pipe(server, client)
	go pipe(client, server)
}

// end closes every stalled connection.
func (p *stallProxy) end() { p.ending.Do(func() { close(p.release) }) }

// stall stalls every connection, open or opened until heal.
func (p *stallProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalling = true
	for _, stalled := range p.stalled {
		stalled.Store(true)
	}
}

// heal lets connections opened from now on through; stalled ones stay so.
func (p *stallProxy) heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalling = false
}

// Writers racing for one stream meet in groups, where only one of them can
// take a version. The others conflict at once, seeing the winner's version
// (alone, each would only be refused again and asked why), and the stream
// then runs its appends alone for a while, so a hot stream costs what it
// costs without grouping, while other streams keep grouping.
func TestGroupedAppendsOnAContendedStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := groupedStore(t, 16)
	const writers, rounds = 12, 30
	var wg sync.WaitGroup
	var mu sync.Mutex
	failures := []error{}
	stored := 0
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var version int64
			for range rounds {
				_, err := es.Append(ctx, "account-hot", core.Exact(version), core.NewEvent(Deposited{Amount: int64(w)}))
				var conflict *core.VersionConflictError
				switch {
				case err == nil:
					version++
					mu.Lock()
					stored++
					mu.Unlock()
				case errors.As(err, &conflict):
					if conflict.Actual <= version {
						mu.Lock()
						failures = append(failures, fmt.Errorf("a conflict at version %d says the stream is at %d", version, conflict.Actual))
						mu.Unlock()
					}
					version = conflict.Actual
				default:
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range failures {
		t.Error(err)
	}
	assertStreamVersion(t, es, "account-hot", int64(stored))
	events, err := es.ReadEvents(ctx, core.ReadStream("account-hot"))
	if err != nil || len(events) != stored {
		t.Fatalf("the stream holds %d events (%v), want the %d stored", len(events), err, stored)
	}

	// Other streams still group.
	before := sharedTransactions(t, es)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				if _, err := es.Append(ctx, fmt.Sprintf("account-cold-%d", w), core.Exact(int64(i)), core.NewEvent(Deposited{Amount: 1})); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if sharedTransactions(t, es) == before {
		t.Error("appends to uncontended streams no longer share transactions")
	}
}
