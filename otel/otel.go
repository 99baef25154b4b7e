// Package otel turns mire's instrumentation into OpenTelemetry traces and
// metrics. It is a module of its own, so that a store, runner or saga user
// who does not ask for it builds no OpenTelemetry.
//
// One [Telemetry] serves the whole of mire: it is the store's
// core.Instrumentation (which the runner and the saga engine take over),
// the runner's runner.Metrics and the saga engine's saga.Metrics. Import it
// under another name than OpenTelemetry's own otel package:
//
//	import mireotel "github.com/mire-go/mire/otel"
//
//	tel, err := mireotel.New(nil) // the global tracer and meter providers
//	es, err := store.New(pool, &store.Config{Instrumentation: tel})
//	r, err := runner.New(es, &runner.Config{Metrics: tel})
//	engine, err := saga.New(es, r, &saga.Config{Metrics: tel}, definitions...)
//
// # Traces
//
// Spans: mire.append (a producer span), mire.save, mire.load, mire.read,
// mire.sequence, mire.runner.batch and mire.runner.handle (consumer spans),
// mire.saga.run and mire.saga.step. An append stores the W3C trace context
// of its span in each event's headers, as "traceparent" (and "tracestate"
// when there is one; see core.TraceParentHeader), unless the caller set
// those headers. The runner's span for the handler of an event is linked
// to that context, and so is a saga step's that takes a reply, so a trace
// goes from a request to its events and on to the projections and sagas
// that handle them; what a handler appends in turn carries the handler's
// span.
//
// Two operations that run all the time make spans only when they matter:
// a read makes one only inside a trace (the runner's reads of the log, for
// one, are covered by its batch spans), and a sequencing sweep only when
// it assigned positions or failed. Group commits make no span; their sizes
// are a metric, and each append's span says how large a group stored it
// (mire.append.group_size).
//
// # Metrics
//
// Store (core.Instrumentation):
//   - mire.store.operation.duration (histogram, s), by mire.operation
//     (append, save, load, sequence) and error.type on failure: append
//     latency and sweep time among others.
//   - mire.store.append.events (counter): events stored by appends.
//   - mire.store.append.group.size (histogram, {append}): appends per group
//     commit.
//   - mire.store.sequencer.backlog (histogram, {event}): the events each
//     sweep found waiting for a position (and numbered).
//   - mire.store.read.events (counter): events read.
//
// Runner (runner.Metrics), by mire.subscription and mire.partition:
//   - mire.runner.batch.duration (histogram, s), mire.runner.events (counter)
//   - mire.runner.lag (gauge, {event}): the checkpoint's distance from the
//     head, at each lease renewal.
//   - mire.runner.retries, mire.runner.failed (counters)
//   - mire.runner.parked (counter, with mire.parked: true for a stream
//     parked, false for one released)
//   - mire.runner.lease.changes (counter, with mire.lease.held) and
//     mire.runner.leases (up-down counter): leases this process holds.
//
// Sagas (saga.Metrics), by mire.saga.name: mire.saga.started,
// mire.saga.ended (by mire.saga.status) and mire.saga.run.duration
// (histogram, s, by mire.saga.status).
package otel

import (
	"context"
	"errors"
	"time"

	otelapi "go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/runner"
	"github.com/mire-go/mire/saga"
)

// ScopeName is the instrumentation scope of mire's tracer and meter.
const ScopeName = "github.com/mire-go/mire/otel"

// Config configures a Telemetry. The zero value is usable.
type Config struct {
	// TracerProvider makes the spans. Defaults to the global provider
	// (go.opentelemetry.io/otel.GetTracerProvider).
	TracerProvider trace.TracerProvider

	// MeterProvider makes the instruments. Defaults to the global provider
	// (go.opentelemetry.io/otel.GetMeterProvider).
	MeterProvider metric.MeterProvider
}

// Telemetry is mire's OpenTelemetry adapter: a core.Instrumentation, a
// runner.Metrics and a saga.Metrics. It is safe for concurrent use.
type Telemetry struct {
	tracer trace.Tracer

	duration   metric.Float64Histogram
	appended   metric.Int64Counter
	groupSize  metric.Int64Histogram
	backlog    metric.Int64Histogram
	readEvents metric.Int64Counter

	batchDuration metric.Float64Histogram
	handled       metric.Int64Counter
	lag           metric.Int64Gauge
	retries       metric.Int64Counter
	failed        metric.Int64Counter
	parked        metric.Int64Counter
	leaseChanges  metric.Int64Counter
	leases        metric.Int64UpDownCounter

	sagaStarted  metric.Int64Counter
	sagaEnded    metric.Int64Counter
	sagaDuration metric.Float64Histogram
}

var (
	_ core.Instrumentation = (*Telemetry)(nil)
	_ runner.Metrics       = (*Telemetry)(nil)
	_ saga.Metrics         = (*Telemetry)(nil)
)

// traceContext is the propagation format of the events' trace headers:
// W3C Trace Context, nothing else (the store ignores exactly these headers
// when it compares a retried append with the stored events).
var traceContext = propagation.TraceContext{}

// durationBuckets are the histogram bounds of durations, in seconds: from
// half a millisecond (an append on a warm connection) to ten seconds.
var durationBuckets = []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// New returns a Telemetry. config may be nil for the defaults.
func New(config *Config) (*Telemetry, error) {
	var c Config
	if config != nil {
		c = *config
	}
	if c.TracerProvider == nil {
		c.TracerProvider = otelapi.GetTracerProvider()
	}
	if c.MeterProvider == nil {
		c.MeterProvider = otelapi.GetMeterProvider()
	}
	meter := c.MeterProvider.Meter(ScopeName)
	t := &Telemetry{tracer: c.TracerProvider.Tracer(ScopeName)}
	seconds := []metric.Float64HistogramOption{metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(durationBuckets...)}
	var errs []error
	check := func(err error) { errs = append(errs, err) }
	var err error

	t.duration, err = meter.Float64Histogram("mire.store.operation.duration", append(seconds,
		metric.WithDescription("Duration of the store's appends, saves, loads and sequencing sweeps."))...)
	check(err)
	t.appended, err = meter.Int64Counter("mire.store.append.events", metric.WithUnit("{event}"),
		metric.WithDescription("Events stored by appends."))
	check(err)
	t.groupSize, err = meter.Int64Histogram("mire.store.append.group.size", metric.WithUnit("{append}"),
		metric.WithDescription("Appends per group commit."),
		metric.WithExplicitBucketBoundaries(1, 2, 4, 8, 16, 32, 64, 128, 256))
	check(err)
	t.backlog, err = meter.Int64Histogram("mire.store.sequencer.backlog", metric.WithUnit("{event}"),
		metric.WithDescription("Events each sequencing sweep found waiting for a position, and numbered."),
		metric.WithExplicitBucketBoundaries(0, 1, 10, 100, 1000, 10000, 100000))
	check(err)
	t.readEvents, err = meter.Int64Counter("mire.store.read.events", metric.WithUnit("{event}"),
		metric.WithDescription("Events read."))
	check(err)

	t.batchDuration, err = meter.Float64Histogram("mire.runner.batch.duration", append(seconds,
		metric.WithDescription("Duration of a subscription's batches, from the read to the checkpoint."))...)
	check(err)
	t.handled, err = meter.Int64Counter("mire.runner.events", metric.WithUnit("{event}"),
		metric.WithDescription("Events handled by subscriptions."))
	check(err)
	t.lag, err = meter.Int64Gauge("mire.runner.lag", metric.WithUnit("{event}"),
		metric.WithDescription("How far a subscription partition's checkpoint is behind the head of the log."))
	check(err)
	t.retries, err = meter.Int64Counter("mire.runner.retries", metric.WithUnit("{attempt}"),
		metric.WithDescription("Failed attempts to handle events that will be tried again."))
	check(err)
	t.failed, err = meter.Int64Counter("mire.runner.failed", metric.WithUnit("{partition}"),
		metric.WithDescription("Partitions stopped by an event that kept failing."))
	check(err)
	t.parked, err = meter.Int64Counter("mire.runner.parked", metric.WithUnit("{stream}"),
		metric.WithDescription("Streams parked (mire.parked=true) and released (false)."))
	check(err)
	t.leaseChanges, err = meter.Int64Counter("mire.runner.lease.changes", metric.WithUnit("{change}"),
		metric.WithDescription("Leases acquired (mire.lease.held=true) and lost or released (false) by this process."))
	check(err)
	t.leases, err = meter.Int64UpDownCounter("mire.runner.leases", metric.WithUnit("{lease}"),
		metric.WithDescription("Leases this process holds."))
	check(err)

	t.sagaStarted, err = meter.Int64Counter("mire.saga.started", metric.WithUnit("{saga}"),
		metric.WithDescription("Sagas started."))
	check(err)
	t.sagaEnded, err = meter.Int64Counter("mire.saga.ended", metric.WithUnit("{saga}"),
		metric.WithDescription("Sagas that reached a status at which they end or wait for an operator."))
	check(err)
	t.sagaDuration, err = meter.Float64Histogram("mire.saga.run.duration", append(seconds,
		metric.WithDescription("Duration of a saga's runs, by the status they left it in."))...)
	check(err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// TraceHeaders returns the W3C trace context of ctx's span as headers
// (traceparent, and tracestate when it has one), nil when ctx has none.
func (t *Telemetry) TraceHeaders(ctx context.Context) map[string]string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	carrier := propagation.MapCarrier{}
	traceContext.Inject(ctx, carrier)
	return carrier
}

// Start starts a span for op, when op makes one, and returns the function
// that ends it and records op's metrics.
func (t *Telemetry) Start(ctx context.Context, op core.Operation) (context.Context, func(core.Outcome)) {
	started := op.Started
	if started.IsZero() {
		started = time.Now()
	}
	switch op.Kind {
	case core.OpAppendGroup:
		return ctx, func(core.Outcome) { t.groupSize.Record(ctx, int64(op.Events)) }
	case core.OpSequence:
		return ctx, func(o core.Outcome) { t.endSequence(ctx, started, o) }
	case core.OpRead:
		if !trace.SpanContextFromContext(ctx).IsValid() {
			return ctx, func(o core.Outcome) { t.readEvents.Add(ctx, int64(o.Events)) }
		}
	}
	name, kind := spanName(op.Kind)
	opts := []trace.SpanStartOption{trace.WithSpanKind(kind), trace.WithTimestamp(started),
		trace.WithAttributes(startAttributes(op)...)}
	if link, ok := eventLink(op.Event); ok {
		opts = append(opts, trace.WithLinks(link))
	}
	ctx, span := t.tracer.Start(ctx, name, opts...)
	return ctx, func(o core.Outcome) {
		took := time.Since(started)
		span.SetAttributes(endAttributes(op.Kind, o)...)
		if o.Err != nil {
			span.RecordError(o.Err)
			span.SetStatus(codes.Error, o.Err.Error())
		}
		span.End()
		t.record(ctx, op, o, took)
	}
}

// endSequence records a sweep, and makes its span after the fact when it
// did something: an idle sweep every few milliseconds is no trace.
func (t *Telemetry) endSequence(ctx context.Context, started time.Time, o core.Outcome) {
	ended := time.Now()
	t.duration.Record(ctx, ended.Sub(started).Seconds(), metric.WithAttributes(operationAttributes(core.OpSequence, o.Err)...))
	t.backlog.Record(ctx, int64(o.Events))
	if o.Events == 0 && o.Err == nil {
		return
	}
	_, span := t.tracer.Start(ctx, "mire.sequence", trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(started),
		trace.WithAttributes(dbSystem, attribute.Int("mire.events", o.Events)))
	if o.Err != nil {
		span.RecordError(o.Err)
		span.SetStatus(codes.Error, o.Err.Error())
	}
	span.End(trace.WithTimestamp(ended))
}

// record records an operation's metrics.
func (t *Telemetry) record(ctx context.Context, op core.Operation, o core.Outcome, took time.Duration) {
	switch op.Kind {
	case core.OpAppend:
		t.duration.Record(ctx, took.Seconds(), metric.WithAttributes(operationAttributes(op.Kind, o.Err)...))
		if o.Err == nil && !o.Duplicate {
			t.appended.Add(ctx, int64(o.Events))
		}
	case core.OpSave, core.OpLoad:
		t.duration.Record(ctx, took.Seconds(), metric.WithAttributes(operationAttributes(op.Kind, o.Err)...))
	case core.OpRead:
		t.readEvents.Add(ctx, int64(o.Events))
	}
}

var dbSystem = attribute.String("db.system.name", "postgresql")

func spanName(kind core.OperationKind) (string, trace.SpanKind) {
	switch kind {
	case core.OpAppend:
		return "mire.append", trace.SpanKindProducer
	case core.OpSave:
		return "mire.save", trace.SpanKindInternal
	case core.OpLoad:
		return "mire.load", trace.SpanKindClient
	case core.OpRead:
		return "mire.read", trace.SpanKindClient
	case core.OpBatch:
		return "mire.runner.batch", trace.SpanKindConsumer
	case core.OpHandle:
		return "mire.runner.handle", trace.SpanKindConsumer
	case core.OpSagaRun:
		return "mire.saga.run", trace.SpanKindInternal
	case core.OpSagaStep:
		return "mire.saga.step", trace.SpanKindInternal
	}
	return "mire." + kind.String(), trace.SpanKindInternal
}

func startAttributes(op core.Operation) []attribute.KeyValue {
	var attrs []attribute.KeyValue
	switch op.Kind {
	case core.OpAppend, core.OpSave:
		attrs = append(attrs, dbSystem, attribute.String("mire.stream.id", op.StreamID), attribute.Int("mire.events", op.Events))
	case core.OpLoad:
		attrs = append(attrs, dbSystem, attribute.String("mire.stream.id", op.StreamID))
	case core.OpRead:
		attrs = append(attrs, dbSystem)
		q := op.Query
		switch {
		case q.StreamID != "":
			attrs = append(attrs, attribute.String("mire.stream.id", q.StreamID))
		case q.Category != "":
			attrs = append(attrs, attribute.String("mire.category", q.Category))
		}
		if q.Direction == core.Backward {
			attrs = append(attrs, attribute.Bool("mire.read.backward", true))
		}
	case core.OpBatch:
		attrs = append(attrs, attribute.String("mire.subscription", op.Subscription), attribute.Int("mire.partition", op.Partition),
			attribute.Int("mire.events", op.Events))
	case core.OpHandle:
		attrs = append(attrs, attribute.String("mire.subscription", op.Subscription), attribute.Int("mire.partition", op.Partition))
	case core.OpSagaRun:
		attrs = append(attrs, attribute.String("mire.saga.name", op.Saga), attribute.String("mire.saga.id", op.SagaID))
	case core.OpSagaStep:
		attrs = append(attrs, attribute.String("mire.saga.name", op.Saga), attribute.String("mire.saga.id", op.SagaID),
			attribute.String("mire.saga.step", op.Step), attribute.String("mire.saga.step.kind", op.StepKind))
	}
	if e := op.Event; e != nil {
		attrs = append(attrs, attribute.String("mire.stream.id", e.StreamID), attribute.Int64("mire.stream.version", e.StreamVersion),
			attribute.String("mire.event.type", e.EventType), attribute.String("mire.event.id", e.Metadata.EventID.String()))
		if e.GlobalPosition > 0 {
			attrs = append(attrs, attribute.Int64("mire.event.position", e.GlobalPosition))
		}
	}
	return attrs
}

func endAttributes(kind core.OperationKind, o core.Outcome) []attribute.KeyValue {
	switch kind {
	case core.OpAppend:
		attrs := []attribute.KeyValue{attribute.Int("mire.append.bytes", o.Bytes)}
		if o.Group > 0 {
			attrs = append(attrs, attribute.Int("mire.append.group_size", o.Group))
		}
		if o.Duplicate {
			attrs = append(attrs, attribute.Bool("mire.append.duplicate", true))
		}
		return attrs
	case core.OpSave:
		if o.Duplicate {
			return []attribute.KeyValue{attribute.Bool("mire.append.duplicate", true)}
		}
	case core.OpLoad, core.OpRead:
		return []attribute.KeyValue{attribute.Int("mire.events", o.Events)}
	case core.OpSagaRun:
		return []attribute.KeyValue{attribute.String("mire.saga.status", o.Status)}
	}
	return nil
}

// eventLink is the link to the span an event was appended in, from its
// trace headers.
func eventLink(e *core.RecordedEvent) (trace.Link, bool) {
	if e == nil {
		return trace.Link{}, false
	}
	if _, ok := e.Metadata.Headers[core.TraceParentHeader]; !ok {
		return trace.Link{}, false
	}
	sc := trace.SpanContextFromContext(traceContext.Extract(context.Background(), propagation.MapCarrier(e.Metadata.Headers)))
	if !sc.IsValid() {
		return trace.Link{}, false
	}
	return trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{
		attribute.String("mire.event.id", e.Metadata.EventID.String())}}, true
}

// operationAttributes are a store operation's metric attributes.
func operationAttributes(kind core.OperationKind, err error) []attribute.KeyValue {
	attrs := []attribute.KeyValue{attribute.String("mire.operation", kind.String())}
	if err != nil {
		attrs = append(attrs, attribute.String("error.type", errorType(err)))
	}
	return attrs
}

// errorType classifies an error for metrics, with few values.
func errorType(err error) string {
	switch {
	case errors.Is(err, core.ErrConcurrency):
		return "version_conflict"
	case errors.Is(err, core.ErrStreamNotFound):
		return "stream_not_found"
	case errors.Is(err, core.ErrEventIDReused):
		return "event_id_reused"
	case errors.Is(err, core.ErrInvalidInput):
		return "invalid_input"
	case errors.Is(err, core.ErrEncode), errors.Is(err, core.ErrDecode), errors.Is(err, core.ErrUnknownEventType):
		return "codec"
	case errors.Is(err, core.ErrCorruptStream):
		return "corrupt_stream"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline_exceeded"
	}
	if kind, ok := core.DBKind(err); ok {
		return "db_" + kind.String()
	}
	return "other"
}

// BatchHandled implements runner.Metrics.
func (t *Telemetry) BatchHandled(subscription string, partition int, events int, took time.Duration) {
	attrs := metric.WithAttributes(partitionAttributes(subscription, partition)...)
	t.batchDuration.Record(context.Background(), took.Seconds(), attrs)
	t.handled.Add(context.Background(), int64(events), attrs)
}

// Lag implements runner.Metrics.
func (t *Telemetry) Lag(subscription string, partition int, events int64) {
	t.lag.Record(context.Background(), events, metric.WithAttributes(partitionAttributes(subscription, partition)...))
}

// Retry implements runner.Metrics.
func (t *Telemetry) Retry(subscription string, partition int, _ error) {
	t.retries.Add(context.Background(), 1, metric.WithAttributes(partitionAttributes(subscription, partition)...))
}

// LeaseChanged implements runner.Metrics.
func (t *Telemetry) LeaseChanged(subscription string, partition int, held bool, _ int64) {
	attrs := partitionAttributes(subscription, partition)
	t.leaseChanges.Add(context.Background(), 1, metric.WithAttributes(append(attrs, attribute.Bool("mire.lease.held", held))...))
	delta := int64(-1)
	if held {
		delta = 1
	}
	t.leases.Add(context.Background(), delta, metric.WithAttributes(attrs...))
}

// Parked implements runner.Metrics.
func (t *Telemetry) Parked(subscription string, partition int, _ string, parked bool) {
	attrs := append(partitionAttributes(subscription, partition), attribute.Bool("mire.parked", parked))
	t.parked.Add(context.Background(), 1, metric.WithAttributes(attrs...))
}

// Failed implements runner.Metrics.
func (t *Telemetry) Failed(subscription string, partition int, _ error) {
	t.failed.Add(context.Background(), 1, metric.WithAttributes(partitionAttributes(subscription, partition)...))
}

func partitionAttributes(subscription string, partition int) []attribute.KeyValue {
	return []attribute.KeyValue{attribute.String("mire.subscription", subscription), attribute.Int("mire.partition", partition)}
}

// Started implements saga.Metrics.
func (t *Telemetry) Started(name string) {
	t.sagaStarted.Add(context.Background(), 1, metric.WithAttributes(attribute.String("mire.saga.name", name)))
}

// Ended implements saga.Metrics.
func (t *Telemetry) Ended(name string, status saga.Status) {
	t.sagaEnded.Add(context.Background(), 1, metric.WithAttributes(attribute.String("mire.saga.name", name),
		attribute.String("mire.saga.status", string(status))))
}

// Step implements saga.Metrics: a run of a saga.
func (t *Telemetry) Step(name string, took time.Duration, status saga.Status) {
	t.sagaDuration.Record(context.Background(), took.Seconds(), metric.WithAttributes(attribute.String("mire.saga.name", name),
		attribute.String("mire.saga.status", string(status))))
}
