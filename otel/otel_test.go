package otel_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mire-go/mire/core"
	mireotel "github.com/mire-go/mire/otel"
	"github.com/mire-go/mire/saga"
)

type fixture struct {
	tel    *mireotel.Telemetry
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	tracer trace.Tracer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	tel, err := mireotel.New(&mireotel.Config{TracerProvider: tp, MeterProvider: mp})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{tel: tel, spans: spans, reader: reader, tracer: tp.Tracer("test")}
}

func (f *fixture) span(t *testing.T, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range f.spans.Ended() {
		if s.Name() == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s span, got %d", name, len(found))
	}
	return found[0]
}

func (f *fixture) metrics(t *testing.T) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := f.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m.Data
		}
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, key string) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func TestTraceHeadersCarryTheSpan(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if h := f.tel.TraceHeaders(context.Background()); h != nil {
		t.Fatalf("TraceHeaders without a span = %v, want nil", h)
	}
	ctx, span := f.tracer.Start(context.Background(), "request")
	defer span.End()
	h := f.tel.TraceHeaders(ctx)
	sc := span.SpanContext()
	want := fmt.Sprintf("00-%s-%s-01", sc.TraceID(), sc.SpanID())
	if h[core.TraceParentHeader] != want {
		t.Fatalf("traceparent = %q, want %q", h[core.TraceParentHeader], want)
	}
	if len(h) != 1 {
		t.Fatalf("headers = %v: want traceparent alone (no trace state)", h)
	}
}

func TestAppendSpanAndMetrics(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx, request := f.tracer.Start(context.Background(), "request")
	actx, end := f.tel.Start(ctx, core.Operation{Kind: core.OpAppend, StreamID: "account-1", Events: 2})
	if !trace.SpanContextFromContext(actx).IsValid() || trace.SpanContextFromContext(actx).Equal(request.SpanContext()) {
		t.Fatal("Start did not return the append span's context")
	}
	end(core.Outcome{Events: 2, Bytes: 120, Group: 5})
	_, end = f.tel.Start(ctx, core.Operation{Kind: core.OpAppend, StreamID: "account-1", Events: 1})
	end(core.Outcome{Err: &core.VersionConflictError{StreamID: "account-1"}})
	request.End()

	var appends []sdktrace.ReadOnlySpan
	for _, s := range f.spans.Ended() {
		if s.Name() == "mire.append" {
			appends = append(appends, s)
		}
	}
	if len(appends) != 2 {
		t.Fatalf("want 2 mire.append spans, got %d", len(appends))
	}
	ok, failed := appends[0], appends[1]
	if ok.Parent().SpanID() != request.SpanContext().SpanID() || ok.SpanKind() != trace.SpanKindProducer {
		t.Errorf("append span: parent %v kind %v, want the request's, producer", ok.Parent().SpanID(), ok.SpanKind())
	}
	for key, want := range map[string]int64{"mire.events": 2, "mire.append.bytes": 120, "mire.append.group_size": 5} {
		if v, _ := attr(ok, key); v.AsInt64() != want {
			t.Errorf("append span %s = %v, want %d", key, v.String(), want)
		}
	}
	if failed.Status().Code != codes.Error {
		t.Errorf("failed append's status = %v, want Error", failed.Status())
	}

	m := f.metrics(t)
	hist, ok2 := m["mire.store.operation.duration"].(metricdata.Histogram[float64])
	if !ok2 {
		t.Fatalf("mire.store.operation.duration = %T", m["mire.store.operation.duration"])
	}
	counts := map[string]uint64{}
	for _, dp := range hist.DataPoints {
		op, _ := dp.Attributes.Value("mire.operation")
		errType, _ := dp.Attributes.Value("error.type")
		counts[op.AsString()+"/"+errType.AsString()] += dp.Count
		if dp.Sum < 0 || dp.Sum > 10 {
			t.Errorf("duration sum %v s", dp.Sum)
		}
	}
	if counts["append/"] != 1 || counts["append/version_conflict"] != 1 {
		t.Errorf("append durations by error type = %v", counts)
	}
	if got := sumInt(t, m["mire.store.append.events"]); got != 2 {
		t.Errorf("mire.store.append.events = %d, want 2", got)
	}
}

func TestHandleSpanLinksToTheAppend(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx, request := f.tracer.Start(context.Background(), "request")
	actx, end := f.tel.Start(ctx, core.Operation{Kind: core.OpAppend, StreamID: "account-1", Events: 1})
	headers := f.tel.TraceHeaders(actx)
	end(core.Outcome{Events: 1})
	request.End()
	appendSpan := f.span(t, "mire.append")

	event := &core.RecordedEvent{StreamID: "account-1", StreamVersion: 1, GlobalPosition: 7, EventType: "deposited",
		Metadata: core.EventMetadata{EventID: uuid.New(), Headers: headers}}
	bctx, endBatch := f.tel.Start(context.Background(), core.Operation{Kind: core.OpBatch, Subscription: "balances",
		Events: 1, Started: time.Now().Add(-time.Millisecond)})
	hctx, endHandle := f.tel.Start(bctx, core.Operation{Kind: core.OpHandle, Subscription: "balances", StreamID: "account-1", Event: event})
	if !trace.SpanContextFromContext(hctx).IsValid() {
		t.Fatal("the handler's context carries no span")
	}
	endHandle(core.Outcome{Err: errors.New("boom")})
	endBatch(core.Outcome{Events: 1})

	handle, batch := f.span(t, "mire.runner.handle"), f.span(t, "mire.runner.batch")
	if handle.Parent().SpanID() != batch.SpanContext().SpanID() {
		t.Error("the handle span is not the batch span's child")
	}
	if handle.SpanContext().TraceID() == appendSpan.SpanContext().TraceID() {
		t.Error("the handle span is in the append's trace: want a link, not a parent")
	}
	links := handle.Links()
	if len(links) != 1 || links[0].SpanContext.SpanID() != appendSpan.SpanContext().SpanID() ||
		links[0].SpanContext.TraceID() != appendSpan.SpanContext().TraceID() {
		t.Fatalf("handle span links = %v, want the append span %v", links, appendSpan.SpanContext())
	}
	if v, _ := attr(handle, "mire.event.position"); v.AsInt64() != 7 {
		t.Errorf("mire.event.position = %v", v.String())
	}
	if handle.Status().Code != codes.Error {
		t.Errorf("failed handler's span status = %v", handle.Status())
	}
	if !batch.StartTime().Before(handle.StartTime()) {
		t.Error("the batch span does not start at Operation.Started")
	}

	// An event appended outside any trace, or with a broken header, makes
	// no link.
	for _, h := range []map[string]string{nil, {core.TraceParentHeader: "garbage"}} {
		event.Metadata.Headers = h
		_, end := f.tel.Start(context.Background(), core.Operation{Kind: core.OpHandle, Event: event})
		end(core.Outcome{})
	}
	for _, s := range f.spans.Ended()[len(f.spans.Ended())-2:] {
		if len(s.Links()) != 0 {
			t.Errorf("span with headers %v has links %v", s.Attributes(), s.Links())
		}
	}
}

func TestQuietOperations(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// A read outside a trace, an idle sweep and a group commit make no
	// span; a sweep that numbered events and a read inside a trace do.
	_, end := f.tel.Start(context.Background(), core.Operation{Kind: core.OpRead, Query: core.ReadCategory("account")})
	end(core.Outcome{Events: 3})
	_, end = f.tel.Start(context.Background(), core.Operation{Kind: core.OpSequence})
	end(core.Outcome{})
	_, end = f.tel.Start(context.Background(), core.Operation{Kind: core.OpAppendGroup, Events: 8})
	end(core.Outcome{Events: 8})
	if n := len(f.spans.Ended()); n != 0 {
		t.Fatalf("%d spans, want none", n)
	}
	_, end = f.tel.Start(context.Background(), core.Operation{Kind: core.OpSequence})
	end(core.Outcome{Events: 42})
	ctx, parent := f.tracer.Start(context.Background(), "job")
	_, end = f.tel.Start(ctx, core.Operation{Kind: core.OpRead, Query: core.ReadCategory("account")})
	end(core.Outcome{Events: 2})
	parent.End()
	if v, _ := attr(f.span(t, "mire.sequence"), "mire.events"); v.AsInt64() != 42 {
		t.Errorf("sequence span mire.events = %v", v.String())
	}
	if v, _ := attr(f.span(t, "mire.read"), "mire.category"); v.AsString() != "account" {
		t.Errorf("read span mire.category = %v", v.String())
	}

	m := f.metrics(t)
	backlog := m["mire.store.sequencer.backlog"].(metricdata.Histogram[int64]) //nolint:errcheck // a failed assertion panics the test
	if dp := backlog.DataPoints[0]; dp.Count != 2 || dp.Sum != 42 {
		t.Errorf("backlog: count %d sum %d, want 2 sweeps and 42 events", dp.Count, dp.Sum)
	}
	group := m["mire.store.append.group.size"].(metricdata.Histogram[int64]) //nolint:errcheck // a failed assertion panics the test
	if dp := group.DataPoints[0]; dp.Count != 1 || dp.Sum != 8 {
		t.Errorf("group size: count %d sum %d, want one group of 8", dp.Count, dp.Sum)
	}
	if got := sumInt(t, m["mire.store.read.events"]); got != 5 {
		t.Errorf("mire.store.read.events = %d, want 5", got)
	}
}

func TestRunnerAndSagaMetrics(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.tel.BatchHandled("balances", 0, 10, 20*time.Millisecond)
	f.tel.BatchHandled("balances", 0, 5, 10*time.Millisecond)
	f.tel.Lag("balances", 0, 100)
	f.tel.Lag("balances", 0, 3)
	f.tel.Retry("balances", 0, errors.New("boom"))
	f.tel.Parked("balances", 0, "account-1", true)
	f.tel.LeaseChanged("balances", 0, true, 1)
	f.tel.LeaseChanged("balances", 1, true, 1)
	f.tel.LeaseChanged("balances", 1, false, 1)
	f.tel.Failed("balances", 0, errors.New("boom"))
	f.tel.Started("transfer")
	f.tel.Step("transfer", time.Millisecond, saga.StatusWaiting)
	f.tel.Ended("transfer", saga.StatusCompleted)

	m := f.metrics(t)
	for name, want := range map[string]int64{"mire.runner.events": 15, "mire.runner.retries": 1, "mire.runner.parked": 1,
		"mire.runner.lease.changes": 3, "mire.runner.leases": 1, "mire.runner.failed": 1, "mire.saga.started": 1, "mire.saga.ended": 1} {
		if got := sumInt(t, m[name]); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	lag := m["mire.runner.lag"].(metricdata.Gauge[int64]) //nolint:errcheck // a failed assertion panics the test
	if len(lag.DataPoints) != 1 || lag.DataPoints[0].Value != 3 {
		t.Errorf("lag = %+v, want the last value, 3", lag.DataPoints)
	}
	batch := m["mire.runner.batch.duration"].(metricdata.Histogram[float64]) //nolint:errcheck // a failed assertion panics the test
	if dp := batch.DataPoints[0]; dp.Count != 2 || dp.Sum < 0.029 || dp.Sum > 0.031 {
		t.Errorf("batch duration: count %d sum %v, want 2 batches, 30ms", dp.Count, dp.Sum)
	}
	if _, ok := m["mire.saga.run.duration"].(metricdata.Histogram[float64]); !ok {
		t.Error("no mire.saga.run.duration")
	}
}

// sumInt adds up a counter's (or up-down counter's) data points.
func sumInt(t *testing.T, data metricdata.Aggregation) int64 {
	t.Helper()
	sum, ok := data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("not an int64 sum: %T", data)
	}
	var total int64
	for _, dp := range sum.DataPoints {
		total += dp.Value
	}
	return total
}
