package saga

import (
	"errors"
	"fmt"

	"github.com/mire-go/mire/core"
)

var (
	// ErrSuspended is what a step returns when the saga cannot go on now:
	// it waits for a reply or a timer, or its executor must stop (its claim
	// was superseded, a step must be retried later). Return it from the
	// saga function as it is. Swallowing it changes nothing: the saga stops
	// at that step whatever the function returns.
	ErrSuspended = errors.New("saga: suspended")

	// ErrTimeout is returned by an await whose deadline passed first.
	ErrTimeout = errors.New("saga: timed out")

	// ErrCancelled is returned by the first step not yet journaled after
	// the saga was cancelled; the saga then compensates.
	ErrCancelled = errors.New("saga: cancelled")

	// ErrResponse matches a *ResponseError.
	ErrResponse = errors.New("saga: error response")

	// ErrSagaExists is returned by Start for a saga id already started with
	// another input (or by another definition).
	ErrSagaExists = errors.New("saga: a saga with this id exists with another input")

	// ErrNotFound is returned for a saga that was never started.
	ErrNotFound = errors.New("saga: no such saga")

	// ErrBlocked is returned by Result for a saga blocked by a mismatch
	// between its journal and its code (see Info.LastError); Engine.Retry
	// runs it again once the code is fixed.
	ErrBlocked = errors.New("saga: blocked")
)

// ResponseError is what AwaitResponse returns for a reply whose
// IntoResponse says IsError: it carries the reply.
type ResponseError struct {
	Response core.ResponseValue
	// Event is the reply, decoded.
	Event core.EventData
}

func (e *ResponseError) Error() string {
	return fmt.Sprintf("saga: %s answered with an error: %s", e.Response.EventType, e.Response.Reason)
}

// Is makes errors.Is(err, ErrResponse) hold.
func (e *ResponseError) Is(target error) bool { return target == ErrResponse }

// StepError is a step's error as the journal keeps it: a Send refused by
// its stream, or a Step or StepTx that failed every attempt. The same error
// is returned on every replay.
type StepError struct {
	Step    string
	Message string
}

func (e *StepError) Error() string { return fmt.Sprintf("saga: step %s: %s", e.Step, e.Message) }

// FailedError is what Result returns for a saga that ended without a
// result: failed, compensated, or with a compensation that failed.
type FailedError struct {
	Status Status
	Cause  string
}

func (e *FailedError) Error() string { return fmt.Sprintf("saga: %s: %s", e.Status, e.Cause) }
