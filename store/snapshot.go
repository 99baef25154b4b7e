package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mire-go/mire/core"
)

// LoadSnapshotted is [Load] for aggregates that take snapshots: it starts
// from the stream's latest snapshot and replays only the events after it. A
// snapshot of another schema version, one that does not decode, or one
// ahead of the stream is ignored (and logged), and the aggregate is rebuilt
// from its events: a snapshot is only ever a shortcut. The root's
// [core.Root.LoadInfo] says which snapshot the load started from, if any,
// and how many events it replayed.
func LoadSnapshotted[S any, A core.SnapshotterOf[S]](ctx context.Context, session Session, id string) (*core.Root[A], error) {
	s, exec, err := session.session()
	if err != nil {
		return nil, err
	}
	root := core.NewRoot[A](id, A(new(S)))
	if err := validateAggregate(root); err != nil {
		return nil, err
	}
	if s.instr == nil {
		return loadSnapshotted[S, A](ctx, s, exec, root)
	}
	ctx, op := s.start(ctx, core.Operation{Kind: core.OpLoad, StreamID: root.StreamID()})
	root, err = loadSnapshotted[S, A](ctx, s, exec, root)
	outcome := core.Outcome{Err: err}
	if root != nil {
		outcome.Events = int(root.LoadInfo().Replayed)
	}
	op.done(outcome)
	return root, err
}

// loadSnapshotted restores root from its snapshot, if it has a usable
// one, and replays the events after it.
func loadSnapshotted[S any, A core.SnapshotterOf[S]](ctx context.Context, s *EventStore, exec executor, root *core.Root[A]) (*core.Root[A], error) {
	after, err := restoreSnapshot[S, A](ctx, s, exec, root)
	if err != nil {
		return nil, err
	}
	if err := s.replay(ctx, exec, root, after); err != nil {
		var corrupt *core.CorruptStreamError
		if after > 0 && errors.As(err, &corrupt) {
			// The snapshot is ahead of or inconsistent with the stream;
			// rebuild from the events, which alone decide.
			s.logger.WarnContext(ctx, "store: ignoring snapshot that disagrees with its stream",
				"stream_id", root.StreamID(), "snapshot_version", after, "error", err)
			root = core.NewRoot[A](root.ID(), A(new(S)))
			err = s.replay(ctx, exec, root, 0)
		}
		if err != nil {
			return nil, err
		}
	}
	return root, nil
}

// restoreSnapshot restores root from its stream's snapshot when there is a
// usable one, and returns the version it restored (0 for none).
func restoreSnapshot[S any, A core.SnapshotterOf[S]](ctx context.Context, s *EventStore, exec executor, root *core.Root[A]) (int64, error) {
	snapshot, found, err := s.loadSnapshot(ctx, exec, root.StreamID())
	if err != nil {
		return 0, s.interpretError(fmt.Sprintf("load snapshot of %q", root.StreamID()), err)
	}
	if !found {
		return 0, nil
	}
	want := root.State().SnapshotSchemaVersion()
	if snapshot.schemaVersion != want {
		s.logger.InfoContext(ctx, "store: ignoring snapshot of another schema version",
			"stream_id", root.StreamID(), "snapshot_schema_version", snapshot.schemaVersion, "schema_version", want)
		return 0, nil
	}
	state := A(new(S))
	if err := json.Unmarshal(snapshot.state, state); err != nil {
		s.logger.WarnContext(ctx, "store: ignoring snapshot that does not decode",
			"stream_id", root.StreamID(), "snapshot_version", snapshot.version, "error", err)
		return 0, nil
	}
	root.Restore(snapshot.version, state)
	return snapshot.version, nil
}

// SaveSnapshotting is [Save] that also writes a snapshot when the save
// crosses a multiple of the aggregate's SnapshotFrequency. Through a
// [Scope] the snapshot is written in the scope's transaction, and a failure
// to write it is returned, since it aborts the transaction. On the store it
// is written just after the events commit; a failure there is logged and
// does not fail the save: the events are what count.
func SaveSnapshotting[A core.Snapshotter](ctx context.Context, session Session, root *core.Root[A]) (*core.CommittedEvents, error) {
	s, exec, err := session.session()
	if err != nil {
		return nil, err
	}
	from := root.Version()
	committed, err := Save(ctx, session, root)
	if err != nil || committed == nil {
		return committed, err
	}
	every := int64(max(root.State().SnapshotFrequency(), 1))
	if from/every == committed.ToVersion/every {
		return committed, nil
	}
	if err := s.saveSnapshot(ctx, exec, root.StreamID(), committed.ToVersion, root.State()); err != nil {
		if _, inScope := session.(*Scope); inScope {
			return committed, err
		}
		s.logger.WarnContext(ctx, "store: snapshot not saved", "stream_id", root.StreamID(), "version", committed.ToVersion, "error", err)
	}
	return committed, nil
}

// SaveSnapshot writes a snapshot of root's saved state now, whatever the
// frequency. root must have no unsaved events.
func SaveSnapshot[A core.Snapshotter](ctx context.Context, session Session, root *core.Root[A]) error {
	s, exec, err := session.session()
	if err != nil {
		return err
	}
	if len(root.Pending()) > 0 {
		return &core.InvalidInputError{Field: "aggregate root", Reason: "has unsaved events; save it first"}
	}
	if root.Version() == 0 {
		return &core.InvalidInputError{Field: "aggregate root", Reason: "has never been saved"}
	}
	return s.saveSnapshot(ctx, exec, root.StreamID(), root.Version(), root.State())
}

func (s *EventStore) saveSnapshot(ctx context.Context, exec executor, streamID string, version int64, state core.Snapshotter) error {
	encoded, err := json.Marshal(state)
	if err != nil {
		return &core.EncodeError{EventType: "snapshot of " + streamID, Err: err}
	}
	err = s.storeSnapshot(ctx, exec, streamID, storedSnapshot{
		version: version, schemaVersion: state.SnapshotSchemaVersion(), state: encoded})
	return s.interpretError(fmt.Sprintf("save snapshot of %q", streamID), err)
}

// LoadSnapshottedOrNew is [LoadSnapshotted], except that an aggregate
// without events is returned new (version 0, zero state) instead of as an
// error, like [LoadOrNew].
func LoadSnapshottedOrNew[S any, A core.SnapshotterOf[S]](ctx context.Context, session Session, id string) (*core.Root[A], error) {
	root, err := LoadSnapshotted[S, A](ctx, session, id)
	if errors.Is(err, core.ErrStreamNotFound) {
		return core.NewRoot[A](id, A(new(S))), nil
	}
	return root, err
}
