package integration_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

func deposit(amount int64) func(*core.Root[*Account]) error {
	return func(root *core.Root[*Account]) error {
		root.Record(Deposited{Amount: amount})
		return nil
	}
}

// Many writers updating one aggregate at once all get their command in,
// through conflicts and retries, and the final state is exact.
func TestUpdateUnderContention(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, pgenv.NewPool(t, 8), &store.Config{Registry: bankRegistry()})
	const writers, each = 16, 10

	var calls atomic.Int64
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for range each {
				_, err := store.Update(ctx, es, "1", func(root *core.Root[*Account]) error {
					calls.Add(1)
					root.Record(Deposited{Amount: 1})
					return nil
				}, &store.UpdateOpts{MaxAttempts: 1000})
				if err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	root, err := store.Load[Account](ctx, es, "1")
	if err != nil {
		t.Fatal(err)
	}
	if root.Version() != writers*each || root.State().Balance != writers*each {
		t.Errorf("after %d updates: version %d, balance %d; want both %d", writers*each, root.Version(), root.State().Balance, writers*each)
	}
	assertStreamVersion(t, es, "account-1", writers*each)
	// Without a single retry the writers never overlapped, and the test
	// showed nothing about conflicts.
	if calls.Load() == writers*each {
		t.Errorf("%d commands ran exactly once each: no update was retried", calls.Load())
	}
	t.Logf("%d commands took %d runs", writers*each, calls.Load())
}

// An aggregate someone else keeps writing makes Update give up after
// MaxAttempts, with the last conflict.
func TestUpdateGivesUpAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	calls := 0
	_, err := store.Update(ctx, es, "1", func(root *core.Root[*Account]) error {
		calls++
		// Another writer gets in between every load and save.
		if _, err := es.Append(ctx, root.StreamID(), core.Any, core.NewEvent(Deposited{Amount: 100})); err != nil {
			return err
		}
		root.Record(Deposited{Amount: 1})
		return nil
	}, &store.UpdateOpts{MaxAttempts: 3, Backoff: time.Millisecond})

	assertConflict(t, err, &core.VersionConflictError{StreamID: "account-1", Expected: core.Exact(2), Actual: 3})
	if !strings.Contains(err.Error(), "gave up after 3 attempts") {
		t.Errorf("err = %v, want it to say it gave up after 3 attempts", err)
	}
	if calls != 3 {
		t.Errorf("fn ran %d times, want 3", calls)
	}
	assertStreamVersion(t, es, "account-1", 3) // only the other writer's events
}

// An error from the command comes back as it is, and nothing is saved.
func TestUpdateReturnsCommandError(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	if _, err := store.Update(ctx, es, "1", deposit(10), nil); err != nil {
		t.Fatal(err)
	}
	refused := errors.New("insufficient funds")
	calls := 0
	committed, err := store.Update(ctx, es, "1", func(root *core.Root[*Account]) error {
		calls++
		root.Record(Withdrawn{Amount: 50}) // recorded, but the command fails
		return refused
	}, nil)
	if err != refused || committed != nil { //nolint:errorlint // the very error the command returned, not one wrapping it
		t.Errorf("Update() = %v, %v; want nil, the command's error itself", committed, err)
	}
	if calls != 1 {
		t.Errorf("fn ran %d times, want 1", calls)
	}
	assertStreamVersion(t, es, "account-1", 1)
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})

	// A new aggregate is created.
	committed, err := store.Update(ctx, es, "new", func(root *core.Root[*Account]) error {
		if root.Version() != 0 {
			t.Errorf("new aggregate at version %d", root.Version())
		}
		root.Record(Opened{Owner: "ada"})
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if committed.StreamID != "account-new" || committed.FromVersion != 1 || committed.ToVersion != 1 {
		t.Errorf("committed = %+v, want account-new version 1", committed)
	}

	// Nothing recorded, nothing saved.
	committed, err = store.Update(ctx, es, "new", func(*core.Root[*Account]) error { return nil }, nil)
	if err != nil || committed != nil {
		t.Errorf("Update() recording nothing = %+v, %v; want nil, nil", committed, err)
	}
	assertStreamVersion(t, es, "account-new", 1)

	// Through a scope, committed with it.
	err = es.InScope(ctx, func(scope *store.Scope) error {
		_, err := store.Update(ctx, scope, "new", deposit(5), nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	assertStreamVersion(t, es, "account-new", 2)

	_, err = store.Update(ctx, es, "new", deposit(1), &store.UpdateOpts{MaxAttempts: -1})
	assertInvalidInput(t, err, "UpdateOpts.MaxAttempts")
	_, err = store.Update[Account](ctx, es, "new", nil, nil)
	assertInvalidInput(t, err, "update function")
	assertStreamVersion(t, es, "account-new", 2)
}

// Update waits between attempts without outliving its context.
func TestUpdateHonoursContextWhileWaiting(t *testing.T) {
	t.Parallel()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	calls := 0
	started := time.Now()
	_, err := store.Update(ctx, es, "1", func(root *core.Root[*Account]) error {
		calls++
		if _, err := es.Append(ctx, root.StreamID(), core.Any, core.NewEvent(Deposited{Amount: 100})); err != nil {
			return err
		}
		root.Record(Deposited{Amount: 1})
		return nil
	}, &store.UpdateOpts{Backoff: time.Hour, MaxBackoff: time.Hour})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
	if calls != 1 {
		t.Errorf("fn ran %d times, want 1", calls)
	}
	if elapsed := time.Since(started); elapsed > 10*time.Second {
		t.Errorf("Update returned after %s, long after its context ended", elapsed)
	}
}

// LoadSnapshottedOrNew returns a new root for an aggregate without events,
// and LoadInfo says how every load got its state.
func TestLoadSnapshottedOrNewAndLoadInfo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})

	fresh, err := store.LoadSnapshottedOrNew[Ledger](ctx, es, "none")
	if err != nil {
		t.Fatal(err)
	}
	if fresh.Version() != 0 || fresh.ID() != "none" || fresh.State().Balance != 0 || fresh.LoadInfo() != (core.LoadInfo{}) {
		t.Errorf("missing aggregate: version %d, id %q, state %+v, %+v; want a new root", fresh.Version(), fresh.ID(), fresh.State(), fresh.LoadInfo())
	}
	if _, err := store.LoadSnapshotted[Ledger](ctx, es, "none"); !errors.Is(err, core.ErrStreamNotFound) {
		t.Errorf("LoadSnapshotted of a missing aggregate: err = %v, want ErrStreamNotFound", err)
	}

	saveDeposits(t, es, "1", 25) // snapshot at version 21
	type load struct {
		Version int64
		Balance int64
		Info    core.LoadInfo
	}
	got := map[string]load{}
	snapshotted, err := store.LoadSnapshottedOrNew[Ledger](ctx, es, "1")
	if err != nil {
		t.Fatal(err)
	}
	got["LoadSnapshottedOrNew"] = load{snapshotted.Version(), snapshotted.State().Balance, snapshotted.LoadInfo()}
	full, err := store.Load[Ledger](ctx, es, "1")
	if err != nil {
		t.Fatal(err)
	}
	got["Load"] = load{full.Version(), full.State().Balance, full.LoadInfo()}
	// A snapshot of another schema version is ignored: the load replays all.
	v2, err := store.LoadSnapshotted[LedgerV2](ctx, es, "1")
	if err != nil {
		t.Fatal(err)
	}
	got["LoadSnapshotted, other schema version"] = load{v2.Version(), v2.State().Balance, v2.LoadInfo()}

	want := map[string]load{
		"LoadSnapshottedOrNew":                  {25, 325, core.LoadInfo{SnapshotVersion: 21, Replayed: 4}},
		"Load":                                  {25, 325, core.LoadInfo{Replayed: 25}},
		"LoadSnapshotted, other schema version": {25, 325, core.LoadInfo{Replayed: 25}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("loads (-want +got):\n%s", diff)
	}
}
