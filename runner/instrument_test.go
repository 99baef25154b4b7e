package runner

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/store"
)

// newOfflineWorker returns a worker of subscription "s" whose handler is
// handler, on a store whose pool never connects: handle needs no database.
func newOfflineWorker(t *testing.T, instr core.Instrumentation, handler EventHandler) *worker {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), "postgres://postgres@127.0.0.1:1/none?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	es, err := store.New(pool, &store.Config{Instrumentation: instr})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(es, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &worker{runner: r, sub: &Subscription{Name: "s", Handler: handler},
		lease: &lease{held: held{partitionKey: partitionKey{name: "s", partition: 3}}}}
}

// Handling an event without instrumentation allocates only what it did
// before there was any: the HandledEvent's lazy decoding.
func TestHandleWithoutInstrumentationAllocates(t *testing.T) { // not parallel: AllocsPerRun
	w := newOfflineWorker(t, nil, func(context.Context, HandledEvent) error { return nil })
	if w.runner.config.Instrumentation != nil {
		t.Fatal("the runner has instrumentation its store does not")
	}
	recorded := &core.RecordedEvent{StreamID: "account-1", StreamVersion: 1, GlobalPosition: 1, EventType: "x"}
	ctx := context.Background()
	n := testing.AllocsPerRun(200, func() {
		if err := w.handle(ctx, nil, recorded); err != nil {
			t.Fatal(err)
		}
	})
	if n != 1 {
		t.Errorf("handling an event allocates %v times, want 1 (the lazily decoded event)", n)
	}
}

// The runner takes its store's instrumentation, and reports each handler
// call with the event, in the context the handler gets, ended with the
// handler's error (a panic's included).
func TestHandleReportsToInstrumentation(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	boom := errors.New("boom")
	var got context.Context
	w := newOfflineWorker(t, rec, func(ctx context.Context, e HandledEvent) error {
		got = ctx
		if e.Recorded.StreamVersion == 2 {
			panic("kaboom")
		}
		return boom
	})
	recorded := &core.RecordedEvent{StreamID: "account-1", StreamVersion: 1, GlobalPosition: 9}
	if err := w.handle(context.Background(), nil, recorded); !errors.Is(err, boom) {
		t.Fatalf("handle = %v", err)
	}
	if got == nil || got.Value(recorderKey{}) != 1 {
		t.Error("the handler did not get the context Start returned")
	}
	panicking := &core.RecordedEvent{StreamID: "account-1", StreamVersion: 2, GlobalPosition: 10}
	if err := w.handle(context.Background(), nil, panicking); err == nil {
		t.Fatal("a panic was no error")
	}
	if len(rec.ops) != 2 || len(rec.outcomes) != 2 {
		t.Fatalf("%d operations, %d outcomes, want 2 of each", len(rec.ops), len(rec.outcomes))
	}
	op := rec.ops[0]
	if op.Kind != core.OpHandle || op.Subscription != "s" || op.Partition != 3 || op.StreamID != "account-1" || op.Event != recorded {
		t.Errorf("operation = %+v", op)
	}
	if !errors.Is(rec.outcomes[0].Err, boom) || rec.outcomes[1].Err == nil {
		t.Errorf("outcomes = %+v", rec.outcomes)
	}
}

type recorderKey struct{}

// recorder is an Instrumentation that keeps what it is told.
type recorder struct {
	ops      []core.Operation
	outcomes []core.Outcome
}

func (r *recorder) Start(ctx context.Context, op core.Operation) (context.Context, func(core.Outcome)) {
	r.ops = append(r.ops, op)
	return context.WithValue(ctx, recorderKey{}, len(r.ops)), func(o core.Outcome) { r.outcomes = append(r.outcomes, o) }
}

func (r *recorder) TraceHeaders(context.Context) map[string]string { return nil }
