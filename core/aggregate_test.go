package core_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/google/uuid"

	"github.com/mire-go/mire/core"
)

type venue struct {
	Sold    map[string]int64
	Applied []string
}

func (*venue) Category() string { return "venue" }

func (v *venue) Apply(event core.EventData) {
	if v.Sold == nil {
		v.Sold = map[string]int64{}
	}
	v.Applied = append(v.Applied, event.EventType())
	switch e := event.(type) {
	case ticketSold:
		v.Sold[e.Seat] = e.Price
	case ticketRefunded:
		delete(v.Sold, e.Seat)
	}
}

func TestRootRecordAndSave(t *testing.T) {
	t.Parallel()
	root := core.NewRoot("42", &venue{})
	if root.ID() != "42" || root.StreamID() != "venue-42" || root.Version() != 0 || len(root.Pending()) != 0 {
		t.Fatalf("new root: id %q stream %q version %d pending %d", root.ID(), root.StreamID(), root.Version(), len(root.Pending()))
	}
	if root.ExpectedVersion() != core.NoStream {
		t.Errorf("new root expects %s, want no_stream", root.ExpectedVersion())
	}

	id := uuid.New()
	root.Record(ticketSold{Seat: "A1", Price: 10})
	root.RecordMany(ticketSold{Seat: "A2", Price: 20}, ticketRefunded{Seat: "A1"})
	root.RecordEvent(core.Event{Data: ticketSold{Seat: "A3", Price: 30}, Metadata: core.EventMetadata{EventID: id}})

	if want := map[string]int64{"A2": 20, "A3": 30}; !reflect.DeepEqual(root.State().Sold, want) {
		t.Errorf("state = %v, want %v (recorded events apply at once)", root.State().Sold, want)
	}
	pending := root.Pending()
	if len(pending) != 4 || pending[3].Metadata.EventID != id || pending[0].Data != (ticketSold{Seat: "A1", Price: 10}) {
		t.Errorf("pending = %+v", pending)
	}
	if root.Version() != 0 || root.ExpectedVersion() != core.NoStream {
		t.Errorf("recording moved the version to %d / %s", root.Version(), root.ExpectedVersion())
	}

	root.MarkSaved(4)
	if root.Version() != 4 || len(root.Pending()) != 0 || root.ExpectedVersion() != core.Exact(4) {
		t.Errorf("after save: version %d, %d pending, expects %s", root.Version(), len(root.Pending()), root.ExpectedVersion())
	}
	root.Record(ticketRefunded{Seat: "A2"})
	if root.ExpectedVersion() != core.Exact(4) || len(root.Pending()) != 1 {
		t.Errorf("after another record: expects %s with %d pending", root.ExpectedVersion(), len(root.Pending()))
	}
}

func TestRootReplay(t *testing.T) {
	t.Parallel()
	root := core.NewRoot("1", &venue{})
	for v, e := range []core.EventData{ticketSold{Seat: "B1", Price: 5}, ticketSold{Seat: "B2", Price: 6}} {
		if err := root.Replay(int64(v+1), e); err != nil {
			t.Fatal(err)
		}
	}
	if root.Version() != 2 || len(root.Pending()) != 0 || len(root.State().Applied) != 2 {
		t.Fatalf("after replay: version %d, %d pending, applied %v", root.Version(), len(root.Pending()), root.State().Applied)
	}

	for _, version := range []int64{1, 2, 4, 0, -1} {
		err := root.Replay(version, ticketRefunded{Seat: "B1"})
		var corrupt *core.CorruptStreamError
		if !errors.As(err, &corrupt) || !errors.Is(err, core.ErrCorruptStream) {
			t.Fatalf("Replay(%d) at version 2: err = %v (%T), want *CorruptStreamError", version, err, err)
		}
		if corrupt.StreamID != "venue-1" || corrupt.RecordedVersion != 2 || corrupt.Reason == "" {
			t.Errorf("Replay(%d): %+v", version, corrupt)
		}
	}
	if root.Version() != 2 || len(root.State().Applied) != 2 {
		t.Errorf("refused replays changed the root: version %d, applied %v", root.Version(), root.State().Applied)
	}
	if err := root.Replay(3, ticketRefunded{Seat: "B1"}); err != nil {
		t.Errorf("Replay(3): %v", err)
	}

	fresh := core.NewRoot("2", &venue{})
	if err := fresh.Replay(2, ticketSold{}); !errors.Is(err, core.ErrCorruptStream) {
		t.Errorf("a first replayed event at version 2: err = %v, want ErrCorruptStream", err)
	}
}

func TestRootRestore(t *testing.T) {
	t.Parallel()
	root := core.NewRoot("1", &venue{})
	root.Restore(10, &venue{Sold: map[string]int64{"C1": 1}})
	if root.Version() != 10 || root.State().Sold["C1"] != 1 || root.ExpectedVersion() != core.Exact(10) {
		t.Errorf("after restore: version %d, state %+v", root.Version(), root.State())
	}
	if err := root.Replay(11, ticketSold{Seat: "C2", Price: 2}); err != nil {
		t.Errorf("replay after restore: %v", err)
	}
	if err := root.Replay(13, ticketSold{}); !errors.Is(err, core.ErrCorruptStream) {
		t.Errorf("gap after restore: err = %v", err)
	}
}

func TestRootLoadInfo(t *testing.T) {
	t.Parallel()
	root := core.NewRoot("1", &venue{})
	if got := root.LoadInfo(); got != (core.LoadInfo{}) {
		t.Errorf("new root: LoadInfo() = %+v, want zero", got)
	}
	for v := int64(1); v <= 3; v++ {
		if err := root.Replay(v, ticketSold{Seat: "A", Price: v}); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := root.LoadInfo(), (core.LoadInfo{Replayed: 3}); got != want {
		t.Errorf("after 3 replays: LoadInfo() = %+v, want %+v", got, want)
	}

	root = core.NewRoot("1", &venue{})
	root.Restore(10, &venue{})
	if err := root.Replay(11, ticketSold{Seat: "B", Price: 1}); err != nil {
		t.Fatal(err)
	}
	root.Record(ticketRefunded{Seat: "B"})
	root.MarkSaved(12)
	if got, want := root.LoadInfo(), (core.LoadInfo{SnapshotVersion: 10, Replayed: 1}); got != want {
		t.Errorf("restored at 10, one replay, one save: LoadInfo() = %+v, want %+v", got, want)
	}
}

func TestEventHelpers(t *testing.T) {
	t.Parallel()
	if got := core.EventTypeOf[ticketSold](); got != "venue.ticket-sold" {
		t.Errorf("EventTypeOf = %q", got)
	}
	e := core.NewEvent(ticketRefunded{Seat: "X"})
	if e.Data != (ticketRefunded{Seat: "X"}) || !reflect.DeepEqual(e.Metadata, core.EventMetadata{}) {
		t.Errorf("NewEvent = %+v", e)
	}
	events := core.Events(ticketSold{}, ticketRefunded{})
	if len(events) != 2 || events[1].Data != (ticketRefunded{}) || events[0].Metadata.EventID != uuid.Nil {
		t.Errorf("Events = %+v", events)
	}
	if len(core.Events()) != 0 {
		t.Error("Events() is not empty")
	}
}
