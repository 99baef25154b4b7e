package integration_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

// Many writers race for each version of one stream: exactly one wins every
// round, every loser is told the version that beat it, and the stream ends
// contiguous with no event stored twice.
func TestConcurrentAppendOneStream(t *testing.T) {
	t.Parallel()
	const (
		writers = 16
		rounds  = 30
	)
	ctx := context.Background()
	es := pgenv.NewStore(t, pgenv.NewPool(t, writers), nil)
	const streamID = "race-1"

	winners := make([]uuid.UUID, rounds+1)
	for version := int64(0); version < rounds; version++ {
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			wins     int
			start    = make(chan struct{})
			failures []error
		)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := uuid.New()
				<-start
				_, err := es.Append(ctx, streamID, core.Exact(version), core.Event{
					Data:     Deposited{Amount: int64(w)},
					Metadata: core.EventMetadata{EventID: id},
				})
				mu.Lock()
				defer mu.Unlock()
				var conflict *core.VersionConflictError
				switch {
				case err == nil:
					wins++
					winners[version+1] = id
				case errors.As(err, &conflict):
					if conflict.Actual != version+1 || conflict.StreamID != streamID {
						failures = append(failures, fmt.Errorf("conflict = %+v, want actual %d", conflict, version+1)) //nolint:errorlint // its fields, not a wrapped error
					}
				default:
					failures = append(failures, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		for _, err := range failures {
			t.Errorf("round %d: %v", version, err)
		}
		if wins != 1 {
			t.Fatalf("round %d: %d winners, want exactly 1", version, wins)
		}
	}

	events, err := es.ReadEvents(ctx, core.ReadStream(streamID))
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != rounds {
		t.Fatalf("stream has %d events, want %d", len(events), rounds)
	}
	for i, e := range events {
		if e.StreamVersion != int64(i+1) || e.Metadata.EventID != winners[i+1] {
			t.Errorf("event %d: version %d id %s, want version %d id %s", i, e.StreamVersion, e.Metadata.EventID, i+1, winners[i+1])
		}
	}
}

// Writers that each load, decide and save the same aggregate, retrying on
// conflict, lose no deposit.
func TestConcurrentSaveRetries(t *testing.T) {
	t.Parallel()
	const (
		writers  = 8
		deposits = 15
	)
	ctx := context.Background()
	es := pgenv.NewStore(t, pgenv.NewPool(t, writers), &store.Config{Registry: bankRegistry()})

	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range deposits {
				for {
					root, err := store.LoadOrNew[Account](ctx, es, "shared")
					if err != nil {
						errs <- err
						return
					}
					root.Record(Deposited{Amount: 1})
					_, err = store.Save(ctx, es, root)
					if errors.Is(err, core.ErrConcurrency) {
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	root, err := store.Load[Account](ctx, es, "shared")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := root.State().Balance, int64(writers*deposits); got != want || root.Version() != want {
		t.Fatalf("balance %d at version %d, want %d at %d", got, root.Version(), want, want)
	}
}

// Batches of different sizes appended with Any to one stream, from many
// transactions at once, collide on some of their versions but not all: a
// batch of 3 that loses version 5 to a batch of 1 could store 6 and 7. Such
// a partial batch must be taken back and the batch retried, so that the
// stream ends up as whole batches, each contiguous, nothing lost and nothing
// twice, in transactions that all stay usable.
func TestConcurrentBatchesInTransactions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const writers, rounds = 8, 15
	var takenBack atomic.Int64
	logger := slog.New(countingHandler{msg: "store: took back a partial batch", n: &takenBack})
	es := pgenv.NewStore(t, pgenv.NewPool(t, writers+2), &store.Config{Registry: bankRegistry(), Logger: logger})

	var mu sync.Mutex
	committed := map[string]int{} // batch id -> size
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				batch := fmt.Sprintf("w%d-r%d", w, r)
				size := 1 + (w+r)%4
				events := make([]core.Event, size)
				for i := range events {
					events[i] = core.NewEvent(Deposited{Amount: int64(i)})
					events[i].Metadata.Headers = map[string]string{"batch": batch}
				}
				err := es.InScope(ctx, func(scope *store.Scope) error {
					if _, err := scope.Append(ctx, "account-shared", core.Any, events...); err != nil {
						return err
					}
					// The transaction must still be usable after whatever
					// the append went through.
					_, err := scope.Tx().Exec(ctx, "SELECT 1")
					return err
				})
				if err != nil {
					errs <- fmt.Errorf("batch %s: %w", batch, err)
					return
				}
				mu.Lock()
				committed[batch] = size
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	events, err := es.ReadEvents(ctx, core.ReadStream("account-shared"))
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]int{}
	for i := 0; i < len(events); {
		if events[i].StreamVersion != int64(i+1) {
			t.Fatalf("event %d has version %d", i, events[i].StreamVersion)
		}
		batch := events[i].Metadata.Headers["batch"]
		if _, twice := stored[batch]; twice {
			t.Fatalf("batch %s is stored in two places", batch)
		}
		size := committed[batch]
		for j := range size {
			if i+j >= len(events) || events[i+j].Metadata.Headers["batch"] != batch {
				t.Fatalf("batch %s of %d events is not contiguous from version %d", batch, size, i+1)
			}
		}
		stored[batch] = size
		i += max(size, 1)
	}
	if diff := cmp.Diff(committed, stored); diff != "" {
		t.Fatalf("committed batches vs stored batches (-committed +stored):\n%s", diff)
	}
	t.Logf("%d batches, %d events; %d partial batches taken back", len(stored), len(events), takenBack.Load())
}

// countingHandler counts the log records with message msg, at any level.
type countingHandler struct {
	msg string
	n   *atomic.Int64
}

func (countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}

func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }
