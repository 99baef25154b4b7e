package integration_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

// Helpers shared by badinput_test.go, errors_test.go, idempotency_test.go and
// read_test.go.

// typedEvent is event data whose event type is chosen at run time, for
// probing validation and round trips with arbitrary types.
type typedEvent struct {
	Type string `json:"-"`
	Text string `json:"text"`
}

func (e typedEvent) EventType() string { return e.Type }

// chanEvent, funcEvent and floatEvent cannot be encoded as JSON (the last
// one only when it holds NaN or an infinity).
type chanEvent struct {
	C chan int `json:"c"`
}

func (chanEvent) EventType() string { return "test.chan" }

type funcEvent struct {
	F func() `json:"f"`
}

func (funcEvent) EventType() string { return "test.func" }

type floatEvent struct {
	X float64 `json:"x"`
}

func (floatEvent) EventType() string { return "test.float" }

// storeTable returns the quoted, schema-qualified name of one of the store's
// tables, for raw SQL.
func storeTable(es *store.EventStore, table string) string {
	return pgx.Identifier{es.Schema(), table}.Sanitize()
}

// rowCounts is what the store's tables hold, read with raw SQL so that a bug
// in the store's own queries cannot hide a write.
type rowCounts struct {
	Streams, Events int64
}

func storeRowCounts(t *testing.T, es *store.EventStore) rowCounts {
	t.Helper()
	var c rowCounts
	err := pgenv.Pool(t).QueryRow(context.Background(), fmt.Sprintf(
		"SELECT count(DISTINCT stream_id), count(*) FROM %s", storeTable(es, "events"))).Scan(&c.Streams, &c.Events)
	if err != nil {
		t.Fatalf("counting rows: %v", err)
	}
	return c
}

// assertRowCounts fails t unless the store's tables hold exactly want.
func assertRowCounts(t *testing.T, es *store.EventStore, want rowCounts) {
	t.Helper()
	if diff := cmp.Diff(want, storeRowCounts(t, es)); diff != "" {
		t.Errorf("rows stored (-want +got):\n%s", diff)
	}
}

// assertStreamVersion fails t unless the stream is at version want (0: no
// events), checked through the store and with raw SQL.
func assertStreamVersion(t *testing.T, es *store.EventStore, streamID string, want int64) {
	t.Helper()
	ctx := context.Background()
	got, err := es.StreamVersion(ctx, streamID)
	if err != nil {
		t.Fatalf("stream version of %q: %v", streamID, err)
	}
	var events int64
	if err := pgenv.Pool(t).QueryRow(ctx, "SELECT count(*) FROM "+storeTable(es, "events")+" WHERE stream_id = $1",
		streamID).Scan(&events); err != nil {
		t.Fatalf("counting events of %q: %v", streamID, err)
	}
	if got != want || events != want {
		t.Errorf("stream %q: version %d with %d events stored, want version %d", streamID, got, events, want)
	}
}

// assertInvalidInput fails t unless err is an *core.InvalidInputError for
// field with a reason, matching core.ErrInvalidInput.
func assertInvalidInput(t *testing.T, err error, field string) core.InvalidInputError {
	t.Helper()
	var invalid *core.InvalidInputError
	if !errors.As(err, &invalid) {
		t.Fatalf("err = %v (%T), want *core.InvalidInputError for %q", err, err, field)
	}
	if !errors.Is(err, core.ErrInvalidInput) {
		t.Errorf("errors.Is(%v, core.ErrInvalidInput) = false", err)
	}
	if invalid.Field != field {
		t.Errorf("InvalidInputError.Field = %q, want %q (err: %v)", invalid.Field, field, err)
	}
	if invalid.Reason == "" {
		t.Errorf("InvalidInputError.Reason is empty (err: %v)", err)
	}
	return *invalid
}

// assertConflict fails t unless err is exactly the version conflict want.
func assertConflict(t *testing.T, err error, want *core.VersionConflictError) {
	t.Helper()
	var conflict *core.VersionConflictError
	if !errors.As(err, &conflict) {
		t.Fatalf("err = %v (%T), want *core.VersionConflictError", err, err)
	}
	if !errors.Is(err, core.ErrConcurrency) {
		t.Errorf("errors.Is(%v, core.ErrConcurrency) = false", err)
	}
	if diff := cmp.Diff(want, conflict, expectedVersionComparer); diff != "" {
		t.Errorf("VersionConflictError (-want +got):\n%s", diff)
	}
}

// expectedVersionComparer compares core.ExpectedVersion values, whose fields
// are unexported.
var expectedVersionComparer = cmp.Comparer(func(a, b core.ExpectedVersion) bool { return a == b })

// decodeErrorOpts compares *core.DecodeError by their fields except the
// cause, which tests check with errors.Is / errors.As.
var decodeErrorOpts = cmpopts.IgnoreFields(core.DecodeError{}, "Err")

// TestAppendRejectsBadInput: every rejected append returns the exact typed
// error and stores nothing, neither in the stream it targets nor anywhere
// else.
func TestAppendRejectsBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, nil)
	const existing = "account-1"
	if _, err := es.Append(ctx, existing, core.NoStream, core.Events(Opened{Owner: "ada"}, Deposited{Amount: 1})...); err != nil {
		t.Fatal(err)
	}
	baseline := storeRowCounts(t, es)
	if diff := cmp.Diff(rowCounts{Streams: 1, Events: 2}, baseline); diff != "" {
		t.Fatalf("baseline (-want +got):\n%s", diff)
	}

	dupID := uuid.New()
	invalidInput := func(field string) func(*testing.T, error) {
		return func(t *testing.T, err error) { t.Helper(); assertInvalidInput(t, err, field) }
	}
	conflict := func(want *core.VersionConflictError) func(*testing.T, error) {
		return func(t *testing.T, err error) { t.Helper(); assertConflict(t, err, want) }
	}
	encodeError := func(eventType string, cause any) func(*testing.T, error) {
		return func(t *testing.T, err error) {
			t.Helper()
			var encErr *core.EncodeError
			if !errors.As(err, &encErr) {
				t.Fatalf("err = %v (%T), want *core.EncodeError", err, err)
			}
			if !errors.Is(err, core.ErrEncode) {
				t.Errorf("errors.Is(%v, core.ErrEncode) = false", err)
			}
			if encErr.EventType != eventType {
				t.Errorf("EncodeError.EventType = %q, want %q", encErr.EventType, eventType)
			}
			if !errors.As(err, cause) {
				t.Errorf("EncodeError cause = %v (%T), want %T", encErr.Err, encErr.Err, cause)
			}
		}
	}

	tests := []struct {
		name     string
		streamID string
		// version is the stream's version before and after the append (for
		// a valid stream ID).
		version  int64
		expected core.ExpectedVersion
		events   []core.Event
		check    func(*testing.T, error)
	}{
		{name: "empty stream id", streamID: "", expected: core.Any,
			events: core.Events(Deposited{Amount: 1}), check: invalidInput("stream id")},
		{name: "stream id over the limit", streamID: "account-" + strings.Repeat("x", core.MaxStreamIDLength-len("account-")+1),
			expected: core.Any, events: core.Events(Deposited{Amount: 1}), check: invalidInput("stream id")},
		{name: "stream id not UTF-8", streamID: "account-\xff\xfe", expected: core.Any,
			events: core.Events(Deposited{Amount: 1}), check: invalidInput("stream id")},
		{name: "stream id with NUL", streamID: "account-a\x00b", expected: core.Any,
			events: core.Events(Deposited{Amount: 1}), check: invalidInput("stream id")},
		{name: "no events", streamID: "account-2", expected: core.Any,
			events: nil, check: invalidInput("events")},
		{name: "empty event slice", streamID: "account-2", expected: core.Any,
			events: []core.Event{}, check: invalidInput("events")},
		{name: "negative expected version", streamID: "account-2", expected: core.Exact(-1),
			events: core.Events(Deposited{Amount: 1}), check: invalidInput("expected version")},
		{name: "negative expected version on existing stream", streamID: existing, version: 2, expected: core.Exact(-1),
			events: core.Events(Deposited{Amount: 1}), check: invalidInput("expected version")},
		{name: "expected version overflows", streamID: "account-2", expected: core.Exact(math.MaxInt64),
			events: core.Events(Deposited{Amount: 1}, Deposited{Amount: 2}), check: invalidInput("expected version")},
		{name: "expected version overflows by one", streamID: "account-2", expected: core.Exact(math.MaxInt64 - 1),
			events: core.Events(Deposited{Amount: 1}, Deposited{Amount: 2}), check: invalidInput("expected version")},
		{name: "exact on missing stream", streamID: "account-2", expected: core.Exact(5),
			events: core.Events(Deposited{Amount: 1}),
			check:  conflict(&core.VersionConflictError{StreamID: "account-2", Expected: core.Exact(5), Actual: 0})},
		{name: "exact behind", streamID: existing, version: 2, expected: core.Exact(1),
			events: core.Events(Deposited{Amount: 1}),
			check:  conflict(&core.VersionConflictError{StreamID: existing, Expected: core.Exact(1), Actual: 2})},
		{name: "exact ahead", streamID: existing, version: 2, expected: core.Exact(3),
			events: core.Events(Deposited{Amount: 1}),
			check:  conflict(&core.VersionConflictError{StreamID: existing, Expected: core.Exact(3), Actual: 2})},
		{name: "no stream on existing stream", streamID: existing, version: 2, expected: core.NoStream,
			events: core.Events(Deposited{Amount: 1}),
			check:  conflict(&core.VersionConflictError{StreamID: existing, Expected: core.NoStream, Actual: 2})},
		{name: "exact zero on existing stream", streamID: existing, version: 2, expected: core.Exact(0),
			events: core.Events(Deposited{Amount: 1}),
			check:  conflict(&core.VersionConflictError{StreamID: existing, Expected: core.NoStream, Actual: 2})},
		{name: "stream exists on missing stream", streamID: "account-2", expected: core.StreamExists,
			events: core.Events(Deposited{Amount: 1}),
			check:  conflict(&core.VersionConflictError{StreamID: "account-2", Expected: core.StreamExists, Actual: 0})},
		{name: "nil data", streamID: "account-2", expected: core.Any,
			events: []core.Event{{}}, check: invalidInput("event data")},
		{name: "nil data after a valid event", streamID: existing, version: 2, expected: core.Exact(2),
			events: []core.Event{core.NewEvent(Deposited{Amount: 1}), {}}, check: invalidInput("event data")},
		{name: "empty event type", streamID: "account-2", expected: core.Any,
			events: core.Events(typedEvent{Type: "", Text: "x"}), check: invalidInput("event type")},
		{name: "event type over the limit", streamID: "account-2", expected: core.Any,
			events: core.Events(typedEvent{Type: strings.Repeat("t", core.MaxEventTypeLength+1)}), check: invalidInput("event type")},
		{name: "event type not UTF-8", streamID: "account-2", expected: core.Any,
			events: core.Events(typedEvent{Type: "bad.\xc3\x28"}), check: invalidInput("event type")},
		{name: "event type with NUL", streamID: "account-2", expected: core.Any,
			events: core.Events(typedEvent{Type: "bad\x00type"}), check: invalidInput("event type")},
		{name: "data with a channel", streamID: "account-2", expected: core.Any,
			events: core.Events(chanEvent{C: make(chan int)}), check: encodeError("test.chan", new(*json.UnsupportedTypeError))},
		{name: "data with a func", streamID: "account-2", expected: core.Any,
			events: core.Events(funcEvent{F: func() {}}), check: encodeError("test.func", new(*json.UnsupportedTypeError))},
		{name: "data with NaN", streamID: "account-2", expected: core.Any,
			events: core.Events(floatEvent{X: math.NaN()}), check: encodeError("test.float", new(*json.UnsupportedValueError))},
		{name: "data with +Inf after a valid event", streamID: existing, version: 2, expected: core.Any,
			events: core.Events(Deposited{Amount: 1}, floatEvent{X: math.Inf(1)}), check: encodeError("test.float", new(*json.UnsupportedValueError))},
		{name: "NUL character in data", streamID: "account-2", expected: core.Any,
			events: core.Events(typedEvent{Type: "test.text", Text: "a\x00b"}), check: invalidInput("event data")},
		{name: "NUL character after an escaped backslash", streamID: "account-2", expected: core.Any,
			events: core.Events(typedEvent{Type: "test.text", Text: "a\\\x00b"}), check: invalidInput("event data")},
		{name: "NUL character in a header", streamID: "account-2", expected: core.Any,
			events: []core.Event{{Data: Deposited{Amount: 1}, Metadata: core.EventMetadata{Headers: map[string]string{"k": "v\x00"}}}},
			check:  invalidInput("event data")},
		{name: "NUL character in a header key", streamID: "account-2", expected: core.Any,
			events: []core.Event{{Data: Deposited{Amount: 1}, Metadata: core.EventMetadata{Headers: map[string]string{"k\x00": "v"}}}},
			check:  invalidInput("event data")},
		{name: "duplicate event id in one batch", streamID: "account-2", expected: core.Any,
			events: []core.Event{
				{Data: Deposited{Amount: 1}, Metadata: core.EventMetadata{EventID: dupID}},
				{Data: Deposited{Amount: 2}},
				{Data: Deposited{Amount: 3}, Metadata: core.EventMetadata{EventID: dupID}},
			},
			check: func(t *testing.T, err error) {
				t.Helper()
				if invalid := assertInvalidInput(t, err, "event id"); invalid.Value != dupID.String() {
					t.Errorf("Value = %q, want the duplicated id %s", invalid.Value, dupID)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			committed, err := es.Append(ctx, tt.streamID, tt.expected, tt.events...)
			if committed != nil {
				t.Errorf("committed = %+v, want nil", committed)
			}
			tt.check(t, err)
			if core.ValidateStreamID(tt.streamID) == nil {
				assertStreamVersion(t, es, tt.streamID, tt.version)
			}
			assertRowCounts(t, es, baseline)
		})
	}
}

// The same rejections through AppendTx leave the caller's transaction usable
// and store nothing even when it commits.
func TestAppendTxRejectsBadInputWithoutAbortingTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, nil)
	tx, err := pgenv.Pool(t).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // committed below

	_, err = es.AppendTx(ctx, tx, "", core.Any, core.NewEvent(Deposited{Amount: 1}))
	assertInvalidInput(t, err, "stream id")
	_, err = es.AppendTx(ctx, tx, "account-1", core.Any, core.NewEvent(typedEvent{Type: "test.text", Text: "\x00"}))
	assertInvalidInput(t, err, "event data")
	_, err = es.AppendTx(ctx, tx, "account-1", core.Exact(3), core.NewEvent(Deposited{Amount: 1}))
	assertConflict(t, err, &core.VersionConflictError{StreamID: "account-1", Expected: core.Exact(3)})
	_, err = es.AppendTx(ctx, nil, "account-1", core.Any, core.NewEvent(Deposited{Amount: 1}))
	assertInvalidInput(t, err, "tx")

	var one int
	if err := tx.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("tx unusable after rejected appends: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	assertRowCounts(t, es, rowCounts{})
}

// A stream ID of exactly MaxStreamIDLength bytes is stored and read back;
// one byte more is rejected.
func TestStreamIDLengthLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, nil)
	atLimit := "account-" + strings.Repeat("é", (core.MaxStreamIDLength-len("account-"))/2) // 8 + 2*123 = 254 bytes
	atLimit += strings.Repeat("x", core.MaxStreamIDLength-len(atLimit))
	if len(atLimit) != core.MaxStreamIDLength {
		t.Fatalf("test bug: id is %d bytes", len(atLimit))
	}

	_, err := es.Append(ctx, atLimit+"x", core.NoStream, core.NewEvent(Deposited{Amount: 1}))
	assertInvalidInput(t, err, "stream id")
	assertRowCounts(t, es, rowCounts{})

	committed, err := es.Append(ctx, atLimit, core.NoStream, core.NewEvent(Deposited{Amount: 1}))
	if err != nil {
		t.Fatalf("append at the limit: %v", err)
	}
	if committed.StreamID != atLimit || committed.ToVersion != 1 {
		t.Errorf("committed = %+v", committed)
	}
	events, err := es.ReadEvents(ctx, core.ReadStream(atLimit))
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].StreamID != atLimit {
		t.Fatalf("read back %d events: %+v", len(events), events)
	}
	assertRowCounts(t, es, rowCounts{Streams: 1, Events: 1})
}

// An event type of exactly MaxEventTypeLength bytes is accepted.
func TestEventTypeLengthLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, nil)
	eventType := strings.Repeat("t", core.MaxEventTypeLength)
	if _, err := es.Append(ctx, "test-1", core.NoStream, core.NewEvent(typedEvent{Type: eventType, Text: "x"})); err != nil {
		t.Fatalf("append: %v", err)
	}
	events, err := es.ReadEvents(ctx, core.ReadStream("test-1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].EventType != eventType {
		t.Fatalf("read back %+v", events)
	}
}

// Config.MaxEventBytes bounds data plus headers: one byte over is rejected
// with nothing written, exactly at the limit is stored.
func TestMaxEventBytes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const limit = 1024
	es := pgenv.NewStore(t, nil, &store.Config{MaxEventBytes: limit})
	// {"text":"<n bytes>"} encodes to n+11 bytes.
	text := func(size int) string { return strings.Repeat("a", size-len(`{"text":""}`)) }
	event := func(size int) core.Event { return core.NewEvent(typedEvent{Type: "test.text", Text: text(size)}) }
	withHeaders := func(dataSize, headerSize int) core.Event {
		// {"k":"<n bytes>"} encodes to n+8 bytes.
		e := event(dataSize)
		e.Metadata.Headers = map[string]string{"k": strings.Repeat("h", headerSize-len(`{"k":""}`))}
		return e
	}

	rejected := []struct {
		name  string
		event core.Event
	}{
		{"data one byte over", event(limit + 1)},
		{"data far over", event(10 * limit)},
		{"data plus headers one byte over", withHeaders(limit/2, limit/2+1)},
	}
	for _, tt := range rejected {
		_, err := es.Append(ctx, "test-1", core.Any, tt.event)
		if invalid := assertInvalidInput(t, err, "event data"); invalid.Value != "test.text" {
			t.Errorf("%s: Value = %q, want the event type", tt.name, invalid.Value)
		}
		// A valid event before the oversized one is not stored either.
		_, err = es.Append(ctx, "test-1", core.Any, core.NewEvent(Deposited{Amount: 1}), tt.event)
		assertInvalidInput(t, err, "event data")
		assertRowCounts(t, es, rowCounts{})
	}

	accepted := []core.Event{event(limit), event(limit - 1), withHeaders(limit/2, limit/2)}
	committed, err := es.Append(ctx, "test-1", core.NoStream, accepted...)
	if err != nil {
		t.Fatalf("append at the limit: %v", err)
	}
	if committed.ToVersion != 3 {
		t.Errorf("ToVersion = %d, want 3", committed.ToVersion)
	}
	events, err := es.ReadEvents(ctx, core.ReadStream("test-1"))
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range events {
		var got typedEvent
		if err := json.Unmarshal(e.Data, &got); err != nil {
			t.Fatal(err)
		}
		if want := accepted[i].Data.(typedEvent).Text; got.Text != want { //nolint:errcheck // accepted holds typedEvents only
			t.Errorf("event %d: text of %d bytes, want %d", i, len(got.Text), len(want))
		}
	}
	assertRowCounts(t, es, rowCounts{Streams: 1, Events: 3})
}

// jsonb cannot hold a NUL character, but text that merely looks like its
// escape (a backslash followed by "u0000") is ordinary data.
func TestEscapedNULLookalikeIsStored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, nil)
	texts := []string{`\u0000`, `\\u0000`, `a\u0000b`, `\`, "\\\\\\u0000"}
	var events []core.Event
	for _, text := range texts {
		events = append(events, core.Event{
			Data:     typedEvent{Type: "test.text", Text: text},
			Metadata: core.EventMetadata{Headers: map[string]string{"h": text}},
		})
	}
	if _, err := es.Append(ctx, "test-1", core.NoStream, events...); err != nil {
		t.Fatalf("append: %v", err)
	}
	read, err := es.ReadEvents(ctx, core.ReadStream("test-1"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range read {
		var data typedEvent
		if err := json.Unmarshal(e.Data, &data); err != nil {
			t.Fatal(err)
		}
		got = append(got, data.Text)
		if e.Metadata.Headers["h"] != data.Text {
			t.Errorf("header %q, want %q", e.Metadata.Headers["h"], data.Text)
		}
	}
	if diff := cmp.Diff(texts, got); diff != "" {
		t.Errorf("texts (-want +got):\n%s", diff)
	}
}

// Strings that look like SQL are data: they are stored and read back
// verbatim in every field, and the tables are still there afterwards.
func TestSQLLookingInputIsData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, nil)
	evil := []string{
		`'); DROP TABLE events; --`,
		`Robert'); DROP TABLE event_log;--`,
		`"; DROP SCHEMA public CASCADE; --`,
		`$1 $$ $x$ ; SELECT pg_sleep(10) /*`,
	}
	for i, s := range evil {
		category := fmt.Sprintf("evil%d", i)
		streamID := category + core.CategorySeparator + s
		event := core.Event{
			Data:     typedEvent{Type: s, Text: s},
			Metadata: core.EventMetadata{Headers: map[string]string{s: s}},
		}
		committed, err := es.Append(ctx, streamID, core.NoStream, event)
		if err != nil {
			t.Fatalf("append %q: %v", streamID, err)
		}
		if committed.ToVersion != 1 {
			t.Errorf("%q: ToVersion = %d, want 1", streamID, committed.ToVersion)
		}
		for _, q := range []core.StreamQuery{
			core.ReadStream(streamID),
			{StreamID: streamID, EventTypes: []string{s}},
			{Category: category, EventTypes: []string{s}},
		} {
			read, err := es.ReadEvents(ctx, q)
			if err != nil {
				t.Fatalf("read %+v: %v", q, err)
			}
			if len(read) != 1 {
				t.Fatalf("read %+v: %d events, want 1", q, len(read))
			}
			got := read[0]
			var data typedEvent
			if err := json.Unmarshal(got.Data, &data); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]any{streamID, s, s, map[string]string{s: s}},
				[]any{got.StreamID, got.EventType, data.Text, got.Metadata.Headers}); diff != "" {
				t.Errorf("read %+v: stream id, type, text, headers (-want +got):\n%s", q, diff)
			}
		}
	}
	for _, table := range []string{"events", "event_log"} {
		var exists bool
		if err := pgenv.Pool(t).QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", storeTable(es, table)).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if !exists {
			t.Errorf("table %s is gone", table)
		}
	}
	var publicExists bool
	if err := pgenv.Pool(t).QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'public')").Scan(&publicExists); err != nil {
		t.Fatal(err)
	}
	if !publicExists {
		t.Error("schema public is gone")
	}
	assertRowCounts(t, es, rowCounts{Streams: int64(len(evil)), Events: int64(len(evil))})
}

// A stored event whose type is not registered cannot be loaded: the error
// names the event. Raw reads still return it.
func TestLoadUnknownEventType(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	if _, err := es.Append(ctx, "account-7", core.NoStream,
		core.Events(Opened{Owner: "ada"}, typedEvent{Type: "account.frozen", Text: "audit"}, Deposited{Amount: 5})...); err != nil {
		t.Fatal(err)
	}

	root, err := store.Load[Account](ctx, es, "7")
	if root != nil {
		t.Errorf("root = %+v, want nil", root)
	}
	var decodeErr *core.DecodeError
	if !errors.As(err, &decodeErr) {
		t.Fatalf("err = %v (%T), want *core.DecodeError", err, err)
	}
	if !errors.Is(err, core.ErrUnknownEventType) || !errors.Is(err, core.ErrDecode) {
		t.Errorf("err = %v, want it to match ErrUnknownEventType and ErrDecode", err)
	}
	want := &core.DecodeError{StreamID: "account-7", StreamVersion: 2, EventType: "account.frozen"}
	if diff := cmp.Diff(want, decodeErr, decodeErrorOpts); diff != "" {
		t.Errorf("DecodeError (-want +got):\n%s", diff)
	}

	events, err := es.ReadEvents(ctx, core.ReadStream("account-7"))
	if err != nil {
		t.Fatalf("raw read: %v", err)
	}
	if len(events) != 3 || events[1].EventType != "account.frozen" {
		t.Errorf("raw read = %+v", events)
	}
}

// insertRawEvent writes an event the store did not encode, as other tooling
// or an old version of the application might have, bumping its stream.
func insertRawEvent(t *testing.T, es *store.EventStore, streamID, eventType, data string, headers *string) {
	t.Helper()
	ctx := context.Background()
	_, err := pgenv.Pool(t).Exec(ctx, fmt.Sprintf(`
INSERT INTO %[1]s (stream_id, stream_version, event_id, event_type, data, headers)
SELECT $1, coalesce(max(stream_version), 0) + 1, $2, $3, $4::jsonb, $5::jsonb
FROM %[1]s WHERE stream_id = $1`,
		storeTable(es, "events")),
		streamID, uuid.New(), eventType, data, headers)
	if err != nil {
		t.Fatalf("raw insert: %v", err)
	}
}

// A stored event whose data does not fit its Go type fails the load with a
// DecodeError naming it and wrapping the JSON error.
func TestLoadUndecodableData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	if _, err := es.Append(ctx, "account-9", core.NoStream, core.NewEvent(Opened{Owner: "bob"})); err != nil {
		t.Fatal(err)
	}
	insertRawEvent(t, es, "account-9", "account.deposited", `{"amount":"not a number"}`, nil)

	_, err := store.Load[Account](ctx, es, "9")
	var decodeErr *core.DecodeError
	if !errors.As(err, &decodeErr) {
		t.Fatalf("err = %v (%T), want *core.DecodeError", err, err)
	}
	if !errors.Is(err, core.ErrDecode) {
		t.Errorf("errors.Is(err, ErrDecode) = false: %v", err)
	}
	if errors.Is(err, core.ErrUnknownEventType) {
		t.Errorf("err matches ErrUnknownEventType, but the type is registered: %v", err)
	}
	var typeErr *json.UnmarshalTypeError
	if !errors.As(err, &typeErr) {
		t.Errorf("cause = %v (%T), want *json.UnmarshalTypeError", decodeErr.Err, decodeErr.Err)
	}
	want := &core.DecodeError{StreamID: "account-9", StreamVersion: 2, EventType: "account.deposited"}
	if diff := cmp.Diff(want, decodeErr, decodeErrorOpts); diff != "" {
		t.Errorf("DecodeError (-want +got):\n%s", diff)
	}
}

// Stored headers that are not a JSON object of strings fail reads with a
// DecodeError naming the event. A load replays only types and data (what
// Apply and upcasters see), so it neither decodes nor trips on them.
func TestReadUndecodableHeaders(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	headers := `{"retries": 3}`
	insertRawEvent(t, es, "account-3", "account.deposited", `{"amount": 1}`, &headers)

	events, err := es.ReadEvents(ctx, core.ReadStream("account-3"))
	if events != nil {
		t.Errorf("events = %+v, want nil", events)
	}
	var decodeErr *core.DecodeError
	if !errors.As(err, &decodeErr) {
		t.Fatalf("err = %v (%T), want *core.DecodeError", err, err)
	}
	want := &core.DecodeError{StreamID: "account-3", StreamVersion: 1, EventType: "account.deposited"}
	if diff := cmp.Diff(want, decodeErr, decodeErrorOpts); diff != "" {
		t.Errorf("DecodeError (-want +got):\n%s", diff)
	}
	root, err := store.Load[Account](ctx, es, "3")
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if root.Version() != 1 || root.State().Balance != 1 {
		t.Errorf("loaded version %d balance %d, want 1 and 1", root.Version(), root.State().Balance)
	}
}

// Queries that cannot run are refused by Read before touching the database,
// with the field named, and nothing else is yielded.
func TestReadRejectsInvalidQuery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, nil)
	if _, err := es.Append(ctx, "account-1", core.NoStream, core.NewEvent(Deposited{Amount: 1})); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		query core.StreamQuery
		field string
	}{
		{"stream and category", core.StreamQuery{StreamID: "account-1", Category: "account"}, "stream query"},
		{"negative limit", core.StreamQuery{StreamID: "account-1", Limit: -1}, "limit"},
		{"negative limit on the log", core.StreamQuery{Limit: -5}, "limit"},
		{"from version on a category", core.StreamQuery{Category: "account", FromVersion: 2}, "from version"},
		{"from version on the log", core.StreamQuery{FromVersion: 1}, "from version"},
		{"from position on a stream", core.StreamQuery{StreamID: "account-1", FromPosition: 1}, "from position"},
		{"negative from version", core.StreamQuery{StreamID: "account-1", FromVersion: -1}, "from version"},
		{"negative from position", core.StreamQuery{FromPosition: -1}, "from position"},
		{"unknown direction", core.StreamQuery{StreamID: "account-1", Direction: core.Backward + 1}, "direction"},
		{"category with separator", core.StreamQuery{Category: "account-1"}, "category"},
		{"category of only a separator", core.StreamQuery{Category: "-"}, "category"},
		{"stream id with NUL", core.StreamQuery{StreamID: "account-\x00"}, "stream id"},
		{"stream id over the limit", core.StreamQuery{StreamID: strings.Repeat("a", core.MaxStreamIDLength+1)}, "stream id"},
		{"empty event type filter", core.StreamQuery{StreamID: "account-1", EventTypes: []string{"account.deposited", ""}}, "event type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			yields := 0
			for event, err := range es.Read(ctx, tt.query) {
				yields++
				if event != nil {
					t.Errorf("yielded event %+v", event)
				}
				assertInvalidInput(t, err, tt.field)
			}
			if yields != 1 {
				t.Errorf("%d yields, want exactly 1 error", yields)
			}
			events, err := es.ReadEvents(ctx, tt.query)
			if events != nil {
				t.Errorf("ReadEvents returned %+v", events)
			}
			assertInvalidInput(t, err, tt.field)
		})
	}
}

// store.New validates its Config and names the offending field, without
// touching the database.
func TestNewRejectsInvalidConfig(t *testing.T) {
	t.Parallel()
	pool := pgenv.Pool(t)
	tests := []struct {
		name   string
		config store.Config
		field  string
	}{
		{"uppercase and dash", store.Config{Schema: "Bad-Name"}, "Config.Schema"},
		{"reserved prefix", store.Config{Schema: "pg_x"}, "Config.Schema"},
		{"60 bytes", store.Config{Schema: strings.Repeat("s", 60)}, "Config.Schema"},
		{"49 bytes", store.Config{Schema: strings.Repeat("s", 49)}, "Config.Schema"},
		{"leading digit", store.Config{Schema: "1mire"}, "Config.Schema"},
		{"quote", store.Config{Schema: `mire"; DROP SCHEMA public; --`}, "Config.Schema"},
		{"dot", store.Config{Schema: "public.events"}, "Config.Schema"},
		{"space", store.Config{Schema: "mire "}, "Config.Schema"},
		{"negative MaxEventBytes", store.Config{MaxEventBytes: -1}, "Config.MaxEventBytes"},
		{"negative ReadPageSize", store.Config{ReadPageSize: -1}, "Config.ReadPageSize"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			es, err := store.New(pool, &tt.config)
			if es != nil {
				t.Errorf("store = %v, want nil", es)
			}
			assertInvalidInput(t, err, tt.field)
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("message %q does not name %s", err, tt.field)
			}
		})
	}

	valid := []struct {
		config *store.Config
		schema string
	}{
		{nil, store.SchemaDefault},
		{&store.Config{}, store.SchemaDefault},
		{&store.Config{Schema: strings.Repeat("s", 48)}, strings.Repeat("s", 48)},
		{&store.Config{Schema: "_tenant_1"}, "_tenant_1"},
		{&store.Config{Schema: "pgx"}, "pgx"},
	}
	for _, tt := range valid {
		es, err := store.New(pool, tt.config)
		if err != nil {
			t.Errorf("New(%+v): %v", tt.config, err)
			continue
		}
		if es.Schema() != tt.schema {
			t.Errorf("New(%+v).Schema() = %q, want %q", tt.config, es.Schema(), tt.schema)
		}
	}

	es, err := store.New(nil, nil)
	if es != nil {
		t.Errorf("New(nil pool) = %v, want nil", es)
	}
	assertInvalidInput(t, err, "pool")
}
