package store

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/mire-go/mire/core"
)

// Load rebuilds the aggregate with ID id by replaying its stream, through
// session: the store, or a [Scope] to load inside its transaction. It
// returns an error matching [core.ErrStreamNotFound] if the stream has no
// events, a [*core.CorruptStreamError] if the stored events disagree with
// the stream's recorded version (gaps, or fewer or more events than
// recorded), and a [*core.DecodeError] for an event the registry cannot
// decode.
//
//	root, err := store.Load[Account](ctx, es, "42")
func Load[S any, A core.AggregateOf[S]](ctx context.Context, session Session, id string) (*core.Root[A], error) {
	s, exec, err := session.session()
	if err != nil {
		return nil, err
	}
	root := core.NewRoot[A](id, A(new(S)))
	if err := validateAggregate(root); err != nil {
		return nil, err
	}
	var op operation
	if s.instr != nil {
		ctx, op = s.start(ctx, core.Operation{Kind: core.OpLoad, StreamID: root.StreamID()})
	}
	err = s.replay(ctx, exec, root, 0)
	op.done(core.Outcome{Err: err, Events: int(root.LoadInfo().Replayed)})
	if err != nil {
		return nil, err
	}
	return root, nil
}

// LoadOrNew is [Load], except that an aggregate without events is returned
// new (version 0, zero state) instead of as an error.
func LoadOrNew[S any, A core.AggregateOf[S]](ctx context.Context, session Session, id string) (*core.Root[A], error) {
	root, err := Load[S, A](ctx, session, id)
	if errors.Is(err, core.ErrStreamNotFound) {
		return core.NewRoot[A](id, A(new(S))), nil
	}
	return root, err
}

// LoadForUpdate is [Load] inside a scope that first locks the aggregate's
// stream, so that other writers of it wait until the scope ends (or fail
// with [core.DBLockNotAvailable] once the scope's lock timeout passes, see
// [Scope.SetLockTimeout]). A stream without events returns
// [core.ErrStreamNotFound]. Appends that open a stream (NoStream) take no
// lock: they cannot race an existing stream, whose first version is taken.
func LoadForUpdate[S any, A core.AggregateOf[S]](ctx context.Context, scope *Scope, id string) (*core.Root[A], error) {
	s, tx, err := scope.session()
	if err != nil {
		return nil, err
	}
	root := core.NewRoot[A](id, A(new(S)))
	if err := validateAggregate(root); err != nil {
		return nil, err
	}
	var op operation
	if s.instr != nil {
		ctx, op = s.start(ctx, core.Operation{Kind: core.OpLoad, StreamID: root.StreamID()})
	}
	err = s.lockAndReplay(ctx, tx, root)
	op.done(core.Outcome{Err: err, Events: int(root.LoadInfo().Replayed)})
	if err != nil {
		return nil, err
	}
	return root, nil
}

// lockAndReplay locks root's stream in tx and replays it into root.
func (s *EventStore) lockAndReplay(ctx context.Context, tx executor, root replayer) error {
	version, err := s.lockStream(ctx, tx, root.StreamID())
	if err != nil {
		return s.interpretError(fmt.Sprintf("lock %q", root.StreamID()), err)
	}
	if version == 0 {
		return fmt.Errorf("%w: %q", core.ErrStreamNotFound, root.StreamID())
	}
	return s.replay(ctx, tx, root, 0)
}

func validateAggregate[A core.Aggregate](root *core.Root[A]) error {
	if err := core.ValidateCategory(root.State().Category()); err != nil {
		return err
	}
	if root.ID() == "" {
		return &core.InvalidInputError{Field: "aggregate id", Reason: "must not be empty"}
	}
	return core.ValidateStreamID(root.StreamID())
}

// replay folds root's stream events after version after into root, in
// order. It reads a page at a time, bounded by the stream's version when the
// first page is read, and refuses a stream whose events are not numbered
// 1, 2, 3, ... up to that version.
func (s *EventStore) replay(ctx context.Context, exec executor, root replayer, after int64) error {
	streamID := root.StreamID()
	const unknown = -1
	head := int64(unknown)
	next := after + 1
	for {
		// A page asks for the versions it can hold and no more: versions
		// are gapless, and a bounded range keeps the statement to one page
		// of rows whatever plan PostgreSQL picks. With statistics that
		// predate the stream it sorted every later version of the stream
		// for each page (a load quadratic in the stream's length).
		toVersion := next + int64(s.pageSize()) - 1
		if toVersion < next { // overflow
			toVersion = math.MaxInt64
		}
		if head != unknown {
			toVersion = min(toVersion, head)
		}
		pageHead, page, err := s.loadPage(ctx, exec, streamID, next, toVersion, s.pageSize())
		if err != nil {
			return s.interpretError(fmt.Sprintf("load %q", streamID), err)
		}
		if head == unknown {
			if len(page) > 0 {
				head = pageHead
			} else {
				// No events after `after`: the stream may not exist, may end
				// there, or may have been appended to since the page was
				// read. Once its version is known a bounded re-read tells
				// them apart.
				if head, err = s.emptyHead(ctx, exec, streamID, after); err != nil || head == after {
					return err
				}
				continue
			}
		}
		for _, event := range page {
			if event.version != next || event.version > head {
				return &core.CorruptStreamError{StreamID: streamID, RecordedVersion: head,
					Reason: fmt.Sprintf("expected version %d, found version %d", next, event.version)}
			}
			data, err := s.registry.Decode(&core.RecordedEvent{StreamID: streamID, StreamVersion: event.version,
				EventType: event.eventType, Data: event.data})
			if err != nil {
				return err
			}
			if err := root.Replay(event.version, data); err != nil {
				return err
			}
			next++
		}
		if next > head {
			return nil
		}
		if len(page) < int(s.pageSize()) {
			return &core.CorruptStreamError{StreamID: streamID, RecordedVersion: head,
				Reason: fmt.Sprintf("events end at version %d", next-1)}
		}
	}
}

// replayer is what replay needs of a *core.Root, whatever its type
// parameter.
type replayer interface {
	StreamID() string
	Replay(version int64, data core.EventData) error
}

// emptyHead returns a stream's version, after a read found
// no events after version after: ErrStreamNotFound for a stream without
// events, and a CorruptStreamError when the stream is behind after (a
// snapshot ahead of its stream).
func (s *EventStore) emptyHead(ctx context.Context, exec executor, streamID string, after int64) (int64, error) {
	version, err := s.streamVersion(ctx, exec, streamID)
	switch {
	case err != nil:
		return 0, s.interpretError(fmt.Sprintf("load %q", streamID), err)
	case version == 0 && after == 0:
		return 0, fmt.Errorf("%w: %q", core.ErrStreamNotFound, streamID)
	case version < after:
		return 0, &core.CorruptStreamError{StreamID: streamID, RecordedVersion: version,
			Reason: fmt.Sprintf("loading after version %d, beyond the stream's end", after)}
	}
	return version, nil
}

// Save appends the events recorded on root since it was loaded, expecting
// the stream to still be at the loaded version, and marks them saved. A
// concurrent save of the same aggregate makes it fail with a
// [*core.VersionConflictError]: reload and retry the command. With nothing
// recorded, Save writes nothing and returns nil.
//
// Through a [Scope], root is marked saved when the append succeeds; if the
// scope then rolls back, discard root and reload.
func Save[A core.Aggregate](ctx context.Context, session Session, root *core.Root[A]) (*core.CommittedEvents, error) {
	s, exec, err := session.session()
	if err != nil {
		return nil, err
	}
	if root == nil {
		return nil, &core.InvalidInputError{Field: "aggregate root", Reason: "is nil"}
	}
	if len(root.Pending()) == 0 {
		return nil, nil
	}
	if err := validateAggregate(root); err != nil {
		return nil, err
	}
	var op operation
	if s.instr != nil {
		ctx, op = s.start(ctx, core.Operation{Kind: core.OpSave, StreamID: root.StreamID(), Events: len(root.Pending())})
	}
	committed, err := s.append(ctx, exec, root.StreamID(), root.ExpectedVersion(), root.Pending())
	if op.end != nil {
		outcome := core.Outcome{Err: err}
		if committed != nil {
			outcome.Events, outcome.Duplicate = len(committed.Events), committed.Duplicate
		}
		op.done(outcome)
	}
	if err != nil {
		return nil, err
	}
	root.MarkSaved(committed.ToVersion)
	return committed, nil
}
