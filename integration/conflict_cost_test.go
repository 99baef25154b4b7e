package integration_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

// statementCounter counts the statements a pool sends, by sqlc query name.
type statementCounter struct {
	mu    sync.Mutex
	names map[string]int
}

func (c *statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	name, _, _ := strings.Cut(strings.TrimPrefix(data.SQL, "-- name: "), " ")
	c.mu.Lock()
	c.names[name]++
	c.mu.Unlock()
	return ctx
}

func (*statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// take returns the counts since the last take.
func (c *statementCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := c.names
	c.names = map[string]int{}
	return names
}

// A conflict costs at most one statement beyond the refused append: the
// question why, in a new snapshot (and, for a retry, the read of what is
// stored). On a hot stream, one that saw a conflict lately, the append
// says why itself, so a conflict costs nothing more; that holds for the
// usual refusal on a raced stream too, a version taken by an append that
// committed while this one waited for it (after the refused statement's
// snapshot), and the conflict reports the version that won. Appends that
// expect a version older than one seen committed there cost no statement
// at all.
func TestConflictsCostNoExtraStatement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	config, err := pgxpool.ParseConfig(pgenv.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	counter := &statementCounter{names: map[string]int{}}
	config.ConnConfig.Tracer = counter
	pool, err := pgxpool.NewWithConfig(ctx, config)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	traced, err := store.New(pool, &store.Config{Schema: es.Schema(), Registry: bankRegistry(), SoloAppends: -1})
	if err != nil {
		t.Fatal(err)
	}
	// The store checks the schema on first use: not part of any append.
	if _, err := traced.StreamVersion(ctx, "account-0"); err != nil {
		t.Fatal(err)
	}
	// Each case has a stream of its own at version 3, appended through
	// another store: the traced store has seen no conflict on it.
	streams := 0
	newStream := func(t *testing.T) string {
		t.Helper()
		streams++
		stream := fmt.Sprintf("account-%d", streams)
		for range 3 {
			if _, err := es.Append(ctx, stream, core.Any, core.NewEvent(Deposited{Amount: 1})); err != nil {
				t.Fatal(err)
			}
		}
		return stream
	}
	wantConflict := func(t *testing.T, err error, actual int64) {
		t.Helper()
		var conflict *core.VersionConflictError
		if !errors.As(err, &conflict) || conflict.Actual != actual {
			t.Fatalf("got %v, want a version conflict at version %d", err, actual)
		}
	}
	wantStatements := func(t *testing.T, want map[string]int) {
		t.Helper()
		if got := counter.take(); !maps.Equal(got, want) {
			t.Errorf("statements sent: %v, want %v", got, want)
		}
	}

	t.Run("stale exact version", func(t *testing.T) {
		stream := newStream(t)
		counter.take()
		_, err := traced.Append(ctx, stream, core.Exact(1), core.NewEvent(Deposited{Amount: 2}))
		wantConflict(t, err, 3)
		wantStatements(t, map[string]int{"EventAppendExact": 1, "EventAppendRefused": 1})
	})
	t.Run("stream exists", func(t *testing.T) {
		stream := newStream(t)
		counter.take()
		_, err := traced.Append(ctx, stream, core.NoStream, core.NewEvent(Deposited{Amount: 2}))
		wantConflict(t, err, 3)
		wantStatements(t, map[string]int{"EventAppendNew": 1, "EventAppendRefused": 1})
	})
	t.Run("expected version ahead of the stream", func(t *testing.T) {
		stream := newStream(t)
		counter.take()
		_, err := traced.Append(ctx, stream, core.Exact(7), core.NewEvent(Deposited{Amount: 2}))
		wantConflict(t, err, 3)
		wantStatements(t, map[string]int{"EventAppendExact": 1, "EventAppendRefused": 1})
	})
	t.Run("retry of a stored append", func(t *testing.T) {
		stream := newStream(t)
		retried := core.NewEvent(Deposited{Amount: 5})
		retried.Metadata.EventID = uuid.New()
		first, err := traced.Append(ctx, stream, core.Exact(3), retried)
		if err != nil {
			t.Fatal(err)
		}
		counter.take()
		again, err := traced.Append(ctx, stream, core.Exact(3), retried)
		if err != nil || !again.Duplicate || again.FromVersion != first.FromVersion {
			t.Fatalf("retry: %+v, %v; want the first result (%+v) as a duplicate", again, err, first)
		}
		wantStatements(t, map[string]int{"EventAppendExact": 1, "EventAppendRefused": 1, "EventFindByIDs": 1})
	})

	// raceOpenAppend appends expected into an open transaction, starts
	// append while it is open, and commits once append waits for it.
	raceOpenAppend := func(t *testing.T, stream string, append func() error) error {
		t.Helper()
		version, err := es.StreamVersion(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := pgenv.Pool(t).Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // committed below
		if _, err := es.AppendTx(ctx, tx, stream, core.Exact(version), core.NewEvent(Deposited{Amount: 6})); err != nil {
			t.Fatal(err)
		}
		var pid uint32
		if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		counter.take()
		raced := make(chan error, 1)
		go func() { raced <- append() }()
		waitForBlockedBy(t, pgenv.Pool(t), pid)
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		return <-raced
	}
	// heated runs append right after a conflict on stream (through the
	// traced store, a cold stream's two statements), so that the stream is
	// hot when append starts. A stream stays hot 100 ms after its last
	// conflict: a run in which append started later than half of that (a
	// loaded machine) reports false, to be tried again.
	heated := func(t *testing.T, stream string, append func()) bool {
		t.Helper()
		_, err := traced.Append(ctx, stream, core.Exact(1), core.NewEvent(Deposited{Amount: 2}))
		wantConflict(t, err, 3)
		conflicted := time.Now()
		append()
		return time.Since(conflicted) < 50*time.Millisecond
	}
	for _, hot := range []bool{false, true} {
		name := map[bool]string{false: "cold", true: "hot"}[hot]
		t.Run("version taken while the append waited, "+name, func(t *testing.T) {
			for attempt := 1; ; attempt++ {
				stream := newStream(t)
				var err error
				inTime := true
				err = raceOpenAppend(t, stream, func() error {
					append := func() {
						_, err = traced.Append(ctx, stream, core.Exact(3), core.NewEvent(Deposited{Amount: 7}))
					}
					if hot {
						inTime = heated(t, stream, append)
					} else {
						append()
					}
					return err
				})
				statements := counter.take()
				if !inTime && attempt < 5 {
					continue
				}
				wantConflict(t, err, 4)
				want := map[string]int{"EventAppendExact": 1, "EventAppendRefused": 1}
				if hot {
					want["EventAppendExactExplained"] = 1 // after the conflict that heated it
				}
				if !maps.Equal(statements, want) {
					t.Errorf("statements sent: %v, want %v", statements, want)
				}
				break
			}
		})
		t.Run("any, after losing a race, "+name, func(t *testing.T) {
			for attempt := 1; ; attempt++ {
				stream := newStream(t)
				var committed *core.CommittedEvents
				inTime := true
				err := raceOpenAppend(t, stream, func() (err error) {
					append := func() {
						committed, err = traced.Append(ctx, stream, core.Any, core.NewEvent(Deposited{Amount: 8}))
					}
					if hot {
						inTime = heated(t, stream, append)
					} else {
						append()
					}
					return err
				})
				statements := counter.take()
				if !inTime && attempt < 5 {
					continue
				}
				if err != nil || committed.FromVersion != 5 {
					t.Fatalf("Any append that lost a race: %+v, %v; want version 5", committed, err)
				}
				// Refused once (the version went to the open transaction),
				// then stored: the refusal said the expectation still held.
				// Cold, the refusal is asked about, and makes the stream hot.
				want := map[string]int{"EventAppendNext": 1, "EventAppendRefused": 1, "EventAppendNextExplained": 1}
				if hot {
					want = map[string]int{"EventAppendExact": 1, "EventAppendRefused": 1, "EventAppendNextExplained": 2}
				}
				if !maps.Equal(statements, want) {
					t.Errorf("statements sent: %v, want %v", statements, want)
				}
				break
			}
		})
	}

	// After a conflict, the stream is hot for a while: an append that
	// expects a version older than one seen committed is a conflict
	// without a round trip, unless its event ids were the caller's (a
	// retry, maybe), and the stream is forgotten soon after its last
	// conflict.
	t.Run("hot stream", func(t *testing.T) {
		stream := newStream(t)
		retried := core.NewEvent(Deposited{Amount: 9})
		retried.Metadata.EventID = uuid.New()
		if _, err := es.Append(ctx, stream, core.Exact(3), retried); err != nil {
			t.Fatal(err)
		}
		// A stream stays hot 100 ms after its last conflict; a case that
		// took half of that (a loaded machine) is tried again.
		for attempt := 1; ; attempt++ {
			counter.take()
			_, err := traced.Append(ctx, stream, core.Exact(1), core.NewEvent(Deposited{Amount: 2}))
			wantConflict(t, err, 4)
			if attempt == 1 {
				wantStatements(t, map[string]int{"EventAppendExact": 1, "EventAppendRefused": 1})
			}
			counter.take()
			start := time.Now()
			_, errExact := traced.Append(ctx, stream, core.Exact(2), core.NewEvent(Deposited{Amount: 2}))
			_, errNew := traced.Append(ctx, stream, core.NoStream, core.NewEvent(Deposited{Amount: 2}))
			again, errRetry := traced.Append(ctx, stream, core.Exact(3), retried)
			statements := counter.take()
			if time.Since(start) > 50*time.Millisecond && attempt < 5 {
				continue
			}
			wantConflict(t, errExact, 4)
			wantConflict(t, errNew, 4)
			if errRetry != nil || !again.Duplicate {
				t.Fatalf("retry with the caller's event id on a hot stream: %+v, %v; want a duplicate", again, errRetry)
			}
			if want := map[string]int{"EventAppendExactExplained": 1, "EventFindByIDs": 1}; !maps.Equal(statements, want) {
				t.Errorf("statements sent: %v, want %v (the retry's only)", statements, want)
			}
			break
		}
		time.Sleep(150 * time.Millisecond)
		counter.take()
		_, err := traced.Append(ctx, stream, core.Exact(2), core.NewEvent(Deposited{Amount: 2}))
		wantConflict(t, err, 4)
		wantStatements(t, map[string]int{"EventAppendExact": 1, "EventAppendRefused": 1})
	})
}

// waitForBlockedBy waits until some session waits for a lock held by the
// backend pid.
func waitForBlockedBy(t *testing.T, pool *pgxpool.Pool, pid uint32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var blocked bool
		err := pool.QueryRow(context.Background(),
			"SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE $1::integer = ANY (pg_blocking_pids(pid)))", int32(pid)).Scan(&blocked)
		if err != nil {
			t.Fatal(err)
		}
		if blocked {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no session came to wait for the open transaction")
}

// A refusal's explanation costs what it touches whatever the size of
// events, with no statistics (nothing here analyzes): a plan made while the
// table was small must not scan it once it is large.
func TestRefusalsCostWhatTheyTouch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	conn, err := pgx.Connect(ctx, pgenv.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx) //nolint:errcheck // a test connection
	schema := pgx.Identifier{es.Schema()}.Sanitize()
	batch := make([]core.Event, 100)
	for i := range batch {
		batch[i] = core.NewEvent(Deposited{Amount: 1})
	}
	appended := 0
	grow := func(to int) {
		for ; appended < to; appended += len(batch) {
			if _, err := es.Append(ctx, fmt.Sprintf("account-%d", appended), core.NoStream, batch...); err != nil {
				t.Fatal(err)
			}
		}
	}
	refusal := "SELECT * FROM " + schema + ".append_refusal('account-0', ARRAY['" + uuid.NewString() + "'::uuid])"
	grow(200)
	explainBuffers(t, conn, refusal) // the first call in a session plans the function's statement
	small := explainBuffers(t, conn, refusal)
	// Planned now, on a small table, as a prepared append's would be.
	_, err = es.Append(ctx, "account-0", core.Exact(1), core.NewEvent(Deposited{Amount: 1}))
	wantConflict := &core.VersionConflictError{}
	if !errors.As(err, &wantConflict) {
		t.Fatalf("append at a stale version: %v, want a conflict", err)
	}
	grow(20_000)
	large := explainBuffers(t, conn, refusal)
	t.Logf("append_refusal touched %d buffers with 200 events stored, %d with 20,000", small, large)
	// A scan of events would touch hundreds: 20,000 events fill over 400
	// pages. An index probe grows by a level or two.
	if large > small+40 {
		t.Errorf("append_refusal touched %d buffers with 20,000 events stored, against %d with 200", large, small)
	}
	if _, err := es.Append(ctx, "account-0", core.Exact(1), core.NewEvent(Deposited{Amount: 1})); !errors.As(err, &wantConflict) ||
		wantConflict.Actual != 100 {
		t.Fatalf("append at a stale version: %v, want a conflict at version 100", err)
	}
}
