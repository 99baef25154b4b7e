package core

import "fmt"

// Aggregate is domain state rebuilt by folding its events. Implement it on a
// pointer to your state struct:
//
//	type Account struct{ Balance int64 }
//
//	func (*Account) Category() string { return "account" }
//
//	func (a *Account) Apply(event core.EventData) {
//		switch e := event.(type) {
//		case Deposited:
//			a.Balance += e.Amount
//		}
//	}
//
// Apply must be deterministic and free of side effects: it runs on every
// load. Validation belongs in command code, before an event is recorded,
// never in Apply.
type Aggregate interface {
	// Category is the stream ID prefix of this kind of aggregate; an
	// aggregate with ID "42" lives in stream "<category>-42". It must not
	// contain [CategorySeparator]. It is called on a zero value.
	Category() string

	// Apply folds one event into the state.
	Apply(event EventData)
}

// Root is an aggregate's state with its identity, the stream version it was
// loaded at, and the events recorded since. Stores load and save Roots.
//
// A Root is not safe for concurrent use.
type Root[A Aggregate] struct {
	id      string
	version int64
	state   A
	pending []Event
	loaded  LoadInfo
}

// LoadInfo says how a [Root] was loaded: from which snapshot, if any, and
// how many stored events were replayed on top. It is there to tune
// [Snapshotter.SnapshotFrequency]: a load that replays many events despite
// snapshots points at snapshots too far apart, or ignored ones.
type LoadInfo struct {
	// SnapshotVersion is the stream version of the snapshot the load
	// started from; 0 when it replayed the stream from its start (no
	// snapshot, or one that was ignored).
	SnapshotVersion int64
	// Replayed is how many stored events the load folded into the state.
	Replayed int64
}

// NewRoot returns a Root for a new aggregate (version 0, nothing recorded)
// with the given initial state, usually a pointer to a zero struct.
func NewRoot[A Aggregate](id string, state A) *Root[A] {
	return &Root[A]{id: id, state: state}
}

// ID returns the aggregate ID, the part of the stream ID after the category.
func (r *Root[A]) ID() string { return r.id }

// StreamID returns the ID of the aggregate's stream: "<category>-<id>".
func (r *Root[A]) StreamID() string { return StreamID(r.state.Category(), r.id) }

// Version returns the stream version the state reflects, excluding events
// recorded but not yet saved. 0 means the aggregate has never been saved.
func (r *Root[A]) Version() int64 { return r.version }

// State returns the aggregate's state, including recorded events.
func (r *Root[A]) State() A { return r.state }

// Record applies data to the state and queues it for the next save.
func (r *Root[A]) Record(data EventData) {
	r.RecordEvent(Event{Data: data})
}

// RecordMany records each of data in order.
func (r *Root[A]) RecordMany(data ...EventData) {
	for _, d := range data {
		r.Record(d)
	}
}

// RecordEvent applies event.Data to the state and queues the event, with its
// metadata, for the next save.
func (r *Root[A]) RecordEvent(event Event) {
	r.state.Apply(event.Data)
	r.pending = append(r.pending, event)
}

// Pending returns the events recorded since the last load or save.
func (r *Root[A]) Pending() []Event { return r.pending }

// ExpectedVersion returns the expectation a save must meet: the stream is
// still at the version the state was loaded at.
func (r *Root[A]) ExpectedVersion() ExpectedVersion { return Exact(r.version) }

// LoadInfo says how the root was loaded. Saving does not change it; a new
// root's is zero.
func (r *Root[A]) LoadInfo() LoadInfo { return r.loaded }

// Replay folds an event that was already stored, at stream version version,
// into the state. Stores call it while loading; it refuses a version that
// does not directly follow the previous one, so gaps are never hydrated.
func (r *Root[A]) Replay(version int64, data EventData) error {
	if version != r.version+1 {
		return &CorruptStreamError{StreamID: r.StreamID(), RecordedVersion: r.version,
			Reason: fmt.Sprintf("event version %d follows version %d", version, r.version)}
	}
	r.state.Apply(data)
	r.version = version
	r.loaded.Replayed++
	return nil
}

// Restore sets the state and version from a snapshot. Stores call it before
// replaying the events after the snapshot.
func (r *Root[A]) Restore(version int64, state A) {
	r.state, r.version = state, version
	r.loaded = LoadInfo{SnapshotVersion: version}
}

// MarkSaved records that the pending events were stored and the stream is
// now at version. Stores call it after a successful save.
func (r *Root[A]) MarkSaved(version int64) {
	r.version = version
	r.pending = nil
}

// AggregateOf is satisfied by *S when *S implements [Aggregate]. Generic
// loaders use it to create fresh state, so callers name only the state type:
// store.Load[Account](ctx, es, "42").
type AggregateOf[S any] interface {
	*S
	Aggregate
}

// Snapshotter is an [Aggregate] whose state can be snapshotted, so that a
// load starts from the latest snapshot and replays only later events. The
// state is serialized as JSON: give it exported fields or JSON methods.
type Snapshotter interface {
	Aggregate

	// SnapshotSchemaVersion is the version of the state's serialized shape.
	// Bump it whenever that shape changes: a stored snapshot of another
	// version is ignored and the aggregate is rebuilt from its events.
	SnapshotSchemaVersion() int

	// SnapshotFrequency is how many events apart snapshots are taken: a
	// save that crosses a multiple of it writes one. It is called on a zero
	// value; values below 1 mean every save.
	SnapshotFrequency() int
}

// SnapshotterOf is [AggregateOf] for [Snapshotter]s.
type SnapshotterOf[S any] interface {
	*S
	Snapshotter
}
