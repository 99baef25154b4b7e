package store

import (
	"context"
	"fmt"
	"maps"

	"github.com/mire-go/mire/core"
)

// The store reports its operations to Config.Instrumentation. Every call
// site checks s.instr for nil before it builds anything for it, so a store
// without instrumentation pays one comparison per operation and allocates
// nothing more.

// traceHeaders are the headers an idempotent retry may carry with other
// values than the stored events: they describe the delivery.
var traceHeaders = []string{core.TraceParentHeader, core.TraceStateHeader}

// operation is an instrumented operation in progress; the zero value,
// for a store without instrumentation, does nothing.
type operation struct{ end func(core.Outcome) }

// start reports op starting. Call it only when s.instr is set.
func (s *EventStore) start(ctx context.Context, op core.Operation) (context.Context, operation) {
	ctx, end := s.instr.Start(ctx, op)
	return ctx, operation{end}
}

func (o operation) done(outcome core.Outcome) {
	if o.end != nil {
		o.end(outcome)
	}
}

// appendTraced is append with the store's instrumentation: the append is
// an operation, and its events carry the trace context it runs in.
func (s *EventStore) appendTraced(ctx context.Context, exec executor, streamID string, expected core.ExpectedVersion, events []core.Event) (*core.CommittedEvents, error) {
	ctx, op := s.start(ctx, core.Operation{Kind: core.OpAppend, StreamID: streamID, Events: len(events)})
	r, err := s.encodeAppend(streamID, expected, events, s.instr.TraceHeaders(ctx))
	if err != nil {
		op.done(core.Outcome{Err: err})
		return nil, err
	}
	committed, err := s.route(ctx, exec, r)
	if err != nil {
		committed, err = nil, s.interpretError(fmt.Sprintf("append to %q", streamID), err)
	}
	outcome := core.Outcome{Err: err, Bytes: int(r.bytes), Group: int(r.group)}
	if committed != nil {
		outcome.Events, outcome.Duplicate = len(committed.Events), committed.Duplicate
	}
	op.done(outcome)
	return committed, err
}

// withTraceHeaders returns headers with the trace headers added, in a new
// map, unless the caller set one of them: a caller's trace context is
// never mixed with the store's.
func withTraceHeaders(headers, trace map[string]string) map[string]string {
	for key := range trace {
		if _, set := headers[key]; set {
			return headers
		}
	}
	merged := make(map[string]string, len(headers)+len(trace))
	maps.Copy(merged, headers)
	maps.Copy(merged, trace)
	return merged
}
