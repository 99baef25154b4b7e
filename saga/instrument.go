package saga

import (
	"errors"

	"github.com/mire-go/mire/core"
)

// startStep reports a step the run carries out (not one replayed from the
// journal) to the engine's instrumentation: until the returned function is
// called with the step's error, c.ctx is the context Start returned, so
// that what the step appends carries its trace context. reply is the inbox
// entry an await takes, nil for other steps. Without instrumentation it
// does nothing.
func (c *Context) startStep(kind stepKind, name string, reply *inboxEntry) (end func(error)) {
	instr := c.engine.config.Instrumentation
	if instr == nil {
		return noStepEnd
	}
	op := core.Operation{Kind: core.OpSagaStep, Saga: c.instance.name, SagaID: c.instance.id,
		StreamID: c.instance.streamID, Step: name, StepKind: string(kind)}
	if reply != nil {
		op.Event = &core.RecordedEvent{StreamID: reply.SourceStream, StreamVersion: reply.SourceVersion,
			GlobalPosition: reply.GlobalPosition, EventType: reply.Type, Data: reply.Data, RecordedAt: reply.RecordedAt,
			Metadata: core.EventMetadata{EventID: reply.SourceEventID, CorrelationID: c.instance.correlationID,
				CausationID: reply.CausationID, Headers: reply.headers}}
	}
	outer := c.ctx
	ctx, done := instr.Start(outer, op)
	c.ctx = ctx
	return func(err error) {
		c.ctx = outer
		done(core.Outcome{Err: c.stepError(err)})
	}
}

func noStepEnd(error) {}

// stepError is what a step that returned err failed with: ErrSuspended
// stands for the reason the run stops, which is a failure only when the
// step is to be retried or the saga is blocked.
func (c *Context) stepError(err error) error {
	if !errors.Is(err, ErrSuspended) {
		return err
	}
	switch c.stop {
	case retry:
		return c.retryCause
	case blocked:
		return errors.New(c.blocked)
	}
	return nil
}
