package store

import (
	"context"
	"maps"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
)

func TestWithTraceHeaders(t *testing.T) {
	t.Parallel()
	trace := map[string]string{core.TraceParentHeader: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		core.TraceStateHeader: "congo=t61rcWkgMzE"}
	tests := []struct {
		name    string
		headers map[string]string
		want    map[string]string
	}{
		{"no headers", nil, trace},
		{"the caller's beside", map[string]string{"tenant": "a"}, map[string]string{"tenant": "a",
			core.TraceParentHeader: trace[core.TraceParentHeader], core.TraceStateHeader: trace[core.TraceStateHeader]}},
		{"the caller's traceparent wins", map[string]string{core.TraceParentHeader: "mine"}, map[string]string{core.TraceParentHeader: "mine"}},
		{"the caller's tracestate: no trace context mixed", map[string]string{core.TraceStateHeader: "mine"},
			map[string]string{core.TraceStateHeader: "mine"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			before := maps.Clone(tt.headers)
			got := withTraceHeaders(tt.headers, trace)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, tt.headers); diff != "" {
				t.Errorf("the caller's map changed (-before +after):\n%s", diff)
			}
		})
	}
}

// An instrumented append stores the trace headers with each event, and
// returns them in the committed events' metadata; an append without
// instrumentation stores the caller's headers as they are.
func TestEncodeAppendAddsTraceHeaders(t *testing.T) {
	t.Parallel()
	s := newOfflineStore(t)
	caller := map[string]string{"tenant": "a"}
	events := []core.Event{{Data: testEvent{}, Metadata: core.EventMetadata{Headers: caller}}, {Data: testEvent{}}}
	trace := map[string]string{core.TraceParentHeader: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}

	r, err := s.encodeAppend("account-1", core.Any, events, trace)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON := []string{`{"tenant":"a","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}`,
		`{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}`}
	for i, e := range r.events {
		if string(e.headers) != wantJSON[i] {
			t.Errorf("event %d headers = %s, want %s", i, e.headers, wantJSON[i])
		}
		if got := r.recorded[i].Metadata.Headers[core.TraceParentHeader]; got != trace[core.TraceParentHeader] {
			t.Errorf("event %d's recorded metadata has traceparent %q", i, got)
		}
	}
	if len(caller) != 1 {
		t.Errorf("the caller's headers changed: %v", caller)
	}
	if int(r.bytes) != len(r.events[0].data)+len(r.events[0].headers)+len(r.events[1].data)+len(r.events[1].headers) {
		t.Errorf("bytes = %d", r.bytes)
	}

	plain, err := s.encodeAppend("account-1", core.Any, events, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(plain.events[0].headers) != `{"tenant":"a"}` || plain.events[1].headers != nil {
		t.Errorf("without trace: headers %s and %s", plain.events[0].headers, plain.events[1].headers)
	}
}

// Without instrumentation the store's operations carry a zero operation,
// whose end does nothing and allocates nothing.
func TestUninstrumentedOperationAllocatesNothing(t *testing.T) { // not parallel: AllocsPerRun
	var op operation
	if n := testing.AllocsPerRun(100, func() { op.done(core.Outcome{Events: 1}) }); n != 0 {
		t.Errorf("ending an uninstrumented operation allocates %v times", n)
	}
}

// BenchmarkEncodeAppend measures the client side of a single-event append
// before the database: what the trace headers' path must leave unchanged
// without instrumentation (compare -benchmem across commits).
func BenchmarkEncodeAppend(b *testing.B) {
	s := newOfflineStore(b)
	events := []core.Event{{Data: testEvent{Amount: 42}, Metadata: core.EventMetadata{Headers: map[string]string{"tenant": "a"}}}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.encodeAppend("account-1", core.Any, events, nil); err != nil {
			b.Fatal(err)
		}
	}
}

type testEvent struct {
	Amount int `json:"amount"`
}

func (testEvent) EventType() string { return "test.event" }

// newOfflineStore returns a store on a pool that never connects, for tests
// of what happens before the database.
func newOfflineStore(t testing.TB) *EventStore {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), "postgres://postgres@127.0.0.1:1/none?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := New(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
