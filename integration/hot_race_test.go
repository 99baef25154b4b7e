package integration_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

// Two stores (two processes, each with its own pool and hot streams) race
// writers for two streams with store-generated event ids, re-reading the
// version after each conflict, while other writers append in transactions
// that roll back. Every conflict, answered by the server or by a store
// from what it saw, names a version that was committed when it was
// reported; every stored append is in the stream once, at the version it
// was told; and nothing a rolled-back transaction wrote is ever taken for
// the stream's version.
func TestHotStreamsRaceAcrossStores(t *testing.T) {
	t.Parallel()
	const (
		writersPerStore = 8
		target          = 150 // versions per stream
	)
	ctx := context.Background()
	first := pgenv.NewStore(t, pgenv.NewPool(t, writersPerStore+2), &store.Config{Registry: bankRegistry()})
	second, err := store.New(pgenv.NewPool(t, writersPerStore+2), &store.Config{Schema: first.Schema(), Registry: bankRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	streams := []string{"account-hot1", "account-hot2"}

	var (
		mu        sync.Mutex
		stored    = map[string]map[int64]uuid.UUID{} // stream → version → event id
		conflicts int
		failures  []error
	)
	fail := func(err error) {
		mu.Lock()
		failures = append(failures, err)
		mu.Unlock()
	}
	for _, s := range streams {
		stored[s] = map[int64]uuid.UUID{}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i, es := range []*store.EventStore{first, second} {
		for w := range writersPerStore {
			stream := streams[w%len(streams)]
			wg.Go(func() {
				var version int64
				for {
					select {
					case <-done:
						return
					default:
					}
					committed, err := es.Append(ctx, stream, core.Exact(version), core.NewEvent(Deposited{Amount: int64(i)}))
					var conflict *core.VersionConflictError
					switch {
					case err == nil:
						mu.Lock()
						if id, twice := stored[stream][committed.FromVersion]; twice {
							failures = append(failures, fmt.Errorf("%s version %d stored for %s and %s", stream, committed.FromVersion, id, committed.Events[0].Metadata.EventID))
						}
						stored[stream][committed.FromVersion] = committed.Events[0].Metadata.EventID
						if len(stored[streams[0]]) >= target && len(stored[streams[1]]) >= target {
							select {
							case <-done:
							default:
								close(done)
							}
						}
						mu.Unlock()
						version = committed.ToVersion
					case errors.As(err, &conflict):
						now, err := es.StreamVersion(ctx, stream)
						if err != nil {
							fail(err)
							return
						}
						if conflict.Actual <= version || conflict.Actual > now {
							fail(fmt.Errorf("conflict at expected %d named version %d, with the stream at %d after it", version, conflict.Actual, now))
						}
						mu.Lock()
						conflicts++
						mu.Unlock()
						version = now
					default:
						fail(err)
						return
					}
				}
			})
		}
	}
	// Appends at the next version that never commit.
	for _, stream := range streams {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				version, err := first.StreamVersion(ctx, stream)
				if err != nil {
					fail(err)
					return
				}
				tx, err := first.Pool().Begin(ctx)
				if err != nil {
					fail(err)
					return
				}
				_, err = first.AppendTx(ctx, tx, stream, core.Exact(version), core.NewEvent(Deposited{Amount: -1}))
				if rollback := tx.Rollback(ctx); rollback != nil {
					fail(rollback)
					return
				}
				var conflict *core.VersionConflictError
				if err != nil && !errors.As(err, &conflict) {
					fail(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range failures {
		t.Error(err)
	}
	for _, stream := range streams {
		events, err := first.ReadEvents(ctx, core.ReadStream(stream))
		if err != nil {
			t.Fatal(err)
		}
		if len(events) != len(stored[stream]) {
			t.Errorf("%s holds %d events, %d appends were told they were stored", stream, len(events), len(stored[stream]))
		}
		for i, e := range events {
			if e.StreamVersion != int64(i+1) || stored[stream][e.StreamVersion] != e.Metadata.EventID || e.Data == nil {
				t.Errorf("%s event %d: version %d id %s, want the id told for that version (%s)", stream, i, e.StreamVersion, e.Metadata.EventID, stored[stream][e.StreamVersion])
			}
			var d Deposited
			if err := json.Unmarshal(e.Data, &d); err != nil || d.Amount < 0 {
				t.Errorf("%s event %d: %s, a rolled-back append's event is stored", stream, i, e.Data)
			}
		}
	}
	t.Logf("%d conflicts for %d stored appends", conflicts, len(stored[streams[0]])+len(stored[streams[1]]))
}
