package integration_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

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
						failures = append(failures, fmt.Errorf("conflict = %+v, want actual %d", conflict, version+1))
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
