package integration_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

// Ledger snapshots every 10 events. Applied counts the events folded since
// the state was created or restored, so tests see how much a load replayed.
type Ledger struct {
	Balance int64 `json:"balance"`
	Applied int   `json:"-"`
}

func (*Ledger) Category() string           { return "ledger" }
func (*Ledger) SnapshotSchemaVersion() int { return 1 }
func (*Ledger) SnapshotFrequency() int     { return 10 }
func (l *Ledger) Apply(event core.EventData) {
	l.Applied++
	if d, ok := event.(Deposited); ok {
		l.Balance += d.Amount
	}
}

// LedgerV2 is Ledger after a change to its serialized shape.
type LedgerV2 struct{ Ledger }

func (*LedgerV2) SnapshotSchemaVersion() int { return 2 }

func saveDeposits(t *testing.T, es *store.EventStore, id string, n int) *core.Root[*Ledger] {
	t.Helper()
	ctx := context.Background()
	root, err := store.LoadOrNew[Ledger](ctx, es, id)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		root.Record(Deposited{Amount: int64(i + 1)})
		if i%3 == 2 || i == n-1 { // saves of 3 events, crossing multiples of 10 unevenly
			if _, err := store.SaveSnapshotting(ctx, es, root); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

func snapshotRow(t *testing.T, es *store.EventStore, streamID string) (version int64, count int) {
	t.Helper()
	table := pgx.Identifier{es.Schema(), "snapshots"}.Sanitize()
	err := es.Pool().QueryRow(context.Background(),
		"SELECT coalesce(max(stream_version), 0), count(*) FROM "+table+" WHERE stream_id = $1", streamID).Scan(&version, &count)
	if err != nil {
		t.Fatal(err)
	}
	return version, count
}

func TestSnapshotLoadReplaysOnlyLaterEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	saveDeposits(t, es, "1", 25) // saves end at 3, 6, ..., 24, 25: snapshots at 12, 21

	version, count := snapshotRow(t, es, "ledger-1")
	if version != 21 || count != 1 {
		t.Fatalf("snapshot at version %d (%d rows), want the latest only, at 21", version, count)
	}
	snapshotted, err := store.LoadSnapshotted[Ledger](ctx, es, "1")
	if err != nil {
		t.Fatal(err)
	}
	full, err := store.Load[Ledger](ctx, es, "1")
	if err != nil {
		t.Fatal(err)
	}
	if snapshotted.Version() != 25 || snapshotted.State().Balance != full.State().Balance || full.State().Balance != 25*26/2 {
		t.Fatalf("snapshotted load: version %d balance %d; full load balance %d", snapshotted.Version(), snapshotted.State().Balance, full.State().Balance)
	}
	if got := snapshotted.State().Applied; got != 4 {
		t.Errorf("snapshotted load replayed %d events, want 4 (22..25)", got)
	}
	if got := full.State().Applied; got != 25 {
		t.Errorf("full load replayed %d events, want 25", got)
	}

	// Snapshots never show up to readers of the log.
	events, err := es.ReadEvents(ctx, core.ReadAll())
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 25 {
		t.Errorf("whole-log read returned %d events, want the 25 appended", len(events))
	}

	// Inside a scope the result is the same.
	err = es.InScope(ctx, func(scope *store.Scope) error {
		inScope, err := store.LoadSnapshotted[Ledger](ctx, scope, "1")
		if err != nil {
			return err
		}
		if diff := cmp.Diff(snapshotted.State(), inScope.State()); diff != "" || inScope.Version() != 25 {
			return fmt.Errorf("load in scope differs (version %d): %s", inScope.Version(), diff)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotSavedInScopeCommitsWithEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	for _, commit := range []bool{false, true} {
		scope, err := es.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		root := core.NewRoot("1", &Ledger{})
		for i := range 10 {
			root.Record(Deposited{Amount: int64(i)})
		}
		if _, err := store.SaveSnapshotting(ctx, scope, root); err != nil {
			t.Fatal(err)
		}
		if commit {
			err = scope.Commit(ctx)
		} else {
			err = scope.Rollback(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		version, count := snapshotRow(t, es, "ledger-1")
		if commit && (version != 10 || count != 1) || !commit && count != 0 {
			t.Fatalf("commit=%v: snapshot version %d, %d rows", commit, version, count)
		}
	}
}

func TestSnapshotIgnoredWhenUnusable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		spoil  string // SQL run on the snapshot row; %s is the table
		loadV2 bool
	}{
		{name: "other schema version", loadV2: true},
		{name: "corrupt payload", spoil: `UPDATE %s SET state = '{"balance": "not a number"}'`},
		{name: "payload of another shape", spoil: `UPDATE %s SET state = '[1, 2, 3]'`},
		{name: "ahead of the stream", spoil: `UPDATE %s SET stream_version = 1000`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
			saveDeposits(t, es, "1", 15)
			if version, _ := snapshotRow(t, es, "ledger-1"); version != 12 {
				t.Fatalf("snapshot at %d, want 12", version)
			}
			if tt.spoil != "" {
				table := pgx.Identifier{es.Schema(), "snapshots"}.Sanitize()
				if _, err := es.Pool().Exec(ctx, fmt.Sprintf(tt.spoil, table)); err != nil {
					t.Fatal(err)
				}
			}
			var (
				balance int64
				applied int
				version int64
			)
			if tt.loadV2 {
				root, err := store.LoadSnapshotted[LedgerV2](ctx, es, "1")
				if err != nil {
					t.Fatal(err)
				}
				balance, applied, version = root.State().Balance, root.State().Applied, root.Version()
			} else {
				root, err := store.LoadSnapshotted[Ledger](ctx, es, "1")
				if err != nil {
					t.Fatal(err)
				}
				balance, applied, version = root.State().Balance, root.State().Applied, root.Version()
			}
			// Ignored: rebuilt from all 15 events.
			if balance != 15*16/2 || version != 15 || applied != 15 {
				t.Fatalf("balance %d version %d replayed %d, want %d at version 15 after replaying all 15",
					balance, version, applied, 15*16/2)
			}
		})
	}
}
