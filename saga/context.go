package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/store"
)

// Context is a saga's view of its run: the steps (Send, Await,
// AwaitResponse, Step, StepTx, Sleep, Now, UUID) take it, and Compensate
// registers what undoes a step. It is valid only during the call of the
// saga function it was given to.
type Context struct {
	ctx      context.Context
	engine   *Engine
	instance claimed
	journal  *journal
	seq      int
	dbNow    time.Time

	// Why the run stops at the current step; the first set wins.
	stop       stopReason
	blocked    string
	retryCause error
	wakeAt     *time.Time

	compensations []compensation
	// compensating is set while compensations run: steps go on even after
	// a cancellation.
	compensating bool
	// finished: the journal's last entry and the claim's end committed.
	finished bool
}

type stopReason uint8

const (
	running   stopReason = iota
	suspended            // waits for a reply or a timer
	conflict             // the journal moved: read it again and replay
	retry                // a step failed: try again later
	blocked              // journal and code disagree
)

type compensation struct {
	name string
	fn   func(c *Context) error
}

// ID returns the saga's id.
func (c *Context) ID() string { return c.instance.id }

// Name returns the saga's definition name.
func (c *Context) Name() string { return c.instance.name }

// CorrelationID returns the id on everything the saga sends.
func (c *Context) CorrelationID() uuid.UUID { return c.instance.correlationID }

// Context returns a context.Context for calls the saga function makes
// between steps. It ends when the executor stops.
func (c *Context) Context() context.Context { return c.ctx }

// Compensate registers fn to undo what the saga did so far, under name.
// If the saga fails (its function returns an error, or it is cancelled),
// the compensations registered by then run in reverse order, each once, as
// journaled steps; fn may use the saga's steps. Register a compensation
// right after the step it undoes succeeds.
func (c *Context) Compensate(name string, fn func(c *Context) error) {
	c.compensations = append(c.compensations, compensation{name: name, fn: fn})
}

// Now returns the current time by the database clock, journaled: a replay
// returns the same time.
func (c *Context) Now() (time.Time, error) {
	n, s, err := c.op(kindNow, "now")
	if err != nil {
		return time.Time{}, err
	}
	if s != nil {
		var t time.Time
		err := c.decode(s.Result, &t)
		return t, err
	}
	return c.dbNow, c.journalStep(nil, stepped{Seq: n, Kind: kindNow, Name: "now", Result: mustJSON(c.dbNow)})
}

// UUID returns a random UUID, journaled: a replay returns the same one.
func (c *Context) UUID() (uuid.UUID, error) {
	n, s, err := c.op(kindUUID, "uuid")
	if err != nil {
		return uuid.Nil, err
	}
	if s != nil {
		var id uuid.UUID
		err := c.decode(s.Result, &id)
		return id, err
	}
	id := uuid.New()
	return id, c.journalStep(nil, stepped{Seq: n, Kind: kindUUID, Name: "uuid", Result: mustJSON(id)})
}

// op starts the saga's next operation: it returns the operation's number
// and its journaled outcome, if any. An operation journaled as another
// kind or name blocks the saga: its code no longer matches its journal.
func (c *Context) op(kind stepKind, name string) (int, *stepped, error) {
	if c.stop != running {
		return 0, nil, ErrSuspended
	}
	c.seq++
	if s, ok := c.journal.steps[c.seq]; ok {
		if s.Kind != kind || s.Name != name {
			return 0, nil, c.block(fmt.Sprintf("step %d is %s %q in the journal but %s %q in the code", c.seq, s.Kind, s.Name, kind, name))
		}
		return c.seq, &s, nil
	}
	if c.journal.finished != nil {
		return 0, nil, c.block(fmt.Sprintf("step %d (%s %q) follows the end of the journal", c.seq, kind, name))
	}
	if c.journal.cancel != nil && !c.compensating && kind != kindAwait {
		return 0, nil, ErrCancelled
	}
	return c.seq, nil, nil
}

func (c *Context) halt(reason stopReason) error {
	if c.stop == running {
		c.stop = reason
	}
	return ErrSuspended
}

func (c *Context) block(reason string) error {
	if c.stop == running {
		c.blocked = reason
	}
	return c.halt(blocked)
}

// retryLater stops the run for a step that failed, to try it again after a
// backoff.
func (c *Context) retryLater(cause error) error {
	if c.stop == running {
		c.retryCause = cause
	}
	return c.halt(retry)
}

func (c *Context) suspend(until *time.Time) error {
	if until != nil && (c.wakeAt == nil || until.Before(*c.wakeAt)) {
		c.wakeAt = until
	}
	return c.halt(suspended)
}

func (c *Context) decode(raw json.RawMessage, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return c.block(fmt.Sprintf("step %d's journaled result does not decode into %T: %v", c.seq, v, err))
	}
	return nil
}

// journalStep appends entries to the journal, in scope when given (the
// step's own transaction) or alone, under the journal's version: a journal
// that moved (a reply arrived, another executor took over) is a conflict,
// and the run replays it.
func (c *Context) journalStep(scope *store.Scope, entries ...core.EventData) error {
	events := make([]core.Event, len(entries))
	for i, e := range entries {
		events[i] = core.Event{Data: e, Metadata: core.EventMetadata{
			EventID: derivedID(c.instance.correlationID, entryKey(e)), CorrelationID: c.instance.correlationID}}
	}
	expected := core.Exact(c.journal.version)
	var committed *core.CommittedEvents
	var err error
	if scope != nil {
		committed, err = scope.Append(c.ctx, c.instance.streamID, expected, events...)
	} else {
		committed, err = c.engine.store.Append(c.ctx, c.instance.streamID, expected, events...)
	}
	switch {
	case errors.Is(err, core.ErrConcurrency), errors.Is(err, core.ErrEventIDReused):
		return c.halt(conflict)
	case err != nil:
		return c.retryLater(err)
	case committed.Duplicate:
		// Journaled by an earlier try whose outcome was lost: replay.
		return c.halt(conflict)
	}
	c.journal.version = committed.ToVersion
	for i, e := range entries {
		c.journal.record(events[i].Metadata.EventID, e)
	}
	return nil
}

// entryKey names a journal entry for its deterministic event id.
func entryKey(e core.EventData) string {
	switch e := e.(type) {
	case stepped:
		return "stepped/" + strconv.Itoa(e.Seq)
	case consumed:
		return "consumed/" + strconv.Itoa(e.Seq)
	case timedOut:
		return "timed-out/" + strconv.Itoa(e.Seq)
	case compensated:
		return "compensated/" + strconv.Itoa(e.Index)
	}
	return e.EventType()
}

// record adds an entry this run appended to the journal's index.
func (j *journal) record(id uuid.UUID, e core.EventData) {
	switch e := e.(type) {
	case stepped:
		j.steps[e.Seq] = e
	case consumed:
		j.consumed[e.Seq], j.taken[e.Entry] = e.Entry, true
	case timedOut:
		j.timedOut[e.Seq] = true
	case compensating:
		j.cause = &e
	case compensated:
		j.undone[e.Index] = e.Seq
	case finished:
		j.finished = &e
	}
	_ = id
}

func mustJSON(v any) json.RawMessage {
	data, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("saga: encoding %T: %v", v, err)) // times and ids always encode
	}
	return data
}

// Request is what Send sent: the event's id (replies carry it as their
// causation id) and where it went.
type Request struct {
	EventID  uuid.UUID `json:"event_id"`
	StreamID string    `json:"stream_id"`
	Version  int64     `json:"version"`
}

// Send appends event to streamID if expected holds, exactly once: in one
// transaction with its journal entry. The event carries the saga's
// correlation id; a reply to it (see Reply) reaches the saga. A refused
// append (a version conflict) is a *StepError, journaled, so replays see it
// too.
func Send(c *Context, streamID string, expected core.ExpectedVersion, event core.EventData) (_ Request, err error) {
	name := streamID + " " + event.EventType()
	n, s, err := c.op(kindSend, name)
	if err != nil {
		return Request{}, err
	}
	if s != nil {
		if s.Error != "" {
			return Request{}, &StepError{Step: name, Message: s.Error}
		}
		var req Request
		err := c.decode(s.Result, &req)
		return req, err
	}
	end := c.startStep(kindSend, name, nil)
	defer func() { end(err) }()
	eventID := derivedID(c.instance.correlationID, "send/"+strconv.Itoa(n))
	scope, err := c.engine.store.Begin(c.ctx)
	if err != nil {
		return Request{}, c.retryLater(err)
	}
	defer func() { _ = scope.Rollback(context.WithoutCancel(c.ctx)) }() // a no-op after Commit
	committed, err := scope.Append(c.ctx, streamID, expected, core.Event{Data: event, Metadata: core.EventMetadata{
		EventID: eventID, CorrelationID: c.instance.correlationID, CausationID: c.journal.startedID}})
	switch {
	case errors.Is(err, core.ErrConcurrency), errors.Is(err, core.ErrInvalidInput), errors.Is(err, core.ErrEncode):
		// The participant's stream refused it: the step's outcome.
		_ = scope.Rollback(c.ctx)
		if err := c.journalStep(nil, stepped{Seq: n, Kind: kindSend, Name: name, Error: err.Error()}); err != nil {
			return Request{}, err
		}
		return Request{}, &StepError{Step: name, Message: err.Error()}
	case err != nil:
		return Request{}, c.retryLater(err)
	}
	req := Request{EventID: eventID, StreamID: streamID, Version: committed.ToVersion}
	if err := c.journalStep(scope, stepped{Seq: n, Kind: kindSend, Name: name, Result: mustJSON(req)}); err != nil {
		return Request{}, err
	}
	if err := scope.Commit(c.ctx); err != nil {
		return Request{}, c.retryLater(err)
	}
	return req, nil
}

// StepInfo is what a Step's function gets.
type StepInfo struct {
	// IdempotencyKey is the same on every attempt of the step: pass it to
	// the system the step calls, so that an attempt repeated after a crash
	// does not do the work twice.
	IdempotencyKey string
	// Attempt counts from 1.
	Attempt int
}

// Step runs fn, a side effect, and journals its result: at least once (a
// crash after fn and before the journal commits runs it again, with the
// same IdempotencyKey), and never again once journaled. An error is retried
// with backoff; after the engine's MaxAttempts it is journaled and returned
// as a *StepError, on this run and every replay.
func Step[T any](c *Context, name string, fn func(ctx context.Context, info StepInfo) (T, error)) (_ T, err error) {
	var zero T
	n, s, err := c.op(kindStep, name)
	if err != nil {
		return zero, err
	}
	if s != nil {
		return journaledResult[T](c, s)
	}
	end := c.startStep(kindStep, name, nil)
	defer func() { end(err) }()
	key := derivedID(c.instance.correlationID, "step/"+strconv.Itoa(n)).String()
	cacheKey := c.instance.streamID + "/" + strconv.Itoa(n)
	encoded, ok := c.engine.stepResults.take(cacheKey)
	if !ok {
		result, err := fn(c.ctx, StepInfo{IdempotencyKey: key, Attempt: c.instance.attempts + 1})
		if err != nil {
			return zero, c.stepFailed(n, kindStep, name, err, nil)
		}
		encoded = mustJSONValue(result)
	}
	if err := c.journalStep(nil, stepped{Seq: n, Kind: kindStep, Name: name, Result: encoded}); err != nil {
		if c.stop == conflict {
			// The replay reaches this step again: keep the result rather
			// than run the side effect once more.
			c.engine.stepResults.put(cacheKey, encoded)
		}
		return zero, err
	}
	var result T
	err = c.decode(encoded, &result)
	return result, err
}

// StepTx runs fn in a transaction that also journals its result: exactly
// once. fn writes through scope (scope.Tx() for its own statements;
// store.Load, store.Save, scope.Append), and never commits. Errors are
// retried as Step's are.
func StepTx[T any](c *Context, name string, fn func(ctx context.Context, scope *store.Scope) (T, error)) (_ T, err error) {
	var zero T
	n, s, err := c.op(kindStepTx, name)
	if err != nil {
		return zero, err
	}
	if s != nil {
		return journaledResult[T](c, s)
	}
	end := c.startStep(kindStepTx, name, nil)
	defer func() { end(err) }()
	scope, err := c.engine.store.Begin(c.ctx)
	if err != nil {
		return zero, c.retryLater(err)
	}
	defer func() { _ = scope.Rollback(context.WithoutCancel(c.ctx)) }() // a no-op after Commit
	result, err := fn(c.ctx, scope)
	if err != nil {
		_ = scope.Rollback(c.ctx)
		return zero, c.stepFailed(n, kindStepTx, name, err, nil)
	}
	if err := c.journalStep(scope, stepped{Seq: n, Kind: kindStepTx, Name: name, Result: mustJSONValue(result)}); err != nil {
		return zero, err
	}
	if err := scope.Commit(c.ctx); err != nil {
		return zero, c.retryLater(err)
	}
	return result, nil
}

// stepFailed retries a failed step later, or, at its last attempt,
// journals the failure as its outcome.
func (c *Context) stepFailed(n int, kind stepKind, name string, cause error, _ *store.Scope) error {
	if c.instance.attempts+1 < c.engine.config.MaxAttempts {
		return c.retryLater(cause)
	}
	if err := c.journalStep(nil, stepped{Seq: n, Kind: kind, Name: name, Error: cause.Error()}); err != nil {
		return err
	}
	return &StepError{Step: name, Message: cause.Error()}
}

func journaledResult[T any](c *Context, s *stepped) (T, error) {
	var result T
	if s.Error != "" {
		return result, &StepError{Step: s.Name, Message: s.Error}
	}
	err := c.decode(s.Result, &result)
	return result, err
}

func mustJSONValue(v any) json.RawMessage {
	data, err := json.Marshal(v)
	if err != nil {
		data, _ = json.Marshal(fmt.Sprintf("unencodable %T: %v", v, err)) //nolint:errchkjson // a string encodes
	}
	return data
}

// Sleep waits d, durably: the deadline is journaled by the database clock,
// the saga holds no goroutine meanwhile, and a restart waits only what is
// left.
func Sleep(c *Context, d time.Duration) error {
	n, s, err := c.op(kindSleep, "sleep")
	if err != nil {
		return err
	}
	if s == nil {
		due := c.dbNow.Add(d)
		if err := c.journalStep(nil, stepped{Seq: n, Kind: kindSleep, Name: "sleep", DueAt: &due}); err != nil {
			return err
		}
		s = &stepped{DueAt: &due}
	}
	if !c.dbNow.Before(*s.DueAt) {
		return nil
	}
	return c.suspend(s.DueAt)
}

// AwaitOption configures Await and AwaitResponse.
type AwaitOption func(*awaitOptions)

type awaitOptions struct {
	within time.Duration
	where  func(event core.EventData, reply ReplyInfo) bool
}

// Within gives an await a deadline, d after it is first reached, by the
// database clock: past it with nothing to take, the await returns
// ErrTimeout, once, and a reply that arrives later is not taken.
func Within(d time.Duration) AwaitOption { return func(o *awaitOptions) { o.within = d } }

// Where keeps only events for which match is true.
func Where(match func(event core.EventData, reply ReplyInfo) bool) AwaitOption {
	return func(o *awaitOptions) { o.where = match }
}

// ReplyInfo describes an event that reached the saga.
type ReplyInfo struct {
	EventID        uuid.UUID
	StreamID       string
	StreamVersion  int64
	GlobalPosition int64
	CausationID    uuid.UUID
	Response       core.ResponseValue
	RecordedAt     time.Time
}

// Await waits for an event of type E (a type, or an interface such as a
// union of replies) that carried the saga's correlation id, and returns it:
// the earliest one the saga has not taken yet, whether it arrived before
// the await or after. Its types must be among the definition's Receives.
func Await[E core.EventData](c *Context, opts ...AwaitOption) (E, error) {
	event, _, err := await[E](c, false, opts)
	return event, err
}

// AwaitResponse waits for the reply to req (an event whose causation id is
// req's event id, as Reply sets it) of type E. A reply whose IntoResponse
// says IsError is returned with a *ResponseError carrying it.
func AwaitResponse[E core.EventData](c *Context, req Request, opts ...AwaitOption) (E, error) {
	opts = append(opts, Where(func(_ core.EventData, r ReplyInfo) bool { return r.CausationID == req.EventID }))
	event, _, err := await[E](c, true, opts)
	return event, err
}

func await[E core.EventData](c *Context, response bool, opts []AwaitOption) (E, ReplyInfo, error) {
	var zero E
	var o awaitOptions
	for _, opt := range opts {
		opt(&o)
	}
	name := reflect.TypeFor[E]().String()
	n, s, err := c.op(kindAwait, name)
	if err != nil {
		return zero, ReplyInfo{}, err
	}
	if s == nil {
		entry := stepped{Seq: n, Kind: kindAwait, Name: name}
		if o.within > 0 {
			due := c.dbNow.Add(o.within)
			entry.DueAt = &due
		}
		if err := c.journalStep(nil, entry); err != nil {
			return zero, ReplyInfo{}, err
		}
		s = &entry
	}
	take := func(e inboxEntry) (E, ReplyInfo, error) {
		event, reply, ok, err := decodeEntry[E](c, e)
		if err != nil || !ok {
			return zero, ReplyInfo{}, errors.Join(err, c.block(fmt.Sprintf("the reply taken by step %d is not a %s", n, name)))
		}
		if response && reply.Response.IsError {
			return event, reply, &ResponseError{Response: reply.Response, Event: event}
		}
		return event, reply, nil
	}
	if id, ok := c.journal.consumed[n]; ok {
		e, found := c.journal.entry(id)
		if !found {
			return zero, ReplyInfo{}, c.block(fmt.Sprintf("step %d took inbox entry %s, which the journal does not hold", n, id))
		}
		return take(e)
	}
	if c.journal.timedOut[n] {
		return zero, ReplyInfo{}, ErrTimeout
	}
	if c.journal.cancel != nil && !c.compensating {
		return zero, ReplyInfo{}, ErrCancelled
	}
	if c.stop != running {
		return zero, ReplyInfo{}, ErrSuspended
	}
	for _, e := range c.journal.inbox {
		if c.journal.taken[e.id] || (s.DueAt != nil && e.RecordedAt.After(*s.DueAt)) {
			continue
		}
		event, reply, ok, err := decodeEntry[E](c, e)
		if err != nil {
			return zero, ReplyInfo{}, err
		}
		if !ok || (o.where != nil && !o.where(event, reply)) {
			continue
		}
		end := c.startStep(kindAwait, name, &e)
		err = c.journalStep(nil, consumed{Seq: n, Entry: e.id})
		end(err)
		if err != nil {
			return zero, ReplyInfo{}, err
		}
		return take(e)
	}
	if s.DueAt != nil && !c.dbNow.Before(*s.DueAt) {
		if err := c.journalStep(nil, timedOut{Seq: n}); err != nil {
			return zero, ReplyInfo{}, err
		}
		return zero, ReplyInfo{}, ErrTimeout
	}
	return zero, ReplyInfo{}, c.suspend(s.DueAt)
}

// decodeEntry decodes an inbox entry through the store's registry; ok is
// false when it is not an E.
func decodeEntry[E core.EventData](c *Context, e inboxEntry) (E, ReplyInfo, bool, error) {
	var zero E
	reply := ReplyInfo{EventID: e.SourceEventID, StreamID: e.SourceStream, StreamVersion: e.SourceVersion,
		GlobalPosition: e.GlobalPosition, CausationID: e.CausationID, RecordedAt: e.RecordedAt,
		Response: core.ResponseValue{EventType: e.Type, Data: e.Data, IsError: e.IsError, Reason: e.Reason}}
	decoded, err := c.engine.store.Registry().Decode(&core.RecordedEvent{StreamID: e.SourceStream, StreamVersion: e.SourceVersion,
		GlobalPosition: e.GlobalPosition, EventType: e.Type, Data: e.Data})
	if errors.Is(err, core.ErrUnknownEventType) {
		return zero, reply, false, nil
	}
	if err != nil {
		return zero, reply, false, c.block(fmt.Sprintf("inbox entry %s: %v", e.id, err))
	}
	event, ok := decoded.(E)
	return event, reply, ok, nil
}
