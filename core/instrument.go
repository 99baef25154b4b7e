package core

import (
	"context"
	"time"
)

// Instrumentation observes mire's work for tracing and metrics. The store,
// the runner and the saga engine call it, when one is configured
// (store.Config.Instrumentation; the runner and the engine take the store's
// by default), at the start and the end of each operation, and ask it for
// the trace context to store in the headers of appended events, so that
// whoever handles an event later can link back to the request that wrote
// it. Left nil, it costs a nil check: nothing is measured or allocated.
//
// mire depends on no telemetry library: the module
// github.com/mire-go/mire/otel implements Instrumentation with
// OpenTelemetry spans and metrics.
//
// Its methods are called on the goroutines doing the work, concurrently,
// and must return quickly and never block.
type Instrumentation interface {
	// Start reports an operation starting. It returns the context the
	// operation goes on in (one that carries a span, say, to what the
	// operation calls) and a function that mire calls exactly once, when
	// the operation ends, with its outcome. Neither may be nil.
	Start(ctx context.Context, op Operation) (context.Context, func(Outcome))

	// TraceHeaders returns the headers that carry the trace context of ctx
	// into the events appended in it ([TraceParentHeader] and, if there is
	// one, [TraceStateHeader]), or nil when ctx carries none. The store adds
	// them to each event's headers, keeping any header the caller set.
	TraceHeaders(ctx context.Context) map[string]string
}

// The event headers that carry trace context, in the W3C Trace Context
// format (https://www.w3.org/TR/trace-context/). With an
// [Instrumentation] configured, the store sets them on appended events
// from the append's context, unless the caller set them. They describe
// how an event was delivered, not what it is: an idempotent retry (the
// same event ids) that carries other trace headers is still a retry of
// the same events, and the store keeps the first attempt's. Like any
// header they count toward the store's size limits (about 70 bytes).
const (
	TraceParentHeader = "traceparent"
	TraceStateHeader  = "tracestate"
)

// OperationKind is what an [Operation] does.
type OperationKind uint8

// The operations mire reports to an [Instrumentation].
const (
	// OpAppend is an append to one stream (EventStore.Append, a scope's
	// Append, or the append of a Save): StreamID, Events. Its outcome has
	// Events, Bytes, Group and Duplicate.
	OpAppend OperationKind = iota + 1
	// OpAppendGroup is one group commit: a statement that stores the
	// single-event appends of several callers (store.Config.SoloAppends).
	// Events is the number of appends in it; the outcome's Events how many
	// it stored (the others run alone). Its context is the first grouped
	// append's; each append is also reported as an OpAppend.
	OpAppendGroup
	// OpLoad is the load of an aggregate (store.Load and its variants):
	// StreamID. The outcome's Events counts the events replayed.
	OpLoad
	// OpSave is a save of an aggregate (store.Save and its variants):
	// StreamID, Events. Its append is reported inside it as an OpAppend.
	OpSave
	// OpRead is a read (EventStore.Read and its variants): Query. It
	// lasts from the first event asked for until the caller stops or the
	// read ends; the outcome's Events counts the events read.
	OpRead
	// OpSequence is a sweep of the sequencer (EventStore.Sequence, a
	// store.Sequencer's run, the sweep before a read of the log). The
	// outcome's Events is the number of positions it assigned: the events
	// that were committed and waiting for one, the sequencer's backlog.
	OpSequence
	// OpBatch is a batch of a runner's subscription: Subscription,
	// Partition, Events (read for it), Started (before the read). It
	// covers the read, the handling, retries and the checkpoint; the
	// outcome's Events counts the events handled.
	OpBatch
	// OpHandle is a runner's handler called with one event:
	// Subscription, Partition, StreamID, Event. Event's headers hold the
	// trace context of the append that stored it, if it was traced.
	OpHandle
	// OpSagaRun is a run of a saga by an engine's executor, from its
	// journal's read until it waits, ends or must stop: Saga, SagaID,
	// StreamID (the journal). The outcome's Status is the saga's status
	// after it.
	OpSagaRun
	// OpSagaStep is a step a saga's run carries out (not one replayed
	// from the journal): Saga, SagaID, Step, StepKind ("send", "step",
	// "step-tx", or "await" when it takes a reply). Event is the reply an
	// await takes, with its trace headers.
	OpSagaStep
)

var operationNames = [...]string{
	OpAppend:      "append",
	OpAppendGroup: "append_group",
	OpLoad:        "load",
	OpSave:        "save",
	OpRead:        "read",
	OpSequence:    "sequence",
	OpBatch:       "batch",
	OpHandle:      "handle",
	OpSagaRun:     "saga_run",
	OpSagaStep:    "saga_step",
}

// String returns the kind's name: "append", "append_group", "load",
// "save", "read", "sequence", "batch", "handle", "saga_run", "saga_step".
func (k OperationKind) String() string {
	if int(k) < len(operationNames) && operationNames[k] != "" {
		return operationNames[k]
	}
	return "unknown"
}

// Operation describes an operation starting. Which fields are set depends
// on Kind (see the OperationKind constants); the others are zero.
type Operation struct {
	Kind OperationKind

	// Started is when the operation began, when that was before Start was
	// called (a runner's batch is reported once its read returned events);
	// zero means now.
	Started time.Time

	// StreamID is the stream appended to, saved, loaded, or handled (the
	// event's), or a saga's journal.
	StreamID string

	// Events is how many events an append, a save or a batch has, or how
	// many appends a group commit has.
	Events int

	// Query is what a read selects.
	Query StreamQuery

	// Subscription and Partition identify a runner's batch or handler
	// call.
	Subscription string
	Partition    int

	// Event is the event handed to a runner's handler, or the reply a
	// saga's await takes. Its Metadata.Headers carry the trace context it
	// was appended in ([TraceParentHeader]).
	Event *RecordedEvent

	// Saga and SagaID identify a saga's run or step; Step and StepKind
	// name the step.
	Saga, SagaID   string
	Step, StepKind string
}

// Outcome is how an operation ended.
type Outcome struct {
	// Err is the operation's error, nil on success.
	Err error

	// Events counts what the operation did: events appended, loaded, read
	// or handled, positions assigned, or a group's appends stored.
	Events int

	// Bytes is the encoded size (data plus headers) of an append's
	// events.
	Bytes int

	// Group is the number of appends in the group commit that stored an
	// append; 0 when it ran alone.
	Group int

	// Duplicate reports an append found already stored with the same
	// event ids and content (see CommittedEvents.Duplicate).
	Duplicate bool

	// Status is the status a saga's run left it in.
	Status string
}
