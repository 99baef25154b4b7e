package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"

	"time"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/core/lifecycle"
)

// UpdateOpts tunes [Update]. A nil *UpdateOpts means the defaults.
type UpdateOpts struct {
	// MaxAttempts is how many times the command runs, the first included,
	// before Update returns the last conflict. Defaults to
	// UpdateMaxAttemptsDefault (10).
	MaxAttempts int

	// Backoff is the wait before the second attempt; each later wait
	// doubles, up to MaxBackoff. Every wait is jittered (between half and
	// all of it) so that writers who collided do not collide again in step.
	// Defaults to UpdateBackoffDefault (2ms).
	Backoff time.Duration

	// MaxBackoff caps the wait between attempts. Defaults to
	// UpdateMaxBackoffDefault (500ms).
	MaxBackoff time.Duration
}

func (o *UpdateOpts) withDefaults() (UpdateOpts, error) {
	var c UpdateOpts
	if o != nil {
		c = *o
	}
	c.MaxAttempts = cmp.Or(c.MaxAttempts, UpdateMaxAttemptsDefault)
	c.Backoff = cmp.Or(c.Backoff, UpdateBackoffDefault)
	c.MaxBackoff = cmp.Or(c.MaxBackoff, UpdateMaxBackoffDefault)
	invalid := func(field string, value any) error {
		return &core.InvalidInputError{Field: "UpdateOpts." + field, Value: fmt.Sprint(value), Reason: "must not be negative"}
	}
	switch {
	case c.MaxAttempts < 0:
		return c, invalid("MaxAttempts", c.MaxAttempts)
	case c.Backoff < 0:
		return c, invalid("Backoff", c.Backoff)
	case c.MaxBackoff < 0:
		return c, invalid("MaxBackoff", c.MaxBackoff)
	}
	return c, nil
}

// Update runs a command against the aggregate with ID id and saves what it
// records, retrying when another writer saved the aggregate first: it loads
// the aggregate (new if it has no events, as [LoadOrNew]), calls fn, and
// saves with optimistic concurrency. On a [core.ErrConcurrency] conflict it
// waits (jittered exponential backoff) and runs all of it again, on freshly
// loaded state, up to opts.MaxAttempts times; then it returns the last
// conflict, wrapped. fn must therefore decide from the root it is given
// alone, and may run more than once.
//
// An error from fn is returned as it is and nothing is saved. If fn records
// nothing, nothing is saved and Update returns nil, nil. Any other error
// ends Update at once, as does ctx.
//
//	_, err := store.Update(ctx, es, "42", func(acct *core.Root[*Account]) error {
//		if acct.State().Balance < 30 {
//			return ErrInsufficientFunds
//		}
//		acct.Record(Withdrawn{Amount: 30})
//		return nil
//	}, nil)
//
// Through a [Scope] each attempt runs in the scope's transaction; under its
// default READ COMMITTED isolation a retry sees the winner's events. In a
// scope, [LoadForUpdate] avoids conflicts instead of retrying them.
func Update[S any, A core.AggregateOf[S]](ctx context.Context, session Session, id string, fn func(root *core.Root[A]) error, opts *UpdateOpts) (*core.CommittedEvents, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if fn == nil {
		return nil, &core.InvalidInputError{Field: "update function", Reason: "is nil"}
	}
	backoff := lifecycle.Backoff{Min: min(o.Backoff, o.MaxBackoff), Max: o.MaxBackoff}
	for attempt := 1; ; attempt++ {
		root, err := LoadOrNew[S, A](ctx, session, id)
		if err != nil {
			return nil, err
		}
		if err := fn(root); err != nil {
			return nil, err
		}
		committed, err := Save(ctx, session, root)
		if !errors.Is(err, core.ErrConcurrency) {
			return committed, err
		}
		if attempt >= o.MaxAttempts {
			return nil, fmt.Errorf("store: update of %q gave up after %d attempts: %w", root.StreamID(), attempt, err)
		}
		if err := sleep(ctx, backoff.Failure()); err != nil {
			return nil, err
		}
	}
}

// sleep waits for d, or returns ctx's error if ctx ends first.
func sleep(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
