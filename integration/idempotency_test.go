package integration_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

// committedOpts compare results of appends: event data as JSON values (the
// database normalizes jsonb whitespace), and nil and empty header maps
// alike.
var committedOpts = cmp.Options{
	cmp.Transformer("json", func(m json.RawMessage) any {
		var v any
		if err := json.Unmarshal(m, &v); err != nil {
			return fmt.Sprintf("invalid JSON %q: %v", m, err)
		}
		return v
	}),
	cmpopts.EquateEmpty(),
}

// reopened encodes like Opened under another event type.
type reopened struct {
	Owner string `json:"owner"`
}

func (reopened) EventType() string { return "account.reopened" }

var reusedOpts = cmpopts.IgnoreFields(core.EventIDReusedError{}, "Reason")

// idempotentBatch returns events with fixed IDs and every kind of metadata.
func idempotentBatch() []core.Event {
	return []core.Event{
		{Data: Opened{Owner: "ada"}, Metadata: core.EventMetadata{
			EventID: uuid.New(), CorrelationID: uuid.New(), CausationID: uuid.New(),
			Headers: map[string]string{"tenant": "t1", "user": "u1"},
		}},
		{Data: Deposited{Amount: 100}, Metadata: core.EventMetadata{EventID: uuid.New()}},
		{Data: Withdrawn{Amount: 30}, Metadata: core.EventMetadata{EventID: uuid.New(), CorrelationID: uuid.New()}},
	}
}

func seedStream(t *testing.T, es *store.EventStore, streamID string, n int) {
	t.Helper()
	for i := range n {
		if _, err := es.Append(context.Background(), streamID, core.Exact(int64(i)), core.NewEvent(Deposited{Amount: int64(i + 1)})); err != nil {
			t.Fatal(err)
		}
	}
}

// assertDuplicateOf fails t unless got is original reported as a duplicate.
func assertDuplicateOf(t *testing.T, original, got *core.CommittedEvents) {
	t.Helper()
	if got == nil {
		t.Fatal("retry returned nil CommittedEvents")
	}
	want := *original
	want.Duplicate = true
	if diff := cmp.Diff(&want, got, committedOpts); diff != "" {
		t.Errorf("retry result (-want +got):\n%s", diff)
	}
}

// assertEventStoredOnce fails t unless the event ID is stored exactly once.
func assertEventStoredOnce(t *testing.T, es *store.EventStore, id uuid.UUID, want int) {
	t.Helper()
	var n int
	if err := pgenv.Pool(t).QueryRow(context.Background(),
		"SELECT count(*) FROM "+storeTable(es, "events")+" WHERE event_id = $1", id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != want {
		t.Errorf("event %s stored %d times, want %d", id, n, want)
	}
}

// Appending again with the same event IDs returns the original result,
// marked Duplicate, whatever the expectation, on the pool or in a caller's
// transaction (which stays usable), and stores nothing, even after the
// stream has moved on.
func TestAppendRetryReturnsOriginal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, nil)
	tests := []struct {
		name     string
		seed     int
		expected core.ExpectedVersion
	}{
		{"exact", 2, core.Exact(2)},
		{"no stream", 0, core.NoStream},
		{"exact zero", 0, core.Exact(0)},
		{"any on a new stream", 0, core.Any},
		{"any on an existing stream", 1, core.Any},
		{"stream exists", 1, core.StreamExists},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			streamID := fmt.Sprintf("account-%d", i)
			seedStream(t, es, streamID, tt.seed)
			events := idempotentBatch()
			original, err := es.Append(ctx, streamID, tt.expected, events...)
			if err != nil {
				t.Fatalf("append: %v", err)
			}
			wantFrom, wantTo := int64(tt.seed+1), int64(tt.seed+3)
			if original.Duplicate || original.FromVersion != wantFrom || original.ToVersion != wantTo {
				t.Fatalf("original = %+v, want versions %d..%d, not duplicate", original, wantFrom, wantTo)
			}

			retry, err := es.Append(ctx, streamID, tt.expected, events...)
			if err != nil {
				t.Fatalf("retry: %v", err)
			}
			assertDuplicateOf(t, original, retry)
			assertStreamVersion(t, es, streamID, wantTo)

			// The same retry inside a caller's transaction.
			tx, err := pgenv.Pool(t).Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx) //nolint:errcheck // committed below
			retry, err = es.AppendTx(ctx, tx, streamID, tt.expected, events...)
			if err != nil {
				t.Fatalf("retry in tx: %v", err)
			}
			assertDuplicateOf(t, original, retry)
			if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
				t.Fatalf("tx unusable after a duplicate append: %v", err)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			assertStreamVersion(t, es, streamID, wantTo)

			// The stream moves on; a late retry still finds the original.
			if _, err := es.Append(ctx, streamID, core.Exact(wantTo), core.NewEvent(Deposited{Amount: 1})); err != nil {
				t.Fatal(err)
			}
			for _, expected := range []core.ExpectedVersion{tt.expected, core.Any, core.Exact(wantTo + 1), core.StreamExists} {
				retry, err = es.Append(ctx, streamID, expected, events...)
				if err != nil {
					t.Fatalf("late retry expecting %s: %v", expected, err)
				}
				assertDuplicateOf(t, original, retry)
			}
			assertStreamVersion(t, es, streamID, wantTo+1)
			for _, e := range events {
				assertEventStoredOnce(t, es, e.Metadata.EventID, 1)
			}
		})
	}
}

// An event ID stored with other content is not a retry: the append fails
// with EventIDReusedError and stores nothing.
func TestEventIDReusedWithOtherContent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, nil)
	tests := []struct {
		name   string
		mutate func(*core.Event)
	}{
		{"other data", func(e *core.Event) { e.Data = Opened{Owner: "eve"} }},
		{"other type, same JSON", func(e *core.Event) { e.Data = reopened{Owner: "ada"} }},
		{"other header value", func(e *core.Event) { e.Metadata.Headers = map[string]string{"tenant": "t2", "user": "u1"} }},
		{"header added", func(e *core.Event) { e.Metadata.Headers["extra"] = "x" }},
		{"headers removed", func(e *core.Event) { e.Metadata.Headers = nil }},
		{"other correlation id", func(e *core.Event) { e.Metadata.CorrelationID = uuid.New() }},
		{"correlation id removed", func(e *core.Event) { e.Metadata.CorrelationID = uuid.Nil }},
		{"other causation id", func(e *core.Event) { e.Metadata.CausationID = uuid.New() }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			streamID := fmt.Sprintf("account-%d", i)
			events := idempotentBatch()
			if _, err := es.Append(ctx, streamID, core.NoStream, events...); err != nil {
				t.Fatal(err)
			}
			changed := idempotentBatch()
			copy(changed, events)
			changed[0].Metadata.Headers = map[string]string{"tenant": "t1", "user": "u1"}
			tt.mutate(&changed[0])

			for _, expected := range []core.ExpectedVersion{core.NoStream, core.Any, core.Exact(3), core.StreamExists} {
				committed, err := es.Append(ctx, streamID, expected, changed...)
				if committed != nil {
					t.Errorf("expecting %s: committed = %+v, want nil", expected, committed)
				}
				var reused *core.EventIDReusedError
				if !errors.As(err, &reused) {
					t.Fatalf("expecting %s: err = %v (%T), want *core.EventIDReusedError", expected, err, err)
				}
				if !errors.Is(err, core.ErrEventIDReused) {
					t.Errorf("errors.Is(%v, ErrEventIDReused) = false", err)
				}
				want := &core.EventIDReusedError{EventID: events[0].Metadata.EventID, StreamID: streamID, StoredStreamID: streamID}
				if diff := cmp.Diff(want, reused, reusedOpts); diff != "" {
					t.Errorf("expecting %s: EventIDReusedError (-want +got):\n%s", expected, diff)
				}
			}
			assertStreamVersion(t, es, streamID, 3)
		})
	}
}

// An event ID stored in one stream cannot be appended to another, even with
// the same content.
func TestEventIDReusedInAnotherStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, nil)
	events := idempotentBatch()
	if _, err := es.Append(ctx, "account-1", core.NoStream, events...); err != nil {
		t.Fatal(err)
	}
	seedStream(t, es, "account-3", 1)
	baseline := storeRowCounts(t, es)

	tests := []struct {
		streamID string
		version  int64
		expected core.ExpectedVersion
	}{
		{"account-2", 0, core.NoStream},
		{"account-2", 0, core.Any},
		{"account-3", 1, core.Exact(1)},
		{"account-3", 1, core.Any},
		{"account-3", 1, core.StreamExists},
	}
	for _, tt := range tests {
		for _, batch := range [][]core.Event{events, events[:1], events[2:]} {
			committed, err := es.Append(ctx, tt.streamID, tt.expected, batch...)
			if committed != nil {
				t.Errorf("%s expecting %s: committed = %+v, want nil", tt.streamID, tt.expected, committed)
			}
			var reused *core.EventIDReusedError
			if !errors.As(err, &reused) || !errors.Is(err, core.ErrEventIDReused) {
				t.Fatalf("%s expecting %s: err = %v (%T), want *core.EventIDReusedError", tt.streamID, tt.expected, err, err)
			}
			want := &core.EventIDReusedError{EventID: batch[0].Metadata.EventID, StreamID: tt.streamID, StoredStreamID: "account-1"}
			if diff := cmp.Diff(want, reused, reusedOpts); diff != "" {
				t.Errorf("%s expecting %s: EventIDReusedError (-want +got):\n%s", tt.streamID, tt.expected, diff)
			}
			assertStreamVersion(t, es, tt.streamID, tt.version)
		}
	}
	assertRowCounts(t, es, baseline)
}

// A batch that is not exactly a stored append — some IDs new, or stored
// ones out of order or with gaps — is refused, and its new events are not
// stored.
func TestEventIDsPartlyStored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, nil)
	stored := idempotentBatch()
	if _, err := es.Append(ctx, "account-1", core.NoStream, stored...); err != nil {
		t.Fatal(err)
	}
	baseline := storeRowCounts(t, es)
	fresh := core.Event{Data: Deposited{Amount: 7}, Metadata: core.EventMetadata{EventID: uuid.New()}}
	a, b, c := stored[0], stored[1], stored[2]

	tests := []struct {
		name  string
		batch []core.Event
	}{
		{"stored then new", []core.Event{a, fresh}},
		{"new then stored", []core.Event{fresh, a}},
		{"whole append then new", []core.Event{a, b, c, fresh}},
		{"new in the middle", []core.Event{a, fresh, b}},
		{"gap", []core.Event{a, c}},
		{"reordered", []core.Event{b, a}},
		{"reversed", []core.Event{c, b, a}},
	}
	for _, tt := range tests {
		for _, expected := range []core.ExpectedVersion{core.Any, core.Exact(3), core.NoStream, core.StreamExists} {
			committed, err := es.Append(ctx, "account-1", expected, tt.batch...)
			if committed != nil {
				t.Errorf("%s expecting %s: committed = %+v, want nil", tt.name, expected, committed)
			}
			var reused *core.EventIDReusedError
			if !errors.As(err, &reused) || !errors.Is(err, core.ErrEventIDReused) {
				t.Fatalf("%s expecting %s: err = %v (%T), want *core.EventIDReusedError", tt.name, expected, err, err)
			}
			if reused.StreamID != "account-1" || reused.StoredStreamID != "account-1" || reused.Reason == "" {
				t.Errorf("%s: %+v, want stream account-1 stored in account-1 and a reason", tt.name, reused)
			}
			if id := reused.EventID; id != a.Metadata.EventID && id != b.Metadata.EventID && id != c.Metadata.EventID {
				t.Errorf("%s: EventID %s is not one of the stored IDs", tt.name, id)
			}
		}
		assertEventStoredOnce(t, es, fresh.Metadata.EventID, 0)
	}
	assertStreamVersion(t, es, "account-1", 3)
	assertRowCounts(t, es, baseline)

	// Inside a caller's transaction the same reuse is the same error, and the
	// transaction stays usable: the part of the batch that went in before
	// the stored id stopped it is taken back, and committing keeps nothing.
	tx, err := pgenv.Pool(t).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // committed below
	var reused *core.EventIDReusedError
	if _, err := es.AppendTx(ctx, tx, "account-1", core.Any, fresh, a); !errors.As(err, &reused) {
		t.Fatalf("in tx: err = %v, want an EventIDReusedError", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit after a refused append: %v", err)
	}
	assertStreamVersion(t, es, "account-1", 3)
	assertEventStoredOnce(t, es, fresh.Metadata.EventID, 0)
}

// A caller that does not know whether its append committed retries it with
// the same event IDs, and the events end up stored exactly once.
func TestRetryAfterUnknownOutcome(t *testing.T) {
	t.Parallel()

	t.Run("committed, result lost", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		es := pgenv.NewStore(t, nil, nil)
		events := idempotentBatch()
		tx, err := pgenv.Pool(t).Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // committed below
		original, err := es.AppendTx(ctx, tx, "account-1", core.NoStream, events...)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}

		retry, err := es.Append(ctx, "account-1", core.NoStream, events...)
		if err != nil {
			t.Fatalf("retry: %v", err)
		}
		assertDuplicateOf(t, original, retry)
		assertRowCounts(t, es, rowCounts{Streams: 1, Events: 3})
	})

	t.Run("connection lost before commit", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		pool := pgenv.NewPool(t, 1)
		es := pgenv.NewStore(t, pool, nil)
		events := idempotentBatch()
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // the connection is dead; cleanup only
		if _, err := es.AppendTx(ctx, tx, "account-1", core.NoStream, events...); err != nil {
			t.Fatal(err)
		}
		terminateBackend(t, backendPID(t, tx))
		if err := tx.Commit(ctx); err == nil {
			t.Fatal("commit on a terminated connection succeeded")
		}

		retry, err := es.Append(ctx, "account-1", core.NoStream, events...)
		if err != nil {
			t.Fatalf("retry: %v", err)
		}
		if retry.Duplicate || retry.FromVersion != 1 || retry.ToVersion != 3 {
			t.Errorf("retry = %+v, want a fresh append of versions 1..3", retry)
		}
		again, err := es.Append(ctx, "account-1", core.NoStream, events...)
		if err != nil {
			t.Fatalf("second retry: %v", err)
		}
		assertDuplicateOf(t, retry, again)
		assertRowCounts(t, es, rowCounts{Streams: 1, Events: 3})
	})

	// An append abandoned because its context ended while it waited for a
	// lock may still commit on the server once the lock is released (the
	// client only closes its socket and sends a best-effort cancel request).
	// Its outcome is unknown; a retry with the same IDs settles it.
	t.Run("context ended while waiting", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		es := pgenv.NewStore(t, pgenv.NewPool(t, 4), nil)
		events := idempotentBatch()[1:]
		appendCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		holder, done := startBlockedAppend(appendCtx, t, es, events...)
		if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want DeadlineExceeded", err)
		}
		if err := holder.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		waitForSchemaQuiet(t, es)

		retry, err := es.Append(ctx, "account-1", core.Any, events...)
		if err != nil {
			t.Fatalf("retry: %v", err)
		}
		t.Logf("the abandoned append had committed: %v", retry.Duplicate)
		if retry.FromVersion != 2 || retry.ToVersion != 3 {
			t.Errorf("retry = %+v, want versions 2..3", retry)
		}
		for _, e := range events {
			assertEventStoredOnce(t, es, e.Metadata.EventID, 1)
		}
		assertStreamVersion(t, es, "account-1", 3)
	})
}

// A retry that reaches the database while the original append is still
// uncommitted is recognised as a duplicate once the original commits. (With
// Any and StreamExists the event-id check runs on a snapshot taken before
// the original committed; the store resolves the resulting unique violation
// on the event-id index with a fresh look.)
func TestRetryRacingInFlightOriginal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		seed     int
		expected core.ExpectedVersion
	}{
		{"exact", 1, core.Exact(1)},
		{"no stream", 0, core.NoStream},
		{"any on a new stream", 0, core.Any},
		{"any on an existing stream", 1, core.Any},
		{"stream exists", 1, core.StreamExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			es := pgenv.NewStore(t, pgenv.NewPool(t, 4), nil)
			seedStream(t, es, "account-1", tt.seed)
			events := idempotentBatch()

			original, err := es.Pool().Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer original.Rollback(ctx) //nolint:errcheck // committed below
			first, err := es.AppendTx(ctx, original, "account-1", tt.expected, events...)
			if err != nil {
				t.Fatal(err)
			}
			type result struct {
				committed *core.CommittedEvents
				err       error
			}
			done := make(chan result, 1)
			go func() {
				committed, err := es.Append(ctx, "account-1", tt.expected, events...)
				done <- result{committed, err}
			}()
			waitForLockWaiters(t, es, 1)
			if err := original.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			retry := <-done
			if retry.err != nil {
				kind, _ := core.DBKind(retry.err)
				t.Fatalf("retry racing the in-flight original failed with %v (kind %s); want the original result marked Duplicate", retry.err, kind)
			}
			assertDuplicateOf(t, first, retry.committed)
			assertStreamVersion(t, es, "account-1", int64(tt.seed+3))
		})
	}
}

// An event ID reused in another stream while its first append is still
// uncommitted is reported as reused, not as a bare unique violation.
func TestEventIDReusedRacingInFlightAppend(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, pgenv.NewPool(t, 4), nil)
	events := idempotentBatch()[:1]

	original, err := es.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer original.Rollback(ctx) //nolint:errcheck // committed below
	if _, err := es.AppendTx(ctx, original, "account-1", core.NoStream, events...); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := es.Append(ctx, "account-2", core.NoStream, events...)
		done <- err
	}()
	waitForLockWaiters(t, es, 1)
	if err := original.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	err = <-done
	var reused *core.EventIDReusedError
	if !errors.As(err, &reused) {
		kind, _ := core.DBKind(err)
		t.Fatalf("err = %v (kind %s), want *core.EventIDReusedError", err, kind)
	}
	want := &core.EventIDReusedError{EventID: events[0].Metadata.EventID, StreamID: "account-2", StoredStreamID: "account-1"}
	if diff := cmp.Diff(want, reused, reusedOpts); diff != "" {
		t.Errorf("EventIDReusedError (-want +got):\n%s", diff)
	}
	assertStreamVersion(t, es, "account-2", 0)
}
