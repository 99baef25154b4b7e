package integration_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

// logEntry is what ordering tests compare of a recorded event.
type logEntry struct {
	Stream   string
	Version  int64
	Position int64
	Type     string
}

func logEntries(events []*core.RecordedEvent) []logEntry {
	entries := make([]logEntry, 0, len(events))
	for _, e := range events {
		entries = append(entries, logEntry{e.StreamID, e.StreamVersion, e.GlobalPosition, e.EventType})
	}
	return entries
}

// appendedLog appends events one at a time, in order, and remembers each
// with the global position it will get: appends run one after another, so
// positions follow append order.
type appendedLog struct {
	es      *store.EventStore
	entries []logEntry
}

func (l *appendedLog) add(t *testing.T, streamID string, data core.EventData) {
	t.Helper()
	committed, err := l.es.Append(context.Background(), streamID, core.Any, core.NewEvent(data))
	if err != nil {
		t.Fatalf("append to %q: %v", streamID, err)
	}
	l.entries = append(l.entries, logEntry{streamID, committed.ToVersion, int64(len(l.entries) + 1), data.EventType()})
}

// sequence assigns the positions, so that stream reads, which do not
// sequence, report them too whether or not another read ran first.
func (l *appendedLog) sequence(t *testing.T) {
	t.Helper()
	assigned, err := l.es.Sequence(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if assigned != int64(len(l.entries)) {
		t.Fatalf("sequenced %d events, want %d", assigned, len(l.entries))
	}
}

// where returns the entries keep accepts, in log order or reversed.
func (l *appendedLog) where(backward bool, keep func(logEntry) bool) []logEntry {
	var out []logEntry
	for _, e := range l.entries {
		if keep(e) {
			out = append(out, e)
		}
	}
	if backward {
		slices.Reverse(out)
	}
	return out
}

func readEntries(t *testing.T, es *store.EventStore, q core.StreamQuery) []logEntry {
	t.Helper()
	events, err := es.ReadEvents(context.Background(), q)
	if err != nil {
		t.Fatalf("read %+v: %v", q, err)
	}
	return logEntries(events)
}

func firstN(entries []logEntry, n int) []logEntry {
	return entries[:min(n, len(entries))]
}

func inStream(id string) func(logEntry) bool {
	return func(e logEntry) bool { return e.Stream == id }
}

func ofTypes(types ...string) func(logEntry) bool {
	return func(e logEntry) bool { return slices.Contains(types, e.Type) }
}

func and(preds ...func(logEntry) bool) func(logEntry) bool {
	return func(e logEntry) bool {
		for _, p := range preds {
			if !p(e) {
				return false
			}
		}
		return true
	}
}

var (
	deposited = core.EventTypeOf[Deposited]()
	withdrawn = core.EventTypeOf[Withdrawn]()
	opened    = core.EventTypeOf[Opened]()
)

// Stream reads: direction, FromVersion, Limit and EventTypes, alone and
// combined, see only their stream.
func TestReadStream(t *testing.T) {
	t.Parallel()
	es := pgenv.NewStore(t, nil, nil)
	log := &appendedLog{es: es}
	log.add(t, "account-1", Opened{Owner: "ada"})
	for i := 2; i <= 10; i++ {
		log.add(t, "account-10", Deposited{Amount: int64(i)}) // a stream whose ID extends account-1's
		if i%2 == 0 {
			log.add(t, "account-1", Deposited{Amount: int64(i)})
		} else {
			log.add(t, "account-1", Withdrawn{Amount: 1})
		}
	}
	log.sequence(t)
	stream := func(backward bool, keep ...func(logEntry) bool) []logEntry {
		return log.where(backward, and(append(keep, inStream("account-1"))...))
	}
	fromVersion := func(v int64, backward bool) func(logEntry) bool {
		return func(e logEntry) bool { return (!backward && e.Version >= v) || (backward && e.Version <= v) }
	}

	tests := []struct {
		name  string
		query core.StreamQuery
		want  []logEntry
	}{
		{"forward", core.ReadStream("account-1"), stream(false)},
		{"backward", core.StreamQuery{StreamID: "account-1", Direction: core.Backward}, stream(true)},
		{"from version", core.StreamQuery{StreamID: "account-1", FromVersion: 4}, stream(false, fromVersion(4, false))},
		{"from version backward", core.StreamQuery{StreamID: "account-1", FromVersion: 4, Direction: core.Backward}, stream(true, fromVersion(4, true))},
		{"from the last version", core.StreamQuery{StreamID: "account-1", FromVersion: 10}, stream(false, fromVersion(10, false))},
		{"from past the end", core.StreamQuery{StreamID: "account-1", FromVersion: 11}, nil},
		{"backward from the first version", core.StreamQuery{StreamID: "account-1", FromVersion: 1, Direction: core.Backward}, stream(true, fromVersion(1, true))},
		{"backward from past the end", core.StreamQuery{StreamID: "account-1", FromVersion: 100, Direction: core.Backward}, stream(true)},
		{"limit", core.StreamQuery{StreamID: "account-1", Limit: 3}, firstN(stream(false), 3)},
		{"limit backward", core.StreamQuery{StreamID: "account-1", Limit: 3, Direction: core.Backward}, firstN(stream(true), 3)},
		{"limit past the end", core.StreamQuery{StreamID: "account-1", FromVersion: 9, Limit: 5}, stream(false, fromVersion(9, false))},
		{"limit over the stream", core.StreamQuery{StreamID: "account-1", Limit: 1000}, stream(false)},
		{"types", core.StreamQuery{StreamID: "account-1", EventTypes: []string{deposited}}, stream(false, ofTypes(deposited))},
		{"two types", core.StreamQuery{StreamID: "account-1", EventTypes: []string{deposited, opened}}, stream(false, ofTypes(deposited, opened))},
		{"types backward with limit", core.StreamQuery{StreamID: "account-1", EventTypes: []string{deposited}, Direction: core.Backward, Limit: 2},
			firstN(stream(true, ofTypes(deposited)), 2)},
		{"types from version with limit", core.StreamQuery{StreamID: "account-1", EventTypes: []string{withdrawn}, FromVersion: 4, Limit: 2},
			firstN(stream(false, ofTypes(withdrawn), fromVersion(4, false)), 2)},
		{"unknown type", core.StreamQuery{StreamID: "account-1", EventTypes: []string{"account.closed"}}, nil},
		{"missing stream", core.ReadStream("account-2"), nil},
		{"missing stream backward", core.StreamQuery{StreamID: "account-2", Direction: core.Backward}, nil},
	}
	if n := len(stream(false)); n != 10 {
		t.Fatalf("test bug: stream has %d events", n)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, readEntries(t, es, tt.query), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("read %+v (-want +got):\n%s", tt.query, diff)
			}
		})
	}
}

// ReadTx sees the caller's uncommitted appends; other readers do not.
func TestReadTxSeesOwnWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, nil)
	seedStream(t, es, "account-1", 2)
	tx, err := pgenv.Pool(t).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // rolled back below
	if _, err := es.AppendTx(ctx, tx, "account-1", core.Exact(2), core.NewEvent(Withdrawn{Amount: 1})); err != nil {
		t.Fatal(err)
	}
	var inTx []int64
	for e, err := range es.ReadTx(ctx, tx, core.ReadStream("account-1")) {
		if err != nil {
			t.Fatal(err)
		}
		inTx = append(inTx, e.StreamVersion)
	}
	if diff := cmp.Diff([]int64{1, 2, 3}, inTx); diff != "" {
		t.Errorf("ReadTx versions (-want +got):\n%s", diff)
	}
	outside := readEntries(t, es, core.ReadStream("account-1"))
	if len(outside) != 2 {
		t.Errorf("outside the tx: %d events, want 2", len(outside))
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if after := readEntries(t, es, core.ReadStream("account-1")); len(after) != 2 {
		t.Errorf("after rollback: %d events, want 2", len(after))
	}
}

// Category and whole-log reads: ordered by global position, direction,
// FromPosition, Limit, EventTypes; a category is exactly the streams
// "<category>-…".
func TestReadCategoryAndAll(t *testing.T) {
	t.Parallel()
	es := pgenv.NewStore(t, nil, nil)
	log := &appendedLog{es: es}
	streams := []string{"account-1", "accounts-1", "account-2", "acc-1", "transfer-1", "Account-1", "xaccount-1", "account-3", "account_1-1"}
	for round := range 4 {
		for i, s := range streams {
			var data core.EventData = Deposited{Amount: int64(round*10 + i)}
			switch {
			case round == 0:
				data = Opened{Owner: s}
			case (round+i)%3 == 0:
				data = Withdrawn{Amount: 1}
			}
			log.add(t, s, data)
		}
	}
	accounts := func(e logEntry) bool {
		return e.Stream == "account-1" || e.Stream == "account-2" || e.Stream == "account-3"
	}
	from := func(p int64, backward bool) func(logEntry) bool {
		return func(e logEntry) bool { return (!backward && e.Position >= p) || (backward && e.Position <= p) }
	}
	all := func(logEntry) bool { return true }
	mid := int64(len(log.entries) / 2)

	tests := []struct {
		name  string
		query core.StreamQuery
		want  []logEntry
	}{
		{"category", core.ReadCategory("account"), log.where(false, accounts)},
		{"category with separator", core.ReadCategory("account-"), log.where(false, accounts)},
		{"category backward", core.StreamQuery{Category: "account", Direction: core.Backward}, log.where(true, accounts)},
		{"category from position", core.StreamQuery{Category: "account", FromPosition: mid}, log.where(false, and(accounts, from(mid, false)))},
		{"category from position backward", core.StreamQuery{Category: "account-", FromPosition: mid, Direction: core.Backward},
			log.where(true, and(accounts, from(mid, true)))},
		{"category from past the head", core.StreamQuery{Category: "account", FromPosition: 1000}, nil},
		{"category backward from past the head", core.StreamQuery{Category: "account", FromPosition: 1000, Direction: core.Backward},
			log.where(true, accounts)},
		{"category limit", core.StreamQuery{Category: "account", Limit: 4}, firstN(log.where(false, accounts), 4)},
		{"category limit backward", core.StreamQuery{Category: "account", Limit: 4, Direction: core.Backward}, firstN(log.where(true, accounts), 4)},
		{"category types", core.StreamQuery{Category: "account", EventTypes: []string{withdrawn}}, log.where(false, and(accounts, ofTypes(withdrawn)))},
		{"category types from position backward with limit",
			core.StreamQuery{Category: "account", EventTypes: []string{deposited}, FromPosition: mid, Direction: core.Backward, Limit: 2},
			firstN(log.where(true, and(accounts, ofTypes(deposited), from(mid, true))), 2)},
		{"category accounts", core.ReadCategory("accounts"), log.where(false, inStream("accounts-1"))},
		{"category acc", core.ReadCategory("acc"), log.where(false, inStream("acc-1"))},
		{"category is case sensitive", core.ReadCategory("Account"), log.where(false, inStream("Account-1"))},
		{"category with underscore", core.ReadCategory("account_1"), log.where(false, inStream("account_1-1"))},
		{"category missing", core.ReadCategory("ledger"), nil},
		{"all", core.ReadAll(), log.where(false, all)},
		{"all backward", core.StreamQuery{Direction: core.Backward}, log.where(true, all)},
		{"all from position", core.StreamQuery{FromPosition: mid}, log.where(false, from(mid, false))},
		{"all from position backward", core.StreamQuery{FromPosition: mid, Direction: core.Backward}, log.where(true, from(mid, true))},
		{"all from the head", core.StreamQuery{FromPosition: int64(len(log.entries))}, log.where(false, from(int64(len(log.entries)), false))},
		{"all backward from the first", core.StreamQuery{FromPosition: 1, Direction: core.Backward}, log.where(true, from(1, true))},
		{"all limit", core.StreamQuery{Limit: 5}, firstN(log.where(false, all), 5)},
		{"all limit backward", core.StreamQuery{Limit: 5, Direction: core.Backward}, firstN(log.where(true, all), 5)},
		{"all types", core.StreamQuery{EventTypes: []string{opened, withdrawn}}, log.where(false, ofTypes(opened, withdrawn))},
	}
	if len(log.where(false, accounts)) != 12 {
		t.Fatal("test bug: wrong account count")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, readEntries(t, es, tt.query), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("read %+v (-want +got):\n%s", tt.query, diff)
			}
		})
	}
}

// A stream ID without the separator ("account") is in no category: a
// category selects the streams whose ID starts with it followed by "-".
func TestReadCategoryExcludesStreamWithoutSeparator(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, nil)
	if _, err := es.Append(ctx, "account", core.NoStream, core.NewEvent(Opened{Owner: "not an account stream"})); err != nil {
		t.Fatal(err)
	}
	if _, err := es.Append(ctx, "account-1", core.NoStream, core.NewEvent(Opened{Owner: "ada"})); err != nil {
		t.Fatal(err)
	}
	got := readEntries(t, es, core.ReadCategory("account"))
	want := []logEntry{{Stream: "account-1", Version: 1, Position: 2, Type: opened}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("category read includes a stream without the separator (-want +got):\n%s", diff)
	}
}

// Reads fetch ReadPageSize events per round trip; across page boundaries no
// event is lost or repeated, in either direction, with or without a limit.
func TestReadPaging(t *testing.T) {
	t.Parallel()
	const pageSize = 7
	es := pgenv.NewStore(t, nil, &store.Config{ReadPageSize: pageSize, Registry: bankRegistry()})
	log := &appendedLog{es: es}
	log.add(t, "account-1", Opened{Owner: "ada"})
	for i := 2; i <= 50; i++ {
		if i%5 == 0 {
			log.add(t, "account-2", Deposited{Amount: int64(i)})
			log.add(t, "other-1", Deposited{Amount: int64(i)})
		}
		if i%3 == 0 {
			log.add(t, "account-1", Withdrawn{Amount: 1})
		} else {
			log.add(t, "account-1", Deposited{Amount: 2})
		}
	}
	log.sequence(t)
	stream := func(backward bool, keep ...func(logEntry) bool) []logEntry {
		return log.where(backward, and(append(keep, inStream("account-1"))...))
	}
	accounts := func(e logEntry) bool { return e.Stream == "account-1" || e.Stream == "account-2" }
	all := func(logEntry) bool { return true }
	if n := len(stream(false)); n != 50 {
		t.Fatalf("test bug: stream has %d events", n)
	}
	assertNoRepeats := func(t *testing.T, entries []logEntry) {
		t.Helper()
		seen := map[logEntry]bool{}
		for _, e := range entries {
			if seen[e] {
				t.Errorf("%+v read twice", e)
			}
			seen[e] = true
		}
	}

	type readCase struct {
		name  string
		query core.StreamQuery
		want  []logEntry
	}
	var tests []readCase
	for _, backward := range []bool{false, true} {
		dir := core.Forward
		if backward {
			dir = core.Backward
		}
		tests = append(tests,
			readCase{fmt.Sprintf("stream %s", dir), core.StreamQuery{StreamID: "account-1", Direction: dir}, stream(backward)},
			readCase{fmt.Sprintf("category %s", dir), core.StreamQuery{Category: "account", Direction: dir}, log.where(backward, accounts)},
			readCase{fmt.Sprintf("all %s", dir), core.StreamQuery{Direction: dir}, log.where(backward, all)},
			readCase{fmt.Sprintf("stream types %s", dir), core.StreamQuery{StreamID: "account-1", Direction: dir, EventTypes: []string{withdrawn}},
				stream(backward, ofTypes(withdrawn))},
			readCase{fmt.Sprintf("all types %s", dir), core.StreamQuery{Direction: dir, EventTypes: []string{deposited}},
				log.where(backward, ofTypes(deposited))},
		)
		for _, limit := range []int{1, pageSize - 1, pageSize, pageSize + 1, 2 * pageSize, 2*pageSize + 1, 20, 49, 50, 51, 500} {
			tests = append(tests,
				readCase{fmt.Sprintf("stream %s limit %d", dir, limit), core.StreamQuery{StreamID: "account-1", Direction: dir, Limit: limit},
					firstN(stream(backward), limit)},
				readCase{fmt.Sprintf("category %s limit %d", dir, limit), core.StreamQuery{Category: "account", Direction: dir, Limit: limit},
					firstN(log.where(backward, accounts), limit)},
				readCase{fmt.Sprintf("all %s limit %d", dir, limit), core.StreamQuery{Direction: dir, Limit: limit},
					firstN(log.where(backward, all), limit)},
			)
		}
	}
	tests = append(tests,
		readCase{"stream from version with limit", core.StreamQuery{StreamID: "account-1", FromVersion: 10, Limit: 15},
			firstN(stream(false, func(e logEntry) bool { return e.Version >= 10 }), 15)},
		readCase{"stream backward from version with limit", core.StreamQuery{StreamID: "account-1", FromVersion: 40, Limit: 15, Direction: core.Backward},
			firstN(stream(true, func(e logEntry) bool { return e.Version <= 40 }), 15)},
		readCase{"all from position with limit", core.StreamQuery{FromPosition: 9, Limit: 16},
			firstN(log.where(false, func(e logEntry) bool { return e.Position >= 9 }), 16)},
		readCase{"category backward from position", core.StreamQuery{Category: "account", FromPosition: 30, Direction: core.Backward},
			log.where(true, and(accounts, func(e logEntry) bool { return e.Position <= 30 }))},
	)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := readEntries(t, es, tt.query)
			assertNoRepeats(t, got)
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("read %+v (-want +got):\n%s", tt.query, diff)
			}
		})
	}

	t.Run("load across pages", func(t *testing.T) {
		t.Parallel()
		root, err := store.Load[Account](context.Background(), es, "1")
		if err != nil {
			t.Fatal(err)
		}
		if root.Version() != 50 || root.State().Applied != 50 {
			t.Errorf("loaded version %d with %d events applied, want 50 and 50", root.Version(), root.State().Applied)
		}
	})
}

// Breaking out of a read stops it cleanly and releases its connection, in
// the first page or a later one.
func TestReadBreakEarly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, pgenv.NewPool(t, 1), &store.Config{ReadPageSize: 7})
	log := &appendedLog{es: es}
	for i := range 30 {
		log.add(t, fmt.Sprintf("account-%d", i%3), Deposited{Amount: int64(i)})
	}
	for _, q := range []core.StreamQuery{
		core.ReadStream("account-0"),
		{StreamID: "account-0", Direction: core.Backward},
		core.ReadCategory("account"),
		core.ReadAll(),
		{Direction: core.Backward},
	} {
		for _, stopAfter := range []int{1, 7, 10} {
			n := 0
			for _, err := range es.Read(ctx, q) {
				if err != nil {
					t.Fatalf("read %+v: %v", q, err)
				}
				n++
				if n == stopAfter {
					break
				}
			}
			if n != stopAfter {
				t.Fatalf("read %+v: %d events before break, want %d", q, n, stopAfter)
			}
			// The pool's single connection must be free again.
			opCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if _, err := es.StreamVersion(opCtx, "account-0"); err != nil {
				t.Fatalf("after breaking out of %+v at %d: %v", q, stopAfter, err)
			}
			cancel()
		}
	}
	opCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := es.Append(opCtx, "account-0", core.Exact(10), core.NewEvent(Deposited{Amount: 1})); err != nil {
		t.Fatalf("append after early breaks: %v", err)
	}
	if got := readEntries(t, es, core.ReadAll()); len(got) != 31 {
		t.Errorf("read %d events, want 31", len(got))
	}
}

// Everything appended comes back: IDs, correlation and causation, headers,
// type, data, versions, positions, and the commit time in UTC.
func TestRecordedEventRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, nil)
	seedStream(t, es, "account-0", 1)
	events := []core.Event{
		{Data: Opened{Owner: "ada ☃ \"quoted\" <html> \\ \u2028"}, Metadata: core.EventMetadata{
			EventID: uuid.New(), CorrelationID: uuid.New(), CausationID: uuid.New(),
			Headers: map[string]string{"tenant": "t1", "empty": "", "ünï": "cödé", "json": `{"a":1}`},
		}},
		{Data: Deposited{Amount: -9007199254740993}, Metadata: core.EventMetadata{Headers: map[string]string{"only": "headers"}}},
		{Data: Withdrawn{Amount: 0}, Metadata: core.EventMetadata{CausationID: uuid.New()}},
	}
	before := time.Now()
	committed, err := es.Append(ctx, "account-1", core.NoStream, events...)
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()

	want := make([]*core.RecordedEvent, len(events))
	for i, e := range events {
		data, err := json.Marshal(e.Data)
		if err != nil {
			t.Fatal(err)
		}
		metadata := e.Metadata
		if metadata.EventID == uuid.Nil {
			metadata.EventID = committed.Events[i].Metadata.EventID
			if metadata.EventID.Version() != 7 {
				t.Errorf("event %d: assigned id %s is not a UUIDv7", i, metadata.EventID)
			}
		}
		want[i] = &core.RecordedEvent{
			GlobalPosition: 0, StreamID: "account-1", StreamVersion: int64(i + 1),
			EventType: e.Data.EventType(), Data: data, Metadata: metadata,
		}
	}
	recordedAt := committed.Events[0].RecordedAt
	if recordedAt.Location() != time.UTC {
		t.Errorf("RecordedAt %v is not in UTC", recordedAt)
	}
	if slack := 5 * time.Second; recordedAt.Before(before.Add(-slack)) || recordedAt.After(after.Add(slack)) {
		t.Errorf("RecordedAt %v not between %v and %v", recordedAt, before, after)
	}
	ignoreTime := cmpopts.IgnoreFields(core.RecordedEvent{}, "RecordedAt")
	checkTimes := func(t *testing.T, got []*core.RecordedEvent) {
		t.Helper()
		for i, e := range got {
			if e.RecordedAt.Location() != time.UTC || !e.RecordedAt.Equal(recordedAt) {
				t.Errorf("event %d: RecordedAt %v (%v), want %v in UTC", i, e.RecordedAt, e.RecordedAt.Location(), recordedAt)
			}
		}
	}

	var gotCommitted []*core.RecordedEvent
	for i := range committed.Events {
		gotCommitted = append(gotCommitted, &committed.Events[i])
	}
	if diff := cmp.Diff(want, gotCommitted, committedOpts, ignoreTime); diff != "" {
		t.Errorf("committed events (-want +got):\n%s", diff)
	}
	checkTimes(t, gotCommitted)

	// Reads mark what they return as upcast: decoding must not upcast again.
	for _, e := range want {
		e.Upcasted = true
	}
	// Before sequencing, a stream read has no positions.
	got, err := es.ReadEvents(ctx, core.ReadStream("account-1"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, committedOpts, ignoreTime); diff != "" {
		t.Errorf("stream read (-want +got):\n%s", diff)
	}
	checkTimes(t, got)

	// A whole-log read sequences: account-0's event is position 1.
	for i := range want {
		want[i].GlobalPosition = int64(i + 2)
	}
	got, err = es.ReadEvents(ctx, core.ReadCategory("account"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("category read: %d events, want 4", len(got))
	}
	if diff := cmp.Diff(want, got[1:], committedOpts, ignoreTime); diff != "" {
		t.Errorf("category read (-want +got):\n%s", diff)
	}
	checkTimes(t, got[1:])
	got, err = es.ReadEvents(ctx, core.ReadStream("account-1"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, committedOpts, ignoreTime); diff != "" {
		t.Errorf("stream read after sequencing (-want +got):\n%s", diff)
	}

	// Data decodes back to the values appended.
	var owner Opened
	if err := json.Unmarshal(got[0].Data, &owner); err != nil || owner != events[0].Data {
		t.Errorf("data %s decodes to %+v (%v), want %+v", got[0].Data, owner, err, events[0].Data)
	}
	var amount Deposited
	if err := json.Unmarshal(got[1].Data, &amount); err != nil || amount != events[1].Data {
		t.Errorf("data %s decodes to %+v (%v), want %+v", got[1].Data, amount, err, events[1].Data)
	}
}

// Credited is an old name of Deposited: events stored as "account.credited"
// are read as "account.deposited".
type Credited struct {
	Amount int64 `json:"amount"`
}

func (Credited) EventType() string { return "account.credited" }

// storedRow is an event row as the database holds it.
type storedRow struct {
	Type string
	Data map[string]any
}

func storedRows(t *testing.T, es *store.EventStore) []storedRow {
	t.Helper()
	rows, err := pgenv.Pool(t).Query(context.Background(),
		"SELECT event_type, data FROM "+storeTable(es, "events")+" ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []storedRow
	for rows.Next() {
		var r storedRow
		var data []byte
		if err := rows.Scan(&r.Type, &data); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &r.Data); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// A renamed event type is upcast on every read and load, filters on the new
// name find events stored under the old one, and the stored rows are never
// rewritten.
func TestUpcastRename(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	registry := bankRegistry()
	if err := registry.RenameEventType("account.credited", deposited); err != nil {
		t.Fatal(err)
	}
	es := pgenv.NewStore(t, nil, &store.Config{Registry: registry})
	if _, err := es.Append(ctx, "account-1", core.NoStream,
		core.Events(Opened{Owner: "ada"}, Credited{Amount: 7}, Deposited{Amount: 3}, Withdrawn{Amount: 1})...); err != nil {
		t.Fatal(err)
	}
	if _, err := es.Append(ctx, "transfer-1", core.NoStream, core.NewEvent(Credited{Amount: 100})); err != nil {
		t.Fatal(err)
	}
	stored := storedRows(t, es)
	wantStored := []storedRow{
		{opened, map[string]any{"owner": "ada"}},
		{"account.credited", map[string]any{"amount": 7.0}},
		{deposited, map[string]any{"amount": 3.0}},
		{withdrawn, map[string]any{"amount": 1.0}},
		{"account.credited", map[string]any{"amount": 100.0}},
	}
	if diff := cmp.Diff(wantStored, stored); diff != "" {
		t.Fatalf("stored rows (-want +got):\n%s", diff)
	}

	root, err := store.Load[Account](ctx, es, "1")
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if diff := cmp.Diff(&Account{Owner: "ada", Balance: 9, Applied: 4, IsOpened: true}, root.State()); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}

	types := func(q core.StreamQuery) []logEntry {
		entries := readEntries(t, es, q)
		for i := range entries {
			entries[i].Position = 0
		}
		return entries
	}
	all := []logEntry{
		{"account-1", 1, 0, opened}, {"account-1", 2, 0, deposited}, {"account-1", 3, 0, deposited},
		{"account-1", 4, 0, withdrawn}, {"transfer-1", 1, 0, deposited},
	}
	tests := []struct {
		name  string
		query core.StreamQuery
		want  []logEntry
	}{
		{"stream", core.ReadStream("account-1"), all[:4]},
		{"stream filtered", core.StreamQuery{StreamID: "account-1", EventTypes: []string{deposited}}, all[1:3]},
		{"stream filtered backward", core.StreamQuery{StreamID: "account-1", EventTypes: []string{deposited}, Direction: core.Backward},
			[]logEntry{all[2], all[1]}},
		{"category filtered", core.StreamQuery{Category: "account", EventTypes: []string{deposited}}, all[1:3]},
		{"all filtered", core.StreamQuery{EventTypes: []string{deposited}}, []logEntry{all[1], all[2], all[4]}},
		{"all", core.ReadAll(), all},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, types(tt.query)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
	events, err := es.ReadEvents(ctx, core.StreamQuery{StreamID: "account-1", FromVersion: 2, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	var data Deposited
	if err := json.Unmarshal(events[0].Data, &data); err != nil || data.Amount != 7 {
		t.Errorf("upcast data %s = %+v (%v), want amount 7", events[0].Data, data, err)
	}

	if diff := cmp.Diff(stored, storedRows(t, es)); diff != "" {
		t.Errorf("reads rewrote stored rows (-before +after):\n%s", diff)
	}
}

// TillEntry is an event whose currency field was added later; stored
// entries without one are upcast to the default. "till.credit" is its
// original name.
type TillEntry struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

func (TillEntry) EventType() string { return "till.entry" }

// tillEntryV1 and tillCredit are the older shapes, used only to store
// events as an old version of the application did.
type tillEntryV1 struct {
	Amount int64 `json:"amount"`
}

func (tillEntryV1) EventType() string { return "till.entry" }

type tillCredit struct {
	Amount int64 `json:"amount"`
}

func (tillCredit) EventType() string { return "till.credit" }

type Till struct{ Totals map[string]int64 }

func (*Till) Category() string { return "till" }

func (t *Till) Apply(event core.EventData) {
	if t.Totals == nil {
		t.Totals = map[string]int64{}
	}
	if e, ok := event.(TillEntry); ok {
		t.Totals[e.Currency] += e.Amount
	}
}

func defaultCurrency(data json.RawMessage) (string, json.RawMessage, error) {
	var fields map[string]any
	if err := json.Unmarshal(data, &fields); err != nil {
		return "", nil, err
	}
	if _, ok := fields["currency"]; !ok {
		fields["currency"] = "EUR"
	}
	upcast, err := json.Marshal(fields)
	return "till.entry", upcast, err
}

// A shape upcaster adds a defaulted field, also after a rename in a chain.
func TestUpcastAddsDefaultedField(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	registry := core.NewRegistry()
	core.Register[TillEntry](registry)
	if err := registry.AddUpcaster("till.entry", "till.entry", defaultCurrency); err != nil {
		t.Fatal(err)
	}
	if err := registry.RenameEventType("till.credit", "till.entry"); err != nil {
		t.Fatal(err)
	}
	es := pgenv.NewStore(t, nil, &store.Config{Registry: registry})
	if _, err := es.Append(ctx, "till-1", core.NoStream,
		core.Events(tillCredit{Amount: 1}, tillEntryV1{Amount: 5}, TillEntry{Amount: 3, Currency: "USD"}, tillEntryV1{Amount: 10})...); err != nil {
		t.Fatal(err)
	}
	stored := storedRows(t, es)

	root, err := store.Load[Till](ctx, es, "1")
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if diff := cmp.Diff(map[string]int64{"EUR": 16, "USD": 3}, root.State().Totals); diff != "" {
		t.Errorf("totals (-want +got):\n%s", diff)
	}

	events, err := es.ReadEvents(ctx, core.StreamQuery{StreamID: "till-1", EventTypes: []string{"till.entry"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []TillEntry
	for _, e := range events {
		if e.EventType != "till.entry" {
			t.Errorf("version %d: type %q, want till.entry", e.StreamVersion, e.EventType)
		}
		var entry TillEntry
		if err := json.Unmarshal(e.Data, &entry); err != nil {
			t.Fatal(err)
		}
		got = append(got, entry)
	}
	want := []TillEntry{{1, "EUR"}, {5, "EUR"}, {3, "USD"}, {10, "EUR"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("upcast entries (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(stored, storedRows(t, es)); diff != "" {
		t.Errorf("reads rewrote stored rows (-before +after):\n%s", diff)
	}
	if _, ok := stored[1].Data["currency"]; ok || stored[0].Type != "till.credit" {
		t.Errorf("stored rows %+v were written upcast", stored)
	}
}

var errLegacyFormat = errors.New("legacy format no longer supported")

// A failing upcaster fails loads and reads with a DecodeError naming the
// stored event and wrapping the upcaster's error; events before it are
// still read.
func TestUpcasterError(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	registry := bankRegistry()
	if err := registry.AddUpcaster("account.legacy", deposited, func(json.RawMessage) (string, json.RawMessage, error) {
		return "", nil, errLegacyFormat
	}); err != nil {
		t.Fatal(err)
	}
	es := pgenv.NewStore(t, nil, &store.Config{Registry: registry})
	if _, err := es.Append(ctx, "account-5", core.NoStream,
		core.Events(Opened{Owner: "ada"}, typedEvent{Type: "account.legacy", Text: "old"}, Deposited{Amount: 1})...); err != nil {
		t.Fatal(err)
	}
	stored := storedRows(t, es)

	assertUpcastFailure := func(t *testing.T, what string, err error, position int64) {
		t.Helper()
		var decodeErr *core.DecodeError
		if !errors.As(err, &decodeErr) {
			t.Fatalf("%s: err = %v (%T), want *core.DecodeError", what, err, err)
		}
		if !errors.Is(err, errLegacyFormat) || !errors.Is(err, core.ErrDecode) {
			t.Errorf("%s: err = %v, want it to match the upcaster's error and ErrDecode", what, err)
		}
		want := &core.DecodeError{StreamID: "account-5", StreamVersion: 2, GlobalPosition: position, EventType: "account.legacy"}
		if diff := cmp.Diff(want, decodeErr, decodeErrorOpts); diff != "" {
			t.Errorf("%s: DecodeError (-want +got):\n%s", what, diff)
		}
	}

	_, err := store.Load[Account](ctx, es, "5")
	assertUpcastFailure(t, "load", err, 0)

	var before []int64
	var readErr error
	for e, err := range es.Read(ctx, core.ReadStream("account-5")) {
		if err != nil {
			readErr = err
			continue
		}
		before = append(before, e.StreamVersion)
	}
	if diff := cmp.Diff([]int64{1}, before); diff != "" {
		t.Errorf("events read before the failure (-want +got):\n%s", diff)
	}
	assertUpcastFailure(t, "read stream", readErr, 0)

	_, err = es.ReadEvents(ctx, core.ReadAll())
	assertUpcastFailure(t, "read all", err, 2)

	// A filter that excludes the event avoids the upcaster.
	events, err := es.ReadEvents(ctx, core.StreamQuery{StreamID: "account-5", EventTypes: []string{opened}})
	if err != nil || len(events) != 1 {
		t.Errorf("filtered read: %d events, err %v; want 1, nil", len(events), err)
	}
	if diff := cmp.Diff(stored, storedRows(t, es)); diff != "" {
		t.Errorf("stored rows changed (-before +after):\n%s", diff)
	}
}

// afterQuery is a pgx tracer that runs hook once, synchronously, right
// after the first statement whose text contains marker completes, before
// the caller's next statement: a deterministic way to commit something
// "between" two statements of one store operation.
type afterQuery struct {
	marker string
	once   sync.Once
	hook   func()
}

type afterQueryKey struct{}

func (a *afterQuery) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, afterQueryKey{}, strings.Contains(data.SQL, a.marker))
}

func (a *afterQuery) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	if matched, _ := ctx.Value(afterQueryKey{}).(bool); matched {
		a.once.Do(a.hook)
	}
}

// Load reads the first page of events and, when it is empty, the stream's
// version in a second statement with a second snapshot. A first append that
// commits between the two must not be reported as a corrupt stream: the
// result is ErrStreamNotFound (the stream did not exist at the first
// snapshot) or the stream at version 1. (Regression test: before commit
// 9447368 this returned a *core.CorruptStreamError, "recorded version 1: no
// events stored after version 0".)
func TestLoadRacingFirstAppend(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	config, err := pgxpool.ParseConfig(pgenv.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	tracer := &afterQuery{marker: "name: EventLoadStream"}
	config.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(ctx, config)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	traced, err := store.New(pool, &store.Config{Schema: es.Schema(), Registry: bankRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	tracer.hook = func() {
		if _, err := es.Append(ctx, "account-1", core.NoStream, core.NewEvent(Opened{Owner: "ada"})); err != nil {
			t.Errorf("concurrent append: %v", err)
		}
	}

	root, err := store.Load[Account](ctx, traced, "1")
	if v, _ := es.StreamVersion(ctx, "account-1"); v != 1 {
		t.Fatalf("the concurrent append did not run (version %d)", v)
	}
	switch {
	case errors.Is(err, core.ErrCorruptStream):
		t.Errorf("Load racing the stream's first append reported a corrupt stream: %v", err)
	case errors.Is(err, core.ErrStreamNotFound):
	case err != nil:
		t.Errorf("Load: %v", err)
	case root.Version() != 1:
		t.Errorf("Load returned version %d, want 1", root.Version())
	}
}

// Partitions split a read by stream: every event of the log is in exactly
// one partition, with its stream's other events, in position order, and
// the partition is the one core.StreamPartition names.
func TestReadPartitions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry(), ReadPageSize: 7})
	for i := range 60 {
		category := []string{"account", "other"}[i%2]
		if _, err := es.Append(ctx, fmt.Sprintf("%s-%d", category, i%13), core.Any, core.NewEvent(Deposited{Amount: 1})); err != nil {
			t.Fatal(err)
		}
	}
	for _, category := range []string{"", "account"} {
		whole, err := es.ReadEvents(ctx, core.StreamQuery{Category: category})
		if err != nil {
			t.Fatal(err)
		}
		const partitions = 3
		seen := map[int64]int{}
		for p := range partitions {
			events, err := es.ReadEvents(ctx, core.StreamQuery{Category: category, Partitions: partitions, Partition: p})
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range events {
				if want := core.StreamPartition(e.StreamID, partitions); want != p {
					t.Errorf("%s in partition %d, want %d", e.StreamID, p, want)
				}
				if i > 0 && e.GlobalPosition <= events[i-1].GlobalPosition {
					t.Errorf("partition %d out of order: %d after %d", p, e.GlobalPosition, events[i-1].GlobalPosition)
				}
				seen[e.GlobalPosition]++
			}
		}
		if len(seen) != len(whole) {
			t.Errorf("category %q: partitions hold %d events, the read %d", category, len(seen), len(whole))
		}
		for _, e := range whole {
			if seen[e.GlobalPosition] != 1 {
				t.Errorf("category %q: position %d is in %d partitions", category, e.GlobalPosition, seen[e.GlobalPosition])
			}
		}
	}
	// The database computes the buckets core.StreamBucket does.
	var mismatches int
	err := es.Pool().QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM generate_series(1, 2000) AS i
		WHERE %s.stream_bucket('order-' || i) <> ('x' || substr(md5('order-' || i), 1, 4))::bit(16)::integer %% 1024`,
		pgx.Identifier{es.Schema()}.Sanitize())).Scan(&mismatches)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := es.Pool().Query(ctx, fmt.Sprintf(`SELECT i, %s.stream_bucket('order-' || i) FROM generate_series(1, 2000) AS i`,
		pgx.Identifier{es.Schema()}.Sanitize()))
	if err != nil {
		t.Fatal(err)
	}
	type bucketRow struct {
		I      int
		Bucket int16
	}
	buckets, err := pgx.CollectRows(rows, pgx.RowToStructByPos[bucketRow])
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range buckets {
		if id := fmt.Sprintf("order-%d", b.I); core.StreamBucket(id) != int(b.Bucket) {
			t.Fatalf("stream_bucket(%q) = %d in SQL, %d in Go", id, b.Bucket, core.StreamBucket(id))
		}
	}
	if mismatches != 0 || len(buckets) != 2000 {
		t.Errorf("%d mismatches, %d buckets", mismatches, len(buckets))
	}
}
