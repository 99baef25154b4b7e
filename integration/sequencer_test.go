package integration_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

// positionedEvent is one event as the whole log returns it.
type positionedEvent struct {
	Position int64
	Stream   string
	Version  int64
}

func readWholeLog(t *testing.T, es *store.EventStore) []positionedEvent {
	t.Helper()
	events, err := es.ReadEvents(context.Background(), core.ReadAll())
	if err != nil {
		t.Fatalf("reading the log: %v", err)
	}
	var entries []positionedEvent
	for _, e := range events {
		entries = append(entries, positionedEvent{e.GlobalPosition, e.StreamID, e.StreamVersion})
	}
	return entries
}

// assertGapless fails t unless the log holds positions 1..len in order,
// each stream's versions in order, and every event exactly once.
func assertGapless(t *testing.T, entries []positionedEvent) {
	t.Helper()
	seen := map[string]int64{}
	for i, e := range entries {
		if e.Position != int64(i+1) {
			t.Fatalf("entry %d has position %d, want %d (log %v)", i, e.Position, i+1, entries)
		}
		if e.Version != seen[e.Stream]+1 {
			t.Fatalf("position %d is %s version %d, want version %d", e.Position, e.Stream, e.Version, seen[e.Stream]+1)
		}
		seen[e.Stream] = e.Version
	}
}

// Upgrading a schema that holds events from migration 2 (positions in the
// events table, streams as the gate) to 3 keeps every position, numbers the
// events that were still waiting after them, and leaves streams appendable
// at the right versions; migrating back to 2 and up again loses nothing.
func TestMigrationUpgradeKeepsPositions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es, err := store.New(pgenv.Pool(t), &store.Config{Schema: pgenv.NewSchemaName(t), Registry: bankRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := es.MigrateTo(ctx, 2); err != nil {
		t.Fatal(err)
	}

	// Events written the way migration 2's store wrote them: two sequenced,
	// one committed but still waiting for a position.
	old := func(sql string, args ...any) {
		t.Helper()
		if _, err := pgenv.Pool(t).Exec(ctx, fmt.Sprintf(sql, storeTable(es, "streams"), storeTable(es, "events")), args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	oldAppend := func(stream string, version int64) {
		t.Helper()
		old(`WITH head AS (
                 INSERT INTO %[1]s (stream_id, version) VALUES ($1, $2)
                 ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version RETURNING version)
             INSERT INTO %[2]s (stream_id, stream_version, category, event_id, event_type, data)
             SELECT $1, head.version, 'account', gen_random_uuid(), 'account.deposited', '{"amount": 1}' FROM head`,
			stream, version)
	}
	oldAppend("account-a", 1)
	oldAppend("account-b", 1)
	if _, err := pgenv.Pool(t).Exec(ctx, "SELECT "+es.Schema()+".sequence_events(100)"); err != nil {
		t.Fatal(err)
	}
	oldAppend("account-a", 2)

	if err := es.Migrate(ctx); err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	want := []positionedEvent{{1, "account-a", 1}, {2, "account-b", 1}, {3, "account-a", 2}}
	if diff := cmp.Diff(want, readWholeLog(t, es)); diff != "" {
		t.Fatalf("log after the upgrade (-want +got):\n%s", diff)
	}
	if _, err := es.Append(ctx, "account-a", core.Exact(2), core.NewEvent(Deposited{Amount: 1})); err != nil {
		t.Fatalf("append after the upgrade: %v", err)
	}
	if _, err := es.Append(ctx, "account-b", core.Exact(2), core.NewEvent(Deposited{Amount: 1})); !errors.As(err, new(*core.VersionConflictError)) {
		t.Fatalf("append at a wrong version after the upgrade: err = %v, want a conflict", err)
	}
	want = append(want, positionedEvent{4, "account-a", 3})
	if diff := cmp.Diff(want, readWholeLog(t, es)); diff != "" {
		t.Fatalf("log after an append (-want +got):\n%s", diff)
	}

	// Down to 2: positions back in events, the streams table rebuilt.
	if _, err := es.Append(ctx, "account-c", core.NoStream, core.NewEvent(Deposited{Amount: 1})); err != nil {
		t.Fatal(err)
	}
	if err := es.MigrateTo(ctx, 2); err != nil {
		t.Fatalf("down to 2: %v", err)
	}
	var positions, streams string
	if err := pgenv.Pool(t).QueryRow(ctx, fmt.Sprintf(
		`SELECT (SELECT string_agg(stream_id || ':' || stream_version || '@' || global_position, ' ' ORDER BY global_position) FROM %[2]s),
		        (SELECT string_agg(stream_id || ':' || version, ' ' ORDER BY stream_id) FROM %[1]s)`,
		storeTable(es, "streams"), storeTable(es, "events"))).Scan(&positions, &streams); err != nil {
		t.Fatal(err)
	}
	if want := "account-a:1@1 account-b:1@2 account-a:2@3 account-a:3@4 account-c:1@5"; positions != want {
		t.Errorf("positions at migration 2: %s, want %s", positions, want)
	}
	if want := "account-a:3 account-b:1 account-c:1"; streams != want {
		t.Errorf("streams at migration 2: %s, want %s", streams, want)
	}

	if err := es.Migrate(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	entries := readWholeLog(t, es)
	assertGapless(t, entries)
	if len(entries) != 5 {
		t.Fatalf("log after down and up: %v, want 5 events", entries)
	}
}

// After a restore into another cluster the transaction ids in the events
// table and in the sequencer's stored snapshot come from the old cluster
// and may be far ahead of the new one's. The sequencer notices that xids
// went backwards, numbers every event the log lacks exactly once, and then
// goes on as usual with the new cluster's xids.
func TestSequencerAfterRestoreIntoAnotherCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	for _, stream := range []string{"account-a", "account-b", "account-a"} {
		if _, err := es.Append(ctx, stream, core.Any, core.NewEvent(Deposited{Amount: 1})); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := es.Sequence(ctx); err != nil {
		t.Fatal(err)
	}
	// Committed in the old cluster after its last sweep: restored without
	// a position.
	for _, stream := range []string{"account-b", "account-c"} {
		if _, err := es.Append(ctx, stream, core.Any, core.NewEvent(Deposited{Amount: 1})); err != nil {
			t.Fatal(err)
		}
	}

	// Every xid as if the old cluster had been two billion transactions
	// ahead of this one, with this cluster's identity: the sweep must see
	// that xids went backwards.
	ahead := currentXmax(t) + 2_000_000_000
	restoreFromAnotherCluster(t, es, true, fmt.Sprintf("%d:%d:", ahead, ahead), ahead-10, ahead+1)

	assigned, err := es.Sequence(ctx)
	if err != nil {
		t.Fatalf("sequence after the restore: %v", err)
	}
	if assigned != 2 {
		t.Errorf("the restore sweep numbered %d events, want the 2 without a position", assigned)
	}
	// Business as usual: new appends, with this cluster's xids, are found.
	if _, err := es.Append(ctx, "account-c", core.Exact(1), core.NewEvent(Deposited{Amount: 1})); err != nil {
		t.Fatal(err)
	}
	want := []positionedEvent{
		{1, "account-a", 1}, {2, "account-b", 1}, {3, "account-a", 2},
		{4, "account-b", 2}, {5, "account-c", 1}, {6, "account-c", 2},
	}
	if diff := cmp.Diff(want, readWholeLog(t, es)); diff != "" {
		t.Fatalf("log after the restore (-want +got):\n%s", diff)
	}
	if assigned, err := es.Sequence(ctx); err != nil || assigned != 0 {
		t.Fatalf("a sweep with nothing new: %d, %v; want 0", assigned, err)
	}
}

// A sweep counts its own transaction as finished in the snapshot it stores,
// so events that transaction appended afterwards would never be numbered:
// sequence_events refuses to run in a transaction that has written.
func TestSequencerRefusesAWritingTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	tx, err := pgenv.Pool(t).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // aborted below
	if _, err := es.AppendTx(ctx, tx, "account-1", core.NoStream, core.NewEvent(Deposited{Amount: 1})); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, "SELECT "+es.Schema()+".sequence_events()")
	if err == nil || !strings.Contains(err.Error(), "must run in its own transaction") {
		t.Fatalf("sequence_events in a writing transaction: err = %v, want a refusal", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	// On its own it numbers what committed.
	if _, err := es.Append(ctx, "account-1", core.NoStream, core.NewEvent(Deposited{Amount: 1})); err != nil {
		t.Fatal(err)
	}
	if assigned, err := es.Sequence(ctx); err != nil || assigned != 1 {
		t.Fatalf("Sequence = %d, %v; want 1", assigned, err)
	}
}
