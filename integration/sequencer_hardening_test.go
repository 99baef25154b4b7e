package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

// currentXmax is the server's next transaction id, as a number.
func currentXmax(t *testing.T) int64 {
	t.Helper()
	var xmax int64
	if err := pgenv.Pool(t).QueryRow(context.Background(),
		"SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint").Scan(&xmax); err != nil {
		t.Fatal(err)
	}
	return xmax
}

// restoreFromAnotherCluster rewrites a schema as if it had been restored
// from a cluster whose transaction ids were others: the sequencer's stored
// snapshot becomes "xmin:xmax:" of that cluster (and, unless sameCluster,
// its system identifier another), sequenced events take xid numbered, and
// events still waiting for a position take xid waiting.
func restoreFromAnotherCluster(t *testing.T, es *store.EventStore, sameCluster bool, snapshot string, numbered, waiting int64) {
	t.Helper()
	ctx := context.Background()
	events, log, sweeps := storeTable(es, "events"), storeTable(es, "event_log"), storeTable(es, "sequencer_sweeps")
	identity := "system_identifier + 1"
	if sameCluster {
		identity = "system_identifier"
	}
	for _, sql := range []string{
		fmt.Sprintf("UPDATE %s SET snapshot = '%s', system_identifier = %s", sweeps, snapshot, identity),
		// The log keeps no xids: an event is numbered when a run of its
		// stream covers its version.
		fmt.Sprintf(`UPDATE %s AS e SET xid = CASE WHEN EXISTS (
				SELECT 1 FROM %s AS l WHERE l.stream_id = e.stream_id
				AND e.stream_version BETWEEN l.first_version AND l.first_version + l.event_count - 1)
			THEN '%d' ELSE '%d' END::xid8`,
			events, log, numbered, waiting),
	} {
		if _, err := pgenv.Pool(t).Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
}

// A restore into a cluster whose xids are a little ahead of the old one's:
// the stored snapshot looks valid here, and events committed in the old
// cluster after its last sweep can carry xids that this cluster has not
// reached yet. The first sweep numbers them; a later one, whose snapshot is
// this cluster's, would find them again and fail on the log's unique index
// every time. The sweep must skip what the log has (and, knowing the stored
// snapshot is another cluster's, take the restore path).
func TestSequencerAfterRestoreWithSlightlyHigherXids(t *testing.T) {
	t.Parallel()
	for _, sameCluster := range []bool{false, true} {
		t.Run(fmt.Sprintf("same_cluster_identity=%v", sameCluster), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			// The sweeps after the restore run as the runtime role: a
			// sweep that meets runs the log has numbers the others in a
			// second statement, with the sequencer's rights.
			es, sweeper, _, _ := runtimeStore(t, 2)
			for _, stream := range []string{"account-a", "account-b", "account-a"} {
				if _, err := es.Append(ctx, stream, core.Any, core.NewEvent(Deposited{Amount: 1})); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := es.Sequence(ctx); err != nil {
				t.Fatal(err)
			}
			for _, stream := range []string{"account-b", "account-c"} {
				if _, err := es.Append(ctx, stream, core.Any, core.NewEvent(Deposited{Amount: 1})); err != nil {
					t.Fatal(err)
				}
			}
			x := currentXmax(t)
			restoreFromAnotherCluster(t, es, sameCluster, fmt.Sprintf("%d:%d:", x-10, x-5), x-20, x+100000)

			for sweep := range 3 {
				if _, err := sweeper.Sequence(ctx); err != nil {
					t.Fatalf("sweep %d after the restore: %v", sweep, err)
				}
			}
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
			if assigned, err := sweeper.Sequence(ctx); err != nil || assigned != 0 {
				t.Fatalf("a sweep with nothing new: %d, %v; want 0", assigned, err)
			}
		})
	}
}

// A restore into a cluster a little behind the old one: the stored xmax is
// ahead of this cluster's, and if this cluster's xids pass it before any
// sweep, events written in between (xids below the stored xmax, not in its
// in-progress list) look numbered to a sweep that trusts the snapshot, and
// are never numbered. The sweep knows the snapshot is another cluster's and
// numbers every event the log lacks.
func TestSequencerAfterRestoreWithSlightlyLowerXids(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	if _, err := es.Append(ctx, "account-a", core.NoStream, core.NewEvent(Deposited{Amount: 1})); err != nil {
		t.Fatal(err)
	}
	if _, err := es.Sequence(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := es.Append(ctx, "account-b", core.NoStream, core.NewEvent(Deposited{Amount: 1})); err != nil {
		t.Fatal(err)
	}
	x := currentXmax(t)
	storedXmax := x + 1000
	restoreFromAnotherCluster(t, es, false, fmt.Sprintf("%d:%d:", storedXmax, storedXmax), x-500, storedXmax-100)

	// Appends in transactions of their own, with no sweep, until this
	// cluster's xids pass the stored xmax.
	appended := 0
	for currentXmax(t) <= storedXmax {
		if _, err := es.Append(ctx, "account-c", core.Any, core.NewEvent(Deposited{Amount: 1})); err != nil {
			t.Fatal(err)
		}
		appended++
	}
	var below int
	if err := pgenv.Pool(t).QueryRow(ctx, fmt.Sprintf(
		"SELECT count(*) FROM %s WHERE stream_id = 'account-c' AND xid < '%d'", storeTable(es, "events"), storedXmax)).Scan(&below); err != nil {
		t.Fatal(err)
	}
	if below == 0 {
		t.Fatalf("none of the %d appends got an xid below the stored xmax %d: the scenario did not happen", appended, storedXmax)
	}
	if assigned, err := es.Sequence(ctx); err != nil || assigned != int64(1+appended) {
		t.Fatalf("the first sweep after the restore numbered %d (%v), want %d (account-b and the %d appends, %d of them below the stored xmax)",
			assigned, err, 1+appended, appended, below)
	}
	entries := readWholeLog(t, es)
	assertGapless(t, entries)
	if len(entries) != 2+appended {
		t.Fatalf("log holds %d events, want %d", len(entries), 2+appended)
	}
}

// explainBuffers is how many shared buffers a statement touches, as EXPLAIN
// counts them (the statements of a function it calls included), on conn.
func explainBuffers(t *testing.T, conn interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, statement string) int {
	t.Helper()
	var plan []struct {
		Plan struct {
			SharedHit  int `json:"Shared Hit Blocks"`
			SharedRead int `json:"Shared Read Blocks"`
		} `json:"Plan"`
	}
	var raw []byte
	if err := conn.QueryRow(context.Background(), "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "+statement).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &plan); err != nil || len(plan) != 1 {
		t.Fatalf("EXPLAIN output %s: %v", raw, err)
	}
	return plan[0].Plan.SharedHit + plan[0].Plan.SharedRead
}

// While an unrelated transaction stays open, nothing a sweep deletes or
// supersedes can be pruned. With the sequencer's state in one row updated
// by every sweep, reading it walked every version left behind, and each
// sweep cost more than the last (at migration 3, a whole sweep touched 42,
// 81 and 117 buffers after 1000, 3000 and 5000 sweeps). Finding the state
// must cost the same after three thousand sweeps as after one thousand.
//
// A whole sweep also probes the events of every transaction in progress,
// which other tests running beside this one change: its cost is logged and
// checked only loosely.
func TestSweepCostStaysFlatWhileATransactionStaysOpen(t *testing.T) {
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	stranger, err := pgenv.Pool(t).BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Rollback(ctx) //nolint:errcheck // only holds a snapshot
	if _, err := stranger.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, pgenv.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)                                                 //nolint:errcheck // a test connection
	if _, err := conn.Exec(ctx, "SET enable_seqscan = off"); err != nil { // as in the sweep
		t.Fatal(err)
	}
	schema := pgx.Identifier{es.Schema()}.Sanitize()

	// The lowest of a few measurements, each sweep with one new event.
	measure := func() (state, sweep int) {
		state, sweep = -1, -1
		for range 5 {
			if _, err := es.Append(ctx, "account-measured", core.Any, core.NewEvent(Deposited{Amount: 1})); err != nil {
				t.Fatal(err)
			}
			s := explainBuffers(t, conn, "SELECT sweep, snapshot FROM "+schema+".sequencer_sweeps ORDER BY sweep DESC LIMIT 1")
			w := explainBuffers(t, conn, "SELECT "+schema+".sequence_events()")
			if state < 0 || s < state {
				state = s
			}
			if sweep < 0 || w < sweep {
				sweep = w
			}
		}
		return state, sweep
	}
	run := func(n int) {
		for i := range n {
			if _, err := es.Append(ctx, fmt.Sprintf("account-%d", i%50), core.Any, core.NewEvent(Deposited{Amount: 1})); err != nil {
				t.Fatal(err)
			}
			if assigned, err := es.Sequence(ctx); err != nil || assigned != 1 {
				t.Fatalf("sweep %d: %d, %v", i, assigned, err)
			}
		}
	}
	// Indexes are two levels deep from about a thousand entries on; past
	// that, a flat sweep touches the same pages however many came before.
	run(1000)
	earlyState, earlySweep := measure()
	run(2000)
	lateState, lateSweep := measure()
	t.Logf("buffers to find the state: %d after 1000 sweeps, %d after 3000; a whole sweep: %d and %d",
		earlyState, lateState, earlySweep, lateSweep)
	if lateState > earlyState {
		t.Errorf("finding the sequencer's state touched %d buffers after 3000 sweeps, against %d after 1000", lateState, earlyState)
	}
	if lateSweep > 2*earlySweep {
		t.Errorf("a sweep touched %d buffers after 3000 sweeps, against %d after 1000", lateSweep, earlySweep)
	}
}
