package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/store"
)

// Handle is a started saga, for its status, result and cancellation.
type Handle[R any] struct {
	engine *Engine
	name   string
	id     string
}

// ID returns the saga's id.
func (h *Handle[R]) ID() string { return h.id }

// Start starts saga id with input, idempotently: a repeated or racing
// Start of the same id with the same input returns a handle to the one
// saga; another input (or another definition) is ErrSagaExists, never an
// overwrite.
func (d *Definition[I, R]) Start(ctx context.Context, e *Engine, id string, input I) (*Handle[R], error) {
	var h *Handle[R]
	err := e.store.InScope(ctx, func(scope *store.Scope) error {
		var err error
		h, err = d.StartTx(ctx, e, scope, id, input)
		return err
	})
	if err != nil {
		return nil, err
	}
	e.signal()
	return h, nil
}

// StartTx is Start inside the caller's scope: the saga starts if and when
// the scope commits, with what else it wrote, and not at all if it rolls
// back.
func (d *Definition[I, R]) StartTx(ctx context.Context, e *Engine, scope *store.Scope, id string, input I) (*Handle[R], error) {
	if _, ok := e.definitions[d.name][d.version]; !ok {
		return nil, &core.InvalidInputError{Field: "definition", Value: d.name, Reason: fmt.Sprintf("version %d not given to saga.New", d.version)}
	}
	stream := JournalStream(d.name, id)
	if err := core.ValidateStreamID(stream); err != nil || id == "" {
		return nil, &core.InvalidInputError{Field: "saga id", Value: id, Reason: "not a valid stream id suffix"}
	}
	encoded, err := json.Marshal(input)
	if err != nil {
		return nil, &core.EncodeError{EventType: started{}.EventType(), Err: err}
	}
	correlation := CorrelationID(d.name, id)
	committed, err := scope.Append(ctx, stream, core.NoStream, core.Event{
		Data:     started{Definition: d.name, Version: d.version, Input: encoded},
		Metadata: core.EventMetadata{EventID: derivedID(correlation, "started"), CorrelationID: correlation}})
	switch {
	case errors.Is(err, core.ErrEventIDReused), errors.Is(err, core.ErrConcurrency):
		return nil, fmt.Errorf("%w: %s %q", ErrSagaExists, d.name, id)
	case err != nil:
		return nil, err
	}
	err = e.db.create(ctx, scope.Tx(), claimed{name: d.name, id: id, streamID: stream, correlationID: correlation, version: d.version})
	if err != nil {
		return nil, err
	}
	if !committed.Duplicate {
		e.config.Metrics.Started(d.name)
	}
	return &Handle[R]{engine: e, name: d.name, id: id}, nil
}

// Handle returns a handle to saga id, started or not.
func (d *Definition[I, R]) Handle(e *Engine, id string) *Handle[R] {
	return &Handle[R]{engine: e, name: d.name, id: id}
}

// Status returns the saga's status as the engine's index has it.
func (h *Handle[R]) Status(ctx context.Context) (Info, error) { return h.engine.Get(ctx, h.name, h.id) }

// Result waits until the saga ends and returns its result; a saga that
// ended without one returns a *FailedError, a blocked one ErrBlocked.
func (h *Handle[R]) Result(ctx context.Context) (R, error) {
	var zero R
	delay := 5 * time.Millisecond
	for {
		// A run of this process wakes the wait at once; one of another
		// process is polled.
		progressed := h.engine.progress.wait()
		info, err := h.Status(ctx)
		if err != nil {
			return zero, err
		}
		switch info.Status {
		case StatusCompleted:
			var result R
			if err := json.Unmarshal(info.Result, &result); err != nil {
				return zero, fmt.Errorf("saga: decoding the result of %s %q: %w", h.name, h.id, err)
			}
			return result, nil
		case StatusFailed, StatusCompensated, StatusCompensationFailed:
			return zero, &FailedError{Status: info.Status, Cause: info.LastError}
		case StatusBlocked:
			return zero, fmt.Errorf("%w: %s", ErrBlocked, info.LastError)
		}
		select {
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-progressed:
		case <-time.After(delay):
			delay = min(delay*2, 100*time.Millisecond)
		}
	}
}

// Cancel asks the saga to stop: its next step not yet journaled returns
// ErrCancelled, and it compensates. A saga that already ended is not
// changed; Cancel reports ErrNotFound for it.
func (h *Handle[R]) Cancel(ctx context.Context, reason string) error {
	e := h.engine
	err := e.store.InScope(ctx, func(scope *store.Scope) error {
		stream, ok, err := e.db.wake(ctx, scope.Tx(), h.name, h.id, false)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: %s %q has ended or was never started", ErrNotFound, h.name, h.id)
		}
		correlation := CorrelationID(h.name, h.id)
		_, err = scope.Append(ctx, stream, core.Any, core.Event{Data: cancelRequested{Reason: reason},
			Metadata: core.EventMetadata{EventID: derivedID(correlation, "cancel"), CorrelationID: correlation}})
		if errors.Is(err, core.ErrEventIDReused) {
			return nil // cancelled before, with another reason
		}
		return err
	})
	e.signal()
	return err
}

// Appender is where Reply appends: a *store.EventStore, or a *store.Scope
// to reply inside a transaction.
type Appender interface {
	Append(ctx context.Context, streamID string, expected core.ExpectedVersion, events ...core.Event) (*core.CommittedEvents, error)
}

// Reply appends a participant's reply to request (an event a saga sent) to
// streamID: the reply carries the request's correlation id, so it reaches
// the saga, and the request's id as its causation id, which AwaitResponse
// matches. Its event id derives from the request's, so a repeated Reply is
// a duplicate (the store returns the first result), never a second reply.
func Reply(ctx context.Context, to Appender, request *core.RecordedEvent, streamID string, expected core.ExpectedVersion, reply core.EventData) (*core.CommittedEvents, error) {
	if request.Metadata.CorrelationID == [16]byte{} {
		return nil, &core.InvalidInputError{Field: "request", Value: request.StreamID, Reason: "has no correlation id: a saga did not send it"}
	}
	return to.Append(ctx, streamID, expected, core.Event{Data: reply, Metadata: core.EventMetadata{
		EventID:       derivedID(request.Metadata.EventID, "reply"),
		CorrelationID: request.Metadata.CorrelationID,
		CausationID:   request.Metadata.EventID}})
}
