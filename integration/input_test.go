package integration_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

// rawEvent is event data whose JSON is given as is, as a type with its own
// MarshalJSON (or a json.RawMessage field) passes it through.
type rawEvent struct{ JSON string }

func (rawEvent) EventType() string { return "test.raw" }

func (e rawEvent) MarshalJSON() ([]byte, error) { return []byte(e.JSON), nil }

// mapEvent is event data with free-form keys.
type mapEvent struct {
	M map[string]string `json:"m"`
}

func (mapEvent) EventType() string { return "test.map" }

// withHeaders returns an event of data with headers.
func withHeaders(data core.EventData, headers map[string]string) core.Event {
	return core.Event{Data: data, Metadata: core.EventMetadata{Headers: headers}}
}

// assertRejectedEverywhere appends each event through Append and through
// AppendTx in one transaction, expects an invalid-input error for field
// each time, and checks that nothing was stored and that the transaction
// still runs a later append and commits.
func assertRejectedEverywhere(t *testing.T, es *store.EventStore, field string, events map[string]core.Event) {
	t.Helper()
	ctx := context.Background()
	before := storeRowCounts(t, es)
	tx, err := pgenv.Pool(t).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // committed below
	for name, event := range events {
		_, err := es.Append(ctx, "input-1", core.Any, event)
		if invalid := assertInvalidInput(t, err, field); !t.Failed() {
			t.Logf("%s: %s", name, invalid.Reason)
		}
		_, err = es.AppendTx(ctx, tx, "input-1", core.Any, core.NewEvent(Deposited{Amount: 1}), event)
		assertInvalidInput(t, err, field)
	}
	if _, err := es.AppendTx(ctx, tx, "input-2", core.NoStream, core.NewEvent(Deposited{Amount: 1})); err != nil {
		t.Fatalf("append in the same transaction after the rejections: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit after the rejections: %v", err)
	}
	assertRowCounts(t, es, rowCounts{Streams: before.Streams + 1, Events: before.Events + 1})
	assertStreamVersion(t, es, "input-1", 0)
}

// Invalid UTF-8 anywhere in event data or headers is rejected rather than
// stored as U+FFFD; a genuine U+FFFD is stored as sent.
func TestAppendRejectsInvalidUTF8(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, nil)
	assertRejectedEverywhere(t, es, "event data", map[string]core.Event{
		"string":            core.NewEvent(typedEvent{Type: "test.text", Text: "a\xffb"}),
		"truncated rune":    core.NewEvent(typedEvent{Type: "test.text", Text: "🙂"[:3]}),
		"encoded surrogate": core.NewEvent(typedEvent{Type: "test.text", Text: "\xed\xa0\x80"}),
		"string beside a genuine U+FFFD": core.NewEvent(mapEvent{M: map[string]string{
			"ok": "\uFFFD", "bad": "\xff"}}),
		"map keys that would merge": core.NewEvent(mapEvent{M: map[string]string{"k\xff": "1", "k\xfe": "2"}}),
		"raw JSON":                  core.NewEvent(rawEvent{JSON: "{\"a\":\"\xff\"}"}),
		"header value":              withHeaders(Deposited{Amount: 1}, map[string]string{"k": "v\xff"}),
		"header keys that would merge": withHeaders(Deposited{Amount: 1}, map[string]string{
			"k\xff": "1", "k\xfe": "2"}),
	})

	accepted := []core.Event{
		core.NewEvent(typedEvent{Type: "test.text", Text: "a\uFFFDb"}),
		core.NewEvent(mapEvent{M: map[string]string{"\uFFFD": "\uFFFD", "é": "🙂"}}),
		core.NewEvent(rawEvent{JSON: `{"escaped":"\ufffd"}`}),
		withHeaders(Deposited{Amount: 1}, map[string]string{"\uFFFD": "\uFFFD", "k": "é"}),
	}
	if _, err := es.Append(ctx, "input-3", core.NoStream, accepted...); err != nil {
		t.Fatalf("append: %v", err)
	}
	events, err := es.ReadEvents(ctx, core.ReadStream("input-3"))
	if err != nil {
		t.Fatal(err)
	}
	type stored struct {
		Data    string
		Headers map[string]string
	}
	var got []stored
	for _, e := range events {
		got = append(got, stored{string(e.Data), e.Metadata.Headers})
	}
	want := []stored{
		{Data: `{"text": "a` + "\uFFFD" + `b"}`},
		{Data: `{"m": {"é": "🙂", "` + "\uFFFD" + `": "` + "\uFFFD" + `"}}`},
		{Data: `{"escaped": "` + "\uFFFD" + `"}`},
		{Data: `{"amount": 1}`, Headers: map[string]string{"\uFFFD": "\uFFFD", "k": "é"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stored (-want +got):\n%s", diff)
	}
}

// jsonbVerdict returns the text PostgreSQL's jsonb input makes of doc, or
// the error it refuses doc with.
func jsonbVerdict(t *testing.T, doc string) (string, error) {
	t.Helper()
	var text string
	err := pgenv.Pool(t).QueryRow(context.Background(), "SELECT $1::text::jsonb::text", doc).Scan(&text)
	return text, err
}

// Documents encoding/json lets through but jsonb refuses are rejected before
// anything is sent, so an AppendTx leaves the caller's transaction usable;
// documents near the same limits that jsonb accepts are stored exactly as
// jsonb keeps them.
func TestAppendRejectsWhatJSONBRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, nil)
	rejected := map[string]string{
		"lone high surrogate":             `{"a":"\ud800"}`,
		"lone low surrogate":              `{"a":"\udc00"}`,
		"high surrogate then a character": `{"a":"\uD800x"}`,
		"high surrogate then an escape":   `{"a":"\ud800\u0041"}`,
		"two high surrogates":             `{"a":"\ud800\ud800\udc00"}`,
		"reversed pair":                   `{"a":"\udc00\ud800"}`,
		"surrogate in a key":              `{"\udbff":1}`,
		"surrogate after a backslash":     `{"a":"\\\ud800"}`,
		"NUL":                             `{"a":"\u0000"}`,
		"huge exponent":                   `{"a":1e1000000}`,
		"leading digit past 10^131071":    `[1e131072]`,
		"integer of 131073 digits":        `[1` + strings.Repeat("0", 131072) + `]`,
		"scale past 16383":                `[1e-16384]`,
		"scale past 16383 by zeros":       `[0.` + strings.Repeat("0", 16384) + `]`,
		"zero with a huge exponent":       `[0e1073741823]`,
	}
	events := make(map[string]core.Event)
	for name, doc := range rejected {
		if _, err := jsonbVerdict(t, doc); err == nil {
			t.Errorf("%s: test bug: jsonb accepts %.60s", name, doc)
		}
		events[name] = core.NewEvent(rawEvent{JSON: doc})
	}
	assertRejectedEverywhere(t, es, "event data", events)

	accepted := []string{
		`{"a":"\ud800\udc00","b":"\uDBFF\uDFFF","c":"\ud83d\ude00"}`,
		`{"a":"\\ud800","b":"\\u0000","c":"\\\\udc00"}`,
		`{"a":"\u0001\u001f\u00e9\uffff\ufffd"}`,
		`[1e131071,-9.999e131071,0.1e131072,1e-16383,0e-16383,0e1073741822,1E+5,-0,0.0,1.5e-16382]`,
		`[1` + strings.Repeat("0", 131071) + `]`,
		`[0.` + strings.Repeat("0", 16382) + `1]`,
		`{"a":1,"a":2}`,
	}
	for _, doc := range accepted {
		if _, err := es.Append(ctx, "input-4", core.Any, core.NewEvent(rawEvent{JSON: doc})); err != nil {
			t.Errorf("append %.60s: %v", doc, err)
		}
	}
	events2, err := es.ReadEvents(ctx, core.ReadStream("input-4"))
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, e := range events2 {
		got = append(got, string(e.Data))
	}
	for _, doc := range accepted {
		text, err := jsonbVerdict(t, doc)
		if err != nil {
			t.Fatalf("test bug: jsonb refuses %.60s: %v", doc, err)
		}
		want = append(want, text)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stored data (-jsonb's own text +read back):\n%s", diff)
	}
}

// For many generated documents near jsonb's limits, Append accepts exactly
// those PostgreSQL's jsonb input accepts.
func TestJSONBCheckAgreesWithPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, nil)
	rng := rand.New(rand.NewPCG(8, 12))
	pick := func(options ...string) string { return options[rng.IntN(len(options))] }
	digits := func(n int) string {
		var b strings.Builder
		for range n {
			b.WriteByte(byte('0' + rng.IntN(10)))
		}
		return b.String()
	}
	near := func(limit int) int { return limit + rng.IntN(5) - 2 }
	number := func() string {
		var n strings.Builder
		if rng.IntN(3) == 0 {
			n.WriteString("-")
		}
		switch rng.IntN(3) {
		case 0:
			n.WriteString("0")
		case 1:
			n.WriteString(pick("1", "9") + digits(rng.IntN(4)))
		default:
			n.WriteString(pick("1", "5") + strings.Repeat("0", near(131071)-rng.IntN(2)*131000))
		}
		switch rng.IntN(3) {
		case 0:
			n.WriteString("." + strings.Repeat("0", rng.IntN(4)) + digits(1+rng.IntN(3)))
		case 1:
			n.WriteString("." + strings.Repeat("0", near(16383)-rng.IntN(3)) + pick("", "0", "7"))
		}
		switch rng.IntN(4) {
		case 0:
			n.WriteString(pick("e", "E", "e+", "e-") + fmt.Sprint(rng.IntN(5)))
		case 1:
			n.WriteString(pick("e", "E+") + fmt.Sprint(near(131071)-rng.IntN(4)))
		case 2:
			n.WriteString("e-" + fmt.Sprint(near(16383)-rng.IntN(4)))
		case 3:
			n.WriteString(pick("e", "e-") + pick("0", "") + fmt.Sprint(near(1<<30-1)))
		}
		return n.String()
	}
	str := func() string {
		var s strings.Builder
		s.WriteByte('"')
		for range rng.IntN(4) {
			s.WriteString(pick(`\ud800`, `\udbff`, `\udc00`, `\udfff`, `\ud83d\ude00`, `\u0000`, `\u0041`,
				`\ufffd`, `\\`, `\"`, `\n`, `x`, `é`, "\uFFFD", `\u00`+pick("00", "01", "e9")))
		}
		s.WriteByte('"')
		return s.String()
	}
	generators := map[string]func() string{
		"strings": func() string { return fmt.Sprintf(`{%s:[%s,"x"]}`, str(), str()) },
		"numbers": func() string { return fmt.Sprintf(`{"n":[%s]}`, number()) },
	}
	for kind, generate := range generators {
		verdicts := make(map[bool]int) // accepted or not → documents
		for i := range 300 {
			doc := generate()
			_, pgErr := jsonbVerdict(t, doc)
			_, err := es.Append(ctx, "input-5", core.Any, core.NewEvent(rawEvent{JSON: doc}))
			if err != nil && !errors.Is(err, core.ErrInvalidInput) {
				t.Fatalf("%s %d, %.80s: %v", kind, i, doc, err)
			}
			if (err == nil) != (pgErr == nil) {
				t.Errorf("%s %d, %.80s…%.40s: Append: %v; jsonb: %v", kind, i, doc, doc[max(0, len(doc)-40):], err, pgErr)
			}
			verdicts[pgErr == nil]++
		}
		// A generator that only makes good or only bad documents tests
		// little.
		if verdicts[true] < 50 || verdicts[false] < 50 {
			t.Errorf("%s: jsonb accepted %d and refused %d documents: generate more of each", kind, verdicts[true], verdicts[false])
		}
	}
}

// Config.ReadPageSize is bounded by MaxReadPageSize, and the largest page
// size reads and loads like any other.
func TestReadPageSizeBounds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, size := range []int{store.MaxReadPageSize + 1, 1 << 31, 1 << 32, 1<<32 + 1} {
		es, err := store.New(pgenv.Pool(t), &store.Config{ReadPageSize: size})
		if es != nil {
			t.Errorf("New with ReadPageSize %d returned a store", size)
		}
		assertInvalidInput(t, err, "Config.ReadPageSize")
	}

	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry(), ReadPageSize: store.MaxReadPageSize})
	if _, err := es.Append(ctx, "account-1", core.NoStream,
		core.Events(Opened{Owner: "ada"}, Deposited{Amount: 2}, Deposited{Amount: 3})...); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		query core.StreamQuery
		want  []int64 // versions
	}{
		{core.ReadStream("account-1"), []int64{1, 2, 3}},
		{core.StreamQuery{StreamID: "account-1", Direction: core.Backward}, []int64{3, 2, 1}},
		{core.StreamQuery{StreamID: "account-1", Limit: 2}, []int64{1, 2}},
		{core.StreamQuery{Category: "account"}, []int64{1, 2, 3}},
		{core.StreamQuery{Direction: core.Backward}, []int64{3, 2, 1}},
	} {
		events, err := es.ReadEvents(ctx, tt.query)
		if err != nil {
			t.Fatalf("read %+v: %v", tt.query, err)
		}
		var got []int64
		for _, e := range events {
			got = append(got, e.StreamVersion)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("read %+v: versions (-want +got):\n%s", tt.query, diff)
		}
	}
	root, err := store.Load[Account](ctx, es, "1")
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if root.Version() != 3 || root.State().Balance != 5 {
		t.Errorf("loaded version %d balance %d, want 3 and 5", root.Version(), root.State().Balance)
	}
}

// Config.MaxBatchBytes bounds all of an append's events together: a batch
// one byte over is rejected with nothing stored (and stops being encoded),
// a batch exactly at the limit is stored.
func TestMaxBatchBytes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const limit = 1000
	es := pgenv.NewStore(t, nil, &store.Config{MaxBatchBytes: limit})
	// {"text":"<n bytes>"} encodes to n+11 bytes.
	event := func(size int) core.Event {
		return core.NewEvent(typedEvent{Type: "test.text", Text: strings.Repeat("a", size-len(`{"text":""}`))})
	}
	over := []core.Event{event(250), event(250), event(250), event(251)}
	assertRejectedEverywhere(t, es, "events", map[string]core.Event{"one event over": event(limit + 1)})
	for _, batch := range [][]core.Event{
		over,
		{event(600), event(401)},
		// Encoding stops at the limit: the event after it is never encoded.
		{event(limit), event(1 + len(`{"text":""}`)), core.NewEvent(chanEvent{C: make(chan int)})},
	} {
		_, err := es.Append(ctx, "input-6", core.Any, batch...)
		invalid := assertInvalidInput(t, err, "events")
		if !strings.Contains(invalid.Reason, fmt.Sprint(limit)) {
			t.Errorf("reason %q does not name the limit", invalid.Reason)
		}
	}
	tx, err := pgenv.Pool(t).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // committed below
	_, err = es.AppendTx(ctx, tx, "input-6", core.Any, over...)
	assertInvalidInput(t, err, "events")
	committed, err := es.AppendTx(ctx, tx, "input-6", core.NoStream, over[:3]...)
	if err != nil {
		t.Fatalf("append in the same transaction: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	atLimit := []core.Event{event(250), event(250), event(250), event(250)}
	if _, err := es.Append(ctx, "input-7", core.NoStream, atLimit...); err != nil {
		t.Fatalf("append at the limit: %v", err)
	}
	if committed.ToVersion != 3 {
		t.Errorf("ToVersion = %d, want 3", committed.ToVersion)
	}
	assertStreamVersion(t, es, "input-7", 4)
	assertRowCounts(t, es, rowCounts{Streams: 3, Events: 8})

	for _, bad := range []int{-1, -limit} {
		_, err := store.New(pgenv.Pool(t), &store.Config{MaxBatchBytes: bad})
		assertInvalidInput(t, err, "Config.MaxBatchBytes")
	}
}
