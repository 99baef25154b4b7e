package integration_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	mireotel "github.com/mire-go/mire/otel"
	"github.com/mire-go/mire/runner"
	"github.com/mire-go/mire/saga"
	"github.com/mire-go/mire/store"
)

// telemetry is an OpenTelemetry SDK with in-memory exporters, and mire's
// adapter on it.
type telemetry struct {
	tel    *mireotel.Telemetry
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	tracer trace.Tracer
}

func newTelemetry(t *testing.T) *telemetry {
	t.Helper()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	tel, err := mireotel.New(&mireotel.Config{TracerProvider: tp,
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	if err != nil {
		t.Fatal(err)
	}
	return &telemetry{tel: tel, spans: spans, reader: reader, tracer: tp.Tracer("test")}
}

// ended returns the ended spans named name for which match holds (nil
// matches all).
func (tm *telemetry) ended(name string, match func(sdktrace.ReadOnlySpan) bool) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range tm.spans.Ended() {
		if s.Name() == name && (match == nil || match(s)) {
			out = append(out, s)
		}
	}
	return out
}

// waitSpan waits for the one ended span named name that match selects.
func (tm *telemetry) waitSpan(t *testing.T, name string, match func(sdktrace.ReadOnlySpan) bool) sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		found := tm.ended(name, match)
		if len(found) == 1 {
			return found[0]
		}
		if len(found) > 1 || time.Now().After(deadline) {
			t.Fatalf("want one matching %s span, have %d", name, len(found))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (tm *telemetry) metrics(t *testing.T) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tm.reader.Collect(context.Background(), &rm); err != nil {
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

func spanAttr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

func withAttr(key, value string) func(sdktrace.ReadOnlySpan) bool {
	return func(s sdktrace.ReadOnlySpan) bool { return spanAttr(s, key) == value }
}

// traceparent is the header value that names span s.
func traceparent(sc trace.SpanContext) string {
	return fmt.Sprintf("00-%s-%s-01", sc.TraceID(), sc.SpanID())
}

func linksTo(s sdktrace.ReadOnlySpan, target trace.SpanContext) bool {
	for _, l := range s.Links() {
		if l.SpanContext.TraceID() == target.TraceID() && l.SpanContext.SpanID() == target.SpanID() {
			return true
		}
	}
	return false
}

func counterSum(t *testing.T, data metricdata.Aggregation, match func(metricdata.DataPoint[int64]) bool) int64 {
	t.Helper()
	sum, ok := data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("not an int64 sum: %T", data)
	}
	var total int64
	for _, dp := range sum.DataPoints {
		if match == nil || match(dp) {
			total += dp.Value
		}
	}
	return total
}

func histogramOf[N int64 | float64](t *testing.T, data metricdata.Aggregation, key, value string) (count uint64, sum N) {
	t.Helper()
	h, ok := data.(metricdata.Histogram[N])
	if !ok {
		t.Fatalf("not a histogram: %T", data)
	}
	for _, dp := range h.DataPoints {
		if key != "" {
			if v, _ := dp.Attributes.Value(attribute.Key(key)); v.String() != value {
				continue
			}
		}
		count += dp.Count
		sum += dp.Sum
	}
	return count, sum
}

// AccountAudited is what the audited projection appends for each account
// opened, in its handler's transaction: an event appended while an event is
// handled.
type AccountAudited struct {
	Account string `json:"account"`
}

func (AccountAudited) EventType() string { return "audit.account-audited" }

// A request appends and saves inside a span: the events carry its trace
// context, and the runner's handler span links to it; what the handler
// appends carries the handler's. The store, runner and sequencer metrics
// have sane values.
func TestTelemetryRequestToProjection(t *testing.T) {
	t.Parallel()
	tm := newTelemetry(t)
	registry := bankRegistry()
	core.Register[AccountAudited](registry)
	es := pgenv.NewStore(t, nil, &store.Config{Registry: registry, Instrumentation: tm.tel})
	ctx := context.Background()

	// The request: an append with a header of the caller's, an update
	// (load and save), and an append whose caller set a traceparent.
	rctx, request := tm.tracer.Start(ctx, "request")
	opened, err := es.Append(rctx, "account-1", core.NoStream,
		core.Event{Data: Opened{Owner: "ada"}, Metadata: core.EventMetadata{Headers: map[string]string{"tenant": "t1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Update(rctx, es, "1", func(root *core.Root[*Account]) error {
		root.Record(Deposited{Amount: 10})
		return nil
	}, nil); err != nil {
		t.Fatal(err)
	}
	foreign := "00-11111111111111111111111111111111-2222222222222222-01"
	last, err := es.Append(rctx, "account-2", core.NoStream,
		core.Event{Data: Opened{Owner: "bob"}, Metadata: core.EventMetadata{Headers: map[string]string{core.TraceParentHeader: foreign}}})
	if err != nil {
		t.Fatal(err)
	}
	request.End()

	// The first append: account-1's other is the save's.
	appendSpan := tm.waitSpan(t, "mire.append", func(s sdktrace.ReadOnlySpan) bool {
		return spanAttr(s, "mire.stream.id") == "account-1" && s.Parent().SpanID() == request.SpanContext().SpanID()
	})
	stored, err := es.ReadEvents(ctx, core.ReadStream("account-1"))
	if err != nil {
		t.Fatal(err)
	}
	if got := stored[0].Metadata.Headers; got["tenant"] != "t1" || got[core.TraceParentHeader] != traceparent(appendSpan.SpanContext()) {
		t.Errorf("stored headers %v: want tenant=t1 and the append span's traceparent %s", got, traceparent(appendSpan.SpanContext()))
	}
	if got := opened.Events[0].Metadata.Headers[core.TraceParentHeader]; got != traceparent(appendSpan.SpanContext()) {
		t.Errorf("the committed events' headers have traceparent %q", got)
	}
	if got := last.Events[0].Metadata.Headers; len(got) != 1 || got[core.TraceParentHeader] != foreign {
		t.Errorf("a caller's traceparent was changed: %v", got)
	}
	for _, name := range []string{"mire.load", "mire.save"} {
		s := tm.waitSpan(t, name, nil)
		if s.Parent().SpanID() != request.SpanContext().SpanID() {
			t.Errorf("%s is not the request's child", name)
		}
	}
	save := tm.waitSpan(t, "mire.save", nil)
	if len(tm.ended("mire.append", func(s sdktrace.ReadOnlySpan) bool { return s.Parent().SpanID() == save.SpanContext().SpanID() })) != 1 {
		t.Error("the save's append is not the save span's child")
	}

	// The projection: a runner with the adapter as its metrics, and the
	// store's instrumentation by default.
	config := fastRunner("telemetry")
	config.Metrics = tm.tel
	r, err := runner.New(es, config)
	if err != nil {
		t.Fatal(err)
	}
	err = r.Add(runner.Subscription{Name: "audit", Category: "account",
		TxHandler: runner.OnTx(func(ctx context.Context, scope *store.Scope, e Opened, recorded *core.RecordedEvent) error {
			_, err := scope.Append(ctx, "audit-"+recorded.StreamID, core.Any, core.NewEvent(AccountAudited{Account: recorded.StreamID}))
			return err
		})})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := r.Stop(stopCtx); err != nil {
				t.Errorf("stopping the runner: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := r.WaitFor(waitCtx, "audit", last); err != nil {
		t.Fatal(err)
	}

	handle := tm.waitSpan(t, "mire.runner.handle", func(s sdktrace.ReadOnlySpan) bool {
		return spanAttr(s, "mire.stream.id") == "account-1" && spanAttr(s, "mire.stream.version") == "1"
	})
	if !linksTo(handle, appendSpan.SpanContext()) {
		t.Errorf("the handler's span links to %v, want the append span %v", handle.Links(), appendSpan.SpanContext())
	}
	if handle.SpanKind() != trace.SpanKindConsumer || spanAttr(handle, "mire.subscription") != "audit" {
		t.Errorf("handle span: kind %v, subscription %q", handle.SpanKind(), spanAttr(handle, "mire.subscription"))
	}
	batch := tm.waitSpan(t, "mire.runner.batch", func(s sdktrace.ReadOnlySpan) bool {
		return s.SpanContext().SpanID() == handle.Parent().SpanID()
	})
	if batch.Parent().IsValid() {
		t.Error("the batch span has a parent: the runner's work starts its own traces")
	}
	// The account opened with a foreign traceparent links to it.
	foreignHandle := tm.waitSpan(t, "mire.runner.handle", withAttr("mire.stream.id", "account-2"))
	if len(foreignHandle.Links()) != 1 || traceparent(foreignHandle.Links()[0].SpanContext) != foreign {
		t.Errorf("the handler of account-2 links to %v, want the caller's %s", foreignHandle.Links(), foreign)
	}

	// What the handler appended carries the trace on: its append span is
	// the handler's child, and its event holds that span.
	audited, err := es.ReadEvents(ctx, core.ReadStream("audit-account-1"))
	if err != nil || len(audited) != 1 {
		t.Fatalf("audit events: %v, %v", audited, err)
	}
	auditAppend := tm.waitSpan(t, "mire.append", withAttr("mire.stream.id", "audit-account-1"))
	if auditAppend.Parent().SpanID() != handle.SpanContext().SpanID() {
		t.Error("the handler's append is not the handler span's child")
	}
	if got := audited[0].Metadata.Headers[core.TraceParentHeader]; got != traceparent(auditAppend.SpanContext()) {
		t.Errorf("the audit event's traceparent %q, want its append's %s", got, traceparent(auditAppend.SpanContext()))
	}

	// The lag is reported at each lease renewal: wait for a caught-up one.
	deadline := time.Now().Add(10 * time.Second)
	for {
		lag, ok := tm.metrics(t)["mire.runner.lag"].(metricdata.Gauge[int64])
		if ok && len(lag.DataPoints) == 1 && lag.DataPoints[0].Value == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no caught-up lag reported: %+v", lag)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()

	m := tm.metrics(t)
	for op, want := range map[string]uint64{"append": 4, "load": 1, "save": 1} { // account-1, its deposit, account-2, the audit
		count, sum := histogramOf[float64](t, m["mire.store.operation.duration"], "mire.operation", op)
		if count < want || sum <= 0 || sum > float64(count)*10 {
			t.Errorf("%s durations: %d adding up to %vs, want at least %d of sane length", op, count, sum, want)
		}
	}
	head, err := es.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The instrumented sweeps numbered the log, up to the head. (Not always
	// all of it: a sweep that commits as the runner stops reports its
	// cancellation, with nothing assigned.)
	if sweeps, assigned := histogramOf[int64](t, m["mire.store.sequencer.backlog"], "", ""); sweeps == 0 || assigned == 0 || assigned > head {
		t.Errorf("sequencer backlog: %d sweeps numbered %d events, want some, and at most the head, %d", sweeps, assigned, head)
	}
	if count, _ := histogramOf[float64](t, m["mire.store.operation.duration"], "mire.operation", "sequence"); count == 0 {
		t.Error("no sweep time recorded")
	}
	// Two accounts, a deposit, two audits (more if a batch rolled back and
	// ran again).
	if n := counterSum(t, m["mire.store.append.events"], nil); n < 5 {
		t.Errorf("mire.store.append.events = %d, want 5", n)
	}
	if n := counterSum(t, m["mire.runner.events"], nil); n < 3 {
		t.Errorf("mire.runner.events = %d, want the category's 3 events at least", n)
	}
	if n := counterSum(t, m["mire.runner.lease.changes"], nil); n < 2 {
		t.Errorf("mire.runner.lease.changes = %d, want an acquisition and a release", n)
	}
	if n := counterSum(t, m["mire.runner.leases"], nil); n != 0 {
		t.Errorf("mire.runner.leases = %d after the runner stopped, want 0", n)
	}
	if count, sum := histogramOf[float64](t, m["mire.runner.batch.duration"], "", ""); count == 0 || sum <= 0 {
		t.Errorf("batch durations: %d adding up to %vs", count, sum)
	}
}

// An append retried with the same event ids under another trace is a
// retry, not a reused id: trace headers are no part of an event's content.
// The stored event keeps the first attempt's.
func TestTelemetryRetryUnderAnotherTrace(t *testing.T) {
	t.Parallel()
	tm := newTelemetry(t)
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry(), Instrumentation: tm.tel})
	ctx := context.Background()
	event := core.Event{Data: Deposited{Amount: 5}, Metadata: core.EventMetadata{EventID: uuid.New(),
		Headers: map[string]string{"tenant": "t1"}}}

	first, span := tm.tracer.Start(ctx, "first attempt")
	if _, err := es.Append(first, "account-1", core.NoStream, event); err != nil {
		t.Fatal(err)
	}
	span.End()
	for _, tc := range []struct {
		name string
		ctx  context.Context
	}{{"another trace", nil}, {"no trace", ctx}} {
		retryCtx := tc.ctx
		if retryCtx == nil {
			var s trace.Span
			retryCtx, s = tm.tracer.Start(ctx, "retry")
			defer s.End()
		}
		committed, err := es.Append(retryCtx, "account-1", core.NoStream, event)
		if err != nil {
			t.Fatalf("retry with %s: %v", tc.name, err)
		}
		if !committed.Duplicate {
			t.Errorf("retry with %s: not reported as a duplicate", tc.name)
		}
	}
	stored, err := es.ReadEvents(ctx, core.ReadStream("account-1"))
	if err != nil || len(stored) != 1 {
		t.Fatalf("stored: %v, %v", stored, err)
	}
	firstAppend := tm.ended("mire.append", nil)[0]
	if got := stored[0].Metadata.Headers[core.TraceParentHeader]; got != traceparent(firstAppend.SpanContext()) {
		t.Errorf("stored traceparent %q, want the first attempt's %s", got, traceparent(firstAppend.SpanContext()))
	}
	// Other content is still refused.
	event.Metadata.Headers = map[string]string{"tenant": "t2"}
	if _, err := es.Append(ctx, "account-1", core.NoStream, event); !errors.Is(err, core.ErrEventIDReused) {
		t.Errorf("a retry with another tenant header: %v, want ErrEventIDReused", err)
	}
}

// Concurrent appends form group commits, whose sizes are recorded and
// named on the appends' spans; a handler that keeps failing counts
// retries and parks its stream.
func TestTelemetryGroupsRetriesAndParking(t *testing.T) {
	t.Parallel()
	tm := newTelemetry(t)
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry(), Instrumentation: tm.tel})
	ctx := context.Background()

	const writers, appends = 16, 25
	for round := 0; ; round++ {
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := range writers {
			wg.Go(func() {
				for i := range appends {
					stream := fmt.Sprintf("account-r%dw%d", round, w)
					if _, err := es.Append(ctx, stream, core.Exact(int64(i)), core.NewEvent(Deposited{Amount: 1})); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		groups, grouped := histogramOf[int64](t, tm.metrics(t)["mire.store.append.group.size"], "", "")
		if groups > 0 {
			if grouped < int64(groups)*2 || grouped > int64(groups)*256 {
				t.Errorf("%d groups of %d appends in all: want 2 to 256 each", groups, grouped)
			}
			if len(tm.ended("mire.append", func(s sdktrace.ReadOnlySpan) bool { return spanAttr(s, "mire.append.group_size") != "" })) == 0 {
				t.Error("no append span names its group")
			}
			break
		}
		if round == 4 {
			t.Fatalf("%d rounds of %d concurrent writers formed no group", round+1, writers)
		}
	}

	// A subscription whose handler fails for one stream: retried, then
	// parked.
	if _, err := es.Append(ctx, "account-bad", core.NoStream, core.NewEvent(Deposited{Amount: 1})); err != nil {
		t.Fatal(err)
	}
	config := fastRunner("parking")
	config.Metrics, config.MaxAttempts = tm.tel, 2
	r, err := runner.New(es, config)
	if err != nil {
		t.Fatal(err)
	}
	err = r.Add(runner.Subscription{Name: "picky", Category: "account", OnFailure: runner.Park,
		Handler: func(_ context.Context, e runner.HandledEvent) error {
			if strings.HasSuffix(e.Recorded.StreamID, "-bad") {
				return errors.New("bad account")
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = r.Stop(stopCtx)
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		m := tm.metrics(t)
		parked, ok := m["mire.runner.parked"]
		if ok && counterSum(t, parked, nil) == 1 {
			if n := counterSum(t, m["mire.runner.retries"], nil); n < 1 {
				t.Errorf("mire.runner.retries = %d, want the failed attempt before the last", n)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the failing stream was not parked")
		}
		time.Sleep(20 * time.Millisecond)
	}
	failedHandles := tm.ended("mire.runner.handle", func(s sdktrace.ReadOnlySpan) bool {
		return spanAttr(s, "mire.stream.id") == "account-bad" && s.Status().Description == "bad account"
	})
	if len(failedHandles) < 2 {
		t.Errorf("%d failed handle spans for account-bad, want one per attempt (2)", len(failedHandles))
	}
}

// A saga started in a request: its run and step spans, the request it
// sends carries the send step's trace, the participant's handler links to
// it, and the await that takes the reply links to the reply's append.
func TestTelemetrySagaReplyLinks(t *testing.T) {
	t.Parallel()
	tm := newTelemetry(t)
	es := pgenv.NewStore(t, nil, &store.Config{Registry: sagaRegistry(), Instrumentation: tm.tel})
	config := fastSagas("telemetry")
	config.Metrics = tm.tel
	env := newSagaEnv(t, es, config, nil)

	rctx, request := tm.tracer.Start(context.Background(), "checkout")
	h, err := orderSaga.Start(rctx, env.engine, "o-1", PlaceOrder{SKU: "apple", Qty: 1, Amount: 10})
	if err != nil {
		t.Fatal(err)
	}
	request.End()
	if _, err := result(t, h); err != nil {
		t.Fatal(err)
	}

	// The stock request: appended inside the send step.
	send := tm.waitSpan(t, "mire.saga.step", func(s sdktrace.ReadOnlySpan) bool {
		return spanAttr(s, "mire.saga.step.kind") == "send" && strings.HasPrefix(spanAttr(s, "mire.saga.step"), "stock-apple ")
	})
	if spanAttr(send, "mire.saga.name") != "order" || spanAttr(send, "mire.saga.id") != "o-1" {
		t.Errorf("send step attributes: %v", send.Attributes())
	}
	requestAppend := tm.waitSpan(t, "mire.append", func(s sdktrace.ReadOnlySpan) bool {
		return spanAttr(s, "mire.stream.id") == "stock-apple" && s.Parent().SpanID() == send.SpanContext().SpanID()
	})
	run := tm.waitSpan(t, "mire.saga.run", func(s sdktrace.ReadOnlySpan) bool {
		return s.SpanContext().SpanID() == send.Parent().SpanID()
	})
	if spanAttr(run, "mire.saga.status") != string(saga.StatusWaiting) {
		t.Errorf("the run that sent the request left the saga %q, want waiting", spanAttr(run, "mire.saga.status"))
	}

	// The participant's handler links to the request's append, and its
	// reply is appended inside it.
	participant := tm.waitSpan(t, "mire.runner.handle", func(s sdktrace.ReadOnlySpan) bool {
		return spanAttr(s, "mire.subscription") == "participants" && spanAttr(s, "mire.stream.id") == "stock-apple"
	})
	if !linksTo(participant, requestAppend.SpanContext()) {
		t.Errorf("the participant's span links to %v, want the request's append %v", participant.Links(), requestAppend.SpanContext())
	}
	replyAppend := tm.waitSpan(t, "mire.append", func(s sdktrace.ReadOnlySpan) bool {
		return s.Parent().SpanID() == participant.SpanContext().SpanID()
	})

	// The await that took the reply links to the reply's append.
	await := tm.waitSpan(t, "mire.saga.step", func(s sdktrace.ReadOnlySpan) bool {
		return spanAttr(s, "mire.saga.step.kind") == "await" && spanAttr(s, "mire.event.type") == StockReserved{}.EventType()
	})
	if !linksTo(await, replyAppend.SpanContext()) {
		t.Errorf("the await's span links to %v, want the reply's append %v", await.Links(), replyAppend.SpanContext())
	}

	m := tm.metrics(t)
	if n := counterSum(t, m["mire.saga.started"], nil); n != 1 {
		t.Errorf("mire.saga.started = %d", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for counterSum(t, tm.metrics(t)["mire.saga.ended"], func(dp metricdata.DataPoint[int64]) bool {
		v, _ := dp.Attributes.Value("mire.saga.status")
		return v.AsString() == string(saga.StatusCompleted)
	}) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("mire.saga.ended has no completed saga")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if count, _ := histogramOf[float64](t, tm.metrics(t)["mire.saga.run.duration"], "", ""); count < 2 {
		t.Errorf("%d saga runs measured, want at least 2 (it waited for replies)", count)
	}
}
