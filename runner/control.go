package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/store"
)

// Control operates subscriptions through the database, from any process:
// status, pause and resume, reset and rebuild, parked streams, and waiting
// for a subscription to catch up. A running Runner's leaders see the
// changes at once (they are notified) or at their next renewal.
type Control struct {
	store *store.EventStore
	db    *db
	// progress is notified when a worker of this process moves a
	// checkpoint, so that WaitFor wakes at once for local subscriptions.
	progress *signal
}

// NewControl returns a Control for the subscriptions in es's schema.
func NewControl(es *store.EventStore) *Control {
	return &Control{store: es, db: newDB(es), progress: newSignal()}
}

// ErrSubscriptionFailed is returned by WaitFor when the partition that
// must handle the events stopped on a failure before reaching them.
var ErrSubscriptionFailed = errors.New("runner: subscription failed")

// ErrStreamParked is returned by WaitFor when the events' stream is parked
// in the subscription at or before them: they are not handled until it is
// retried.
var ErrStreamParked = errors.New("runner: stream parked")

// ErrUnknownSubscription is returned for a subscription that has no rows
// (it never started).
var ErrUnknownSubscription = errors.New("runner: unknown subscription")

// Status returns every partition of subscription, or of every subscription
// for "", with the log's head and each partition's lag.
func (c *Control) Status(ctx context.Context, subscription string) ([]LeaseStatus, error) {
	head, err := c.store.Head(ctx)
	if err != nil {
		return nil, err
	}
	statuses, err := c.db.status(ctx, subscription)
	if err != nil {
		return nil, err
	}
	for i := range statuses {
		statuses[i].Head = head
		statuses[i].Lag = max(head-statuses[i].Checkpoint, 0)
	}
	return statuses, nil
}

// Pause stops dispatching subscription's partitions (every one, or only
// partition when given) until Resume; leaders keep their leases.
func (c *Control) Pause(ctx context.Context, subscription string, partition ...int) error {
	return c.setState(ctx, subscription, StatePaused, partition)
}

// Resume dispatches paused or failed partitions again. A failed partition
// tries its failed event again, with a fresh count of attempts.
func (c *Control) Resume(ctx context.Context, subscription string, partition ...int) error {
	return c.setState(ctx, subscription, StateRunning, partition)
}

func (c *Control) setState(ctx context.Context, subscription string, state State, partition []int) error {
	p, err := onePartition(partition)
	if err != nil {
		return err
	}
	changed, err := c.db.setState(ctx, subscription, p, string(state))
	if err != nil {
		return err
	}
	if len(changed) == 0 {
		return fmt.Errorf("%w: %q", ErrUnknownSubscription, subscription)
	}
	return nil
}

// ResetOpts configures Control.Reset.
type ResetOpts struct {
	// Partition resets one partition instead of all.
	Partition *int
	// Hook runs in the reset's transaction, while no batch of the
	// subscription can commit: a read model rebuilt from 0 truncates its
	// tables here, so that it never holds rows from before the reset
	// together with rows from after it.
	Hook func(ctx context.Context, scope *store.Scope) error
}

// Reset moves subscription's checkpoint to position (0 rebuilds it from
// the start of the log): its leaders are fenced, their batches in flight
// roll back, and the subscription goes on from position+1 with the next
// leader. A failed partition runs again; a paused one stays paused; parked
// streams are released (the replay reaches their events again).
func (c *Control) Reset(ctx context.Context, subscription string, position int64, opts *ResetOpts) error {
	if position < 0 {
		return &core.InvalidInputError{Field: "position", Reason: fmt.Sprintf("%d is negative", position)}
	}
	if opts == nil {
		opts = &ResetOpts{}
	}
	return c.store.InScope(ctx, func(scope *store.Scope) error {
		locked, err := c.db.lock(ctx, scope.Tx(), subscription)
		if err != nil {
			return err
		}
		if len(locked) == 0 {
			return fmt.Errorf("%w: %q", ErrUnknownSubscription, subscription)
		}
		if opts.Hook != nil {
			if err := opts.Hook(ctx, scope); err != nil {
				return err
			}
		}
		_, err = c.db.reset(ctx, scope.Tx(), subscription, opts.Partition, position)
		return err
	})
}

// Drop deletes subscription's checkpoints, leases and parked streams (the
// record of skipped events stays), for example to change its number of
// partitions. Stop its runners first: a runner still leading it fails its
// next checkpoint. It needs the schema owner's rights (the runtime role
// cannot delete subscriptions) and reports whether there was anything to
// drop.
func (c *Control) Drop(ctx context.Context, subscription string) (bool, error) {
	return c.db.drop(ctx, subscription)
}

// ParkedStreams lists subscription's parked streams.
func (c *Control) ParkedStreams(ctx context.Context, subscription string) ([]ParkedStream, error) {
	return c.db.parkedStreams(ctx, subscription, nil)
}

// RetryParked asks the leader of streamID's partition to handle the
// stream's held events again, from the one that failed. It reports
// whether the stream was parked.
func (c *Control) RetryParked(ctx context.Context, subscription, streamID string) (bool, error) {
	return c.db.requestRetry(ctx, subscription, streamID, nil)
}

// SkipParked asks the leader of streamID's partition to skip the event the
// stream is parked at, recording reason (see SkippedEvents), and to handle
// its later held events. It reports whether the stream was parked.
func (c *Control) SkipParked(ctx context.Context, subscription, streamID, reason string) (bool, error) {
	if reason == "" {
		return false, &core.InvalidInputError{Field: "reason", Reason: "a skip needs a reason"}
	}
	return c.db.requestRetry(ctx, subscription, streamID, &reason)
}

// SkippedEvents lists the events skipped in subscription, with the
// reasons given.
func (c *Control) SkippedEvents(ctx context.Context, subscription string) ([]SkippedEvent, error) {
	return c.db.skippedEvents(ctx, subscription)
}

// WaitFor returns once subscription has handled the events of committed
// (what an append or a save returned), or when ctx ends. Their positions
// are assigned after commit: WaitFor finds them, sequencing if no
// sequencer has yet. It returns ErrSubscriptionFailed if the partition
// that handles them stopped before them, ErrStreamParked if their stream
// is parked, and at once for nil or empty committed.
func (c *Control) WaitFor(ctx context.Context, subscription string, committed *core.CommittedEvents) error {
	if committed == nil || committed.ToVersion == 0 {
		return nil
	}
	position, err := c.positionOf(ctx, committed)
	if err != nil {
		return err
	}
	partitions, err := c.db.storedPartitions(ctx, subscription)
	switch {
	case err != nil:
		return err
	case partitions == 0:
		return fmt.Errorf("%w: %q", ErrUnknownSubscription, subscription)
	}
	key := partitionKey{name: subscription, partition: core.StreamPartition(committed.StreamID, partitions)}
	delay := time.Millisecond
	for {
		woken := c.progress.wait()
		p, ok, err := c.db.progressOf(ctx, key, committed.StreamID)
		switch {
		case err != nil:
			return err
		case !ok:
			return fmt.Errorf("%w: %q", ErrUnknownSubscription, subscription)
		case p.parkedVersion > 0 && p.parkedVersion <= committed.ToVersion:
			return fmt.Errorf("%w: %q in %q at version %d", ErrStreamParked, committed.StreamID, subscription, p.parkedVersion)
		case p.checkpoint >= position:
			return nil
		case p.failed && p.errorPosition <= position:
			return fmt.Errorf("%w: %q stopped at position %d: %s", ErrSubscriptionFailed, subscription, p.errorPosition, p.lastError)
		}
		// Woken at once by a local leader's progress; another process's
		// is polled, more slowly the longer it takes.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-woken:
		case <-time.After(delay):
			delay = min(delay*2, 100*time.Millisecond)
		}
	}
}

// positionOf returns the global position of committed's last event.
func (c *Control) positionOf(ctx context.Context, committed *core.CommittedEvents) (int64, error) {
	if n := len(committed.Events); n > 0 && committed.Events[n-1].GlobalPosition > 0 {
		return committed.Events[n-1].GlobalPosition, nil
	}
	delay := time.Millisecond
	for {
		q := core.StreamQuery{StreamID: committed.StreamID, FromVersion: committed.ToVersion, Limit: 1}
		events, err := c.store.ReadEvents(ctx, q)
		if err != nil {
			return 0, err
		}
		if len(events) > 0 && events[0].GlobalPosition > 0 {
			return events[0].GlobalPosition, nil
		}
		// Not sequenced yet: sequence (a no-op when a sequencer just did).
		// On a read replica the events may not even be there yet; wait
		// for the primary's sequencer and for replication.
		if len(events) > 0 {
			if _, err := c.store.Sequence(ctx); err != nil && !errors.Is(err, core.ErrDatabase) {
				return 0, err
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(delay):
			delay = min(delay*2, 50*time.Millisecond)
		}
	}
}

func onePartition(partition []int) (*int, error) {
	switch len(partition) {
	case 0:
		return nil, nil
	case 1:
		return &partition[0], nil
	}
	return nil, &core.InvalidInputError{Field: "partition", Reason: "give at most one partition"}
}
