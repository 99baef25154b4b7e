package runner

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/store"
)

// Subscription is a read model's view of the log: which events it takes,
// from where, and what handles them. Events reach the handler in global
// order, so each stream's events in version order, and none is skipped.
type Subscription struct {
	// Name identifies the subscription's checkpoint and leases in the
	// database: 1 to 100 letters, digits and "._-". Renaming a subscription
	// starts a new one.
	Name string

	// Category, when set, selects the streams "<Category>-<id>"; empty
	// selects the whole log.
	Category string

	// EventTypes, when not empty, keeps only events of these types (and of
	// the types upcast into them).
	EventTypes []string

	// StartAt is where the subscription starts the first time it runs:
	// StartAtBeginning (the default) or StartAtHead. Later runs go on from
	// the checkpoint.
	StartAt StartPosition

	// Partitions splits the subscription into that many partitions by a
	// stable hash of the stream id (core.StreamPartition), each with its own
	// lease and checkpoint, so that up to Partitions runners handle it at
	// once. A stream is always in one partition, so its events stay in
	// order. At most core.StreamBuckets. Changing it moves streams between
	// partitions, whose checkpoints then no longer describe them: the
	// runner refuses to start a subscription whose stored partitions differ
	// (see Control.Drop). Defaults to 1.
	Partitions int

	// Handler handles events at least once: after a crash or a failover,
	// events handled since the last checkpoint are handled again. Set
	// Handler or TxHandler, not both.
	Handler EventHandler

	// TxHandler handles events inside the transaction that moves the
	// checkpoint, so that what it writes through its scope commits exactly
	// when the checkpoint does: a read model kept this way counts every
	// event once, across crashes and failovers.
	TxHandler TransactionalEventHandler

	// OnFailure is what happens to an event that fails MaxAttempts times:
	// Stop (the default) or Park.
	OnFailure FailurePolicy
}

// StartPosition is where a new subscription starts.
type StartPosition uint8

const (
	// StartAtBeginning handles the log from its first event.
	StartAtBeginning StartPosition = iota
	// StartAtHead handles only events sequenced after the subscription
	// first started.
	StartAtHead
)

// FailurePolicy is what a subscription does with an event that keeps
// failing.
type FailurePolicy uint8

const (
	// Stop marks the partition failed, in the database, with the error and
	// the event's position: no runner dispatches it again until it is
	// resumed or reset (Control.Resume, Control.Reset), so replicas do not
	// take it over and fail in turn. Nothing is skipped.
	Stop FailurePolicy = iota
	// Park sets the event's stream aside: its later events wait while
	// other streams flow, until an operator retries the stream or skips
	// the event with a reason (Control.RetryParked, Control.SkipParked).
	Park
)

// HandledEvent is what a handler receives: the event as recorded, and
// (Event) the event decoded through the store's registry.
type HandledEvent struct {
	Recorded *core.RecordedEvent
	decoded  *decodedEvent
}

// decodedEvent decodes an event the first time a handler asks for it: a
// handler that looks only at some event types (On, OnTx) or at the
// recorded data does not pay for decoding the rest.
type decodedEvent struct {
	registry *core.Registry
	done     bool
	data     core.EventData
	err      error
}

// Event returns the event decoded through the store's registry, nil for an
// event type the registry does not know. An event that does not decode
// returns nil too, and fails the handling of the event whatever the
// handler returns: it is retried, then stopped or parked.
func (e HandledEvent) Event() core.EventData {
	d := e.decoded
	if d == nil {
		return nil
	}
	if !d.done {
		d.done = true
		d.data, d.err = d.registry.Decode(e.Recorded)
		if errors.Is(d.err, core.ErrUnknownEventType) {
			d.err = nil
		}
	}
	return d.data
}

// NewHandledEvent returns recorded as a handler receives it, decoded
// through registry when asked: for tests of handlers.
func NewHandledEvent(registry *core.Registry, recorded *core.RecordedEvent) HandledEvent {
	return HandledEvent{Recorded: recorded, decoded: &decodedEvent{registry: registry}}
}

// decodeError is the error decoding the event met, if a handler asked for
// it.
func (e HandledEvent) decodeError() error {
	if e.decoded == nil {
		return nil
	}
	return e.decoded.err
}

// is reports whether the event can be an E without decoding it: false
// only when E is a concrete event type and the event is of another type.
func is[E core.EventData](recorded *core.RecordedEvent) bool {
	t := reflect.TypeFor[E]()
	if t.Kind() == reflect.Interface || t.Kind() == reflect.Pointer {
		return true // a union, or a type whose zero value cannot name itself
	}
	var zero E
	return zero.EventType() == recorded.EventType
}

// EventHandler handles one event. It may be called again for the same
// event (at-least-once). A returned error is retried with backoff.
type EventHandler func(ctx context.Context, event HandledEvent) error

// TransactionalEventHandler handles one event inside the runner's
// checkpoint transaction. scope is that transaction: use it (scope.Tx()
// for the read model's own statements; store.Load, store.Save and
// scope.Append for aggregates and events) and never commit or roll it back.
// Many events share one transaction; an error rolls all of them back and
// they are retried, one at a time to find the one that fails.
type TransactionalEventHandler func(ctx context.Context, scope *store.Scope, event HandledEvent) error

// On returns an EventHandler for events of type E only: others are
// ignored. Combine several with Handlers.
func On[E core.EventData](fn func(ctx context.Context, event E, recorded *core.RecordedEvent) error) EventHandler {
	return func(ctx context.Context, event HandledEvent) error {
		if !is[E](event.Recorded) {
			return nil
		}
		if data, ok := event.Event().(E); ok {
			return fn(ctx, data, event.Recorded)
		}
		return nil
	}
}

// OnTx returns a TransactionalEventHandler for events of type E only:
// others are ignored. Combine several with TxHandlers.
func OnTx[E core.EventData](fn func(ctx context.Context, scope *store.Scope, event E, recorded *core.RecordedEvent) error) TransactionalEventHandler {
	return func(ctx context.Context, scope *store.Scope, event HandledEvent) error {
		if !is[E](event.Recorded) {
			return nil
		}
		if data, ok := event.Event().(E); ok {
			return fn(ctx, scope, data, event.Recorded)
		}
		return nil
	}
}

// Handlers returns an EventHandler that calls each of handlers in turn.
func Handlers(handlers ...EventHandler) EventHandler {
	return func(ctx context.Context, event HandledEvent) error {
		for _, h := range handlers {
			if err := h(ctx, event); err != nil {
				return err
			}
		}
		return nil
	}
}

// TxHandlers returns a TransactionalEventHandler that calls each of
// handlers in turn.
func TxHandlers(handlers ...TransactionalEventHandler) TransactionalEventHandler {
	return func(ctx context.Context, scope *store.Scope, event HandledEvent) error {
		for _, h := range handlers {
			if err := h(ctx, scope, event); err != nil {
				return err
			}
		}
		return nil
	}
}

var subscriptionNamePattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)

func (s *Subscription) validate() error {
	invalid := func(field, format string, args ...any) error {
		return &core.InvalidInputError{Field: "runner.Subscription." + field, Value: s.Name, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case !subscriptionNamePattern.MatchString(s.Name):
		return invalid("Name", "%q: want 1 to 100 letters, digits, '.', '_' or '-'", s.Name)
	case (s.Handler == nil) == (s.TxHandler == nil):
		return invalid("Handler", "set Handler or TxHandler, and not both")
	case s.Partitions < 0 || s.Partitions > core.StreamBuckets:
		return invalid("Partitions", "%d: want 1 to %d", s.Partitions, core.StreamBuckets)
	case s.StartAt != StartAtBeginning && s.StartAt != StartAtHead:
		return invalid("StartAt", "unknown start position %d", s.StartAt)
	case s.OnFailure != Stop && s.OnFailure != Park:
		return invalid("OnFailure", "unknown failure policy %d", s.OnFailure)
	}
	return s.query(0, 0).Validate()
}

// partitions is Partitions with its default.
func (s *Subscription) partitions() int { return max(s.Partitions, 1) }

// query is the read of one partition from position on.
func (s *Subscription) query(partition int, from int64) core.StreamQuery {
	q := core.StreamQuery{Category: s.Category, EventTypes: s.EventTypes, FromPosition: from}
	if s.partitions() > 1 {
		q.Partitions, q.Partition = s.partitions(), partition
	}
	return q
}

// sparse reports whether a read of the subscription can come back short
// before the head: a filter that skips events.
func (s *Subscription) sparse() bool {
	return s.Category != "" || len(s.EventTypes) > 0 || s.partitions() > 1
}

// afterCommitKey holds a batch's after-commit callbacks in its handlers'
// context.
type afterCommitKey struct{}

type afterCommit struct{ fns []func() }

// AfterCommit runs fn once the checkpoint transaction of the
// TransactionalEventHandler given ctx has committed, and never if it rolls
// back: for telling other components about what the handler wrote, which
// they cannot see before. Outside a transactional handler it runs fn at
// once.
func AfterCommit(ctx context.Context, fn func()) {
	if hooks, ok := ctx.Value(afterCommitKey{}).(*afterCommit); ok {
		hooks.fns = append(hooks.fns, fn)
		return
	}
	fn()
}
