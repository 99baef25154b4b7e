package core_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/mire-go/mire/core"
)

// addCurrency is a shape upcaster: it adds "currency" when missing.
func addCurrency(data json.RawMessage) (string, json.RawMessage, error) {
	var fields map[string]any
	if err := json.Unmarshal(data, &fields); err != nil {
		return "", nil, err
	}
	if _, ok := fields["currency"]; !ok {
		fields["currency"] = "EUR"
	}
	out, err := json.Marshal(fields)
	return "venue.ticket-sold", out, err
}

type pricedTicket struct {
	Seat     string `json:"seat"`
	Price    int64  `json:"price"`
	Currency string `json:"currency"`
}

func (pricedTicket) EventType() string { return "venue.ticket-sold" }

func TestUpcastRename(t *testing.T) {
	t.Parallel()
	r := core.NewRegistry()
	core.Register[ticketSold](r)
	if err := r.RenameEventType("venue.ticket-bought", "venue.ticket-sold"); err != nil {
		t.Fatal(err)
	}
	if !r.Known("venue.ticket-bought") {
		t.Error("a renamed type is not Known")
	}
	stored := &core.RecordedEvent{StreamID: "venue-1", StreamVersion: 2, GlobalPosition: 5,
		EventType: "venue.ticket-bought", Data: json.RawMessage(`{"seat":"C3","price":10}`)}
	original := *stored
	upcast, err := r.Upcast(stored)
	if err != nil {
		t.Fatal(err)
	}
	want := original
	want.EventType = "venue.ticket-sold"
	if upcast.EventType != want.EventType || upcast.StreamID != want.StreamID || upcast.StreamVersion != 2 ||
		upcast.GlobalPosition != 5 || !bytes.Equal(upcast.Data, original.Data) {
		t.Errorf("Upcast = %+v, want %+v", upcast, want)
	}
	if stored.EventType != original.EventType || !bytes.Equal(stored.Data, original.Data) {
		t.Errorf("Upcast modified its argument: %+v", stored)
	}
	decoded, err := r.Decode(stored)
	if err != nil || decoded != (ticketSold{Seat: "C3", Price: 10}) {
		t.Errorf("Decode = %#v, %v", decoded, err)
	}

	// No upcaster: the event itself comes back.
	current := &core.RecordedEvent{EventType: "venue.ticket-sold", Data: json.RawMessage(`{}`)}
	if same, err := r.Upcast(current); err != nil || same != current {
		t.Errorf("Upcast without an upcaster = %p, %v; want the argument", same, err)
	}
}

// Upcasters chain: a rename, then a shape change of the new type; filters
// on the newest type find every older name.
func TestUpcastChain(t *testing.T) {
	t.Parallel()
	r := core.NewRegistry()
	core.Register[pricedTicket](r)
	steps := []error{
		r.RenameEventType("venue.seat-booked", "venue.ticket-bought"),
		r.RenameEventType("venue.ticket-bought", "venue.ticket-sold"),
		r.AddUpcaster("venue.ticket-sold", "venue.ticket-sold", addCurrency),
	}
	for _, err := range steps {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, stored := range []string{"venue.seat-booked", "venue.ticket-bought", "venue.ticket-sold"} {
		decoded, err := r.Decode(&core.RecordedEvent{EventType: stored, Data: json.RawMessage(`{"seat":"D4","price":7}`)})
		if err != nil || decoded != (pricedTicket{Seat: "D4", Price: 7, Currency: "EUR"}) {
			t.Errorf("Decode of %s = %#v, %v", stored, decoded, err)
		}
	}
	decoded, err := r.Decode(&core.RecordedEvent{EventType: "venue.ticket-sold", Data: json.RawMessage(`{"seat":"D4","price":7,"currency":"USD"}`)})
	if err != nil || decoded != (pricedTicket{Seat: "D4", Price: 7, Currency: "USD"}) {
		t.Errorf("Decode of a current event = %#v, %v", decoded, err)
	}

	got := r.StoredTypes("venue.ticket-sold")
	slices.Sort(got)
	if want := []string{"venue.seat-booked", "venue.ticket-bought", "venue.ticket-sold"}; !slices.Equal(got, want) {
		t.Errorf("StoredTypes = %v, want %v", got, want)
	}
	if got := r.StoredTypes("venue.ticket-bought"); !slices.Equal(got, []string{"venue.ticket-bought", "venue.seat-booked"}) {
		t.Errorf("StoredTypes of the middle name = %v", got)
	}
	if got := r.StoredTypes("venue.other"); !slices.Equal(got, []string{"venue.other"}) {
		t.Errorf("StoredTypes of a type without history = %v", got)
	}
}

// Two old types renamed into one are both found by a filter on it.
func TestUpcastMerge(t *testing.T) {
	t.Parallel()
	r := core.NewRegistry()
	for _, old := range []string{"venue.a", "venue.b"} {
		if err := r.RenameEventType(old, "venue.c"); err != nil {
			t.Fatal(err)
		}
	}
	got := r.StoredTypes("venue.c")
	if !slices.Equal(got, []string{"venue.c", "venue.a", "venue.b"}) {
		t.Errorf("StoredTypes = %v", got)
	}
}

func TestUpcastFailures(t *testing.T) {
	t.Parallel()
	errBroken := errors.New("broken")
	tests := []struct {
		name  string
		setup func(*core.Registry) error
		is    error
	}{
		{"upcaster error", func(r *core.Registry) error {
			return r.AddUpcaster("venue.old", "venue.new", func(json.RawMessage) (string, json.RawMessage, error) {
				return "", nil, errBroken
			})
		}, errBroken},
		{"empty type returned", func(r *core.Registry) error {
			return r.AddUpcaster("venue.old", "venue.new", func(d json.RawMessage) (string, json.RawMessage, error) { return "", d, nil })
		}, nil},
		{"cycle", func(r *core.Registry) error {
			return errors.Join(r.RenameEventType("venue.old", "venue.new"), r.RenameEventType("venue.new", "venue.old"))
		}, nil},
		{"error later in the chain", func(r *core.Registry) error {
			return errors.Join(r.RenameEventType("venue.old", "venue.new"),
				r.AddUpcaster("venue.new", "venue.new", func(json.RawMessage) (string, json.RawMessage, error) { return "", nil, errBroken }))
		}, errBroken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := core.NewRegistry()
			if err := tt.setup(r); err != nil {
				t.Fatal(err)
			}
			stored := &core.RecordedEvent{StreamID: "venue-1", StreamVersion: 3, GlobalPosition: 8,
				EventType: "venue.old", Data: json.RawMessage(`{}`)}
			for what, call := range map[string]func() error{
				"Upcast": func() error { _, err := r.Upcast(stored); return err },
				"Decode": func() error { _, err := r.Decode(stored); return err },
			} {
				err := call()
				var decodeErr *core.DecodeError
				if !errors.As(err, &decodeErr) || !errors.Is(err, core.ErrDecode) {
					t.Fatalf("%s: err = %v (%T), want *DecodeError", what, err, err)
				}
				want := core.DecodeError{StreamID: "venue-1", StreamVersion: 3, GlobalPosition: 8, EventType: "venue.old", Err: decodeErr.Err}
				if *decodeErr != want {
					t.Errorf("%s: DecodeError = %+v, want it to name the stored event %+v", what, *decodeErr, want)
				}
				if tt.is != nil && !errors.Is(err, tt.is) {
					t.Errorf("%s: err = %v, want it to wrap %v", what, err, tt.is)
				}
			}
		})
	}
}

// A legitimately long chain is fine; only cycles are refused.
func TestUpcastLongChain(t *testing.T) {
	t.Parallel()
	r := core.NewRegistry()
	const links = 20
	for i := range links {
		if err := r.RenameEventType(fmt.Sprintf("venue.v%d", i), fmt.Sprintf("venue.v%d", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	upcast, err := r.Upcast(&core.RecordedEvent{EventType: "venue.v0", Data: json.RawMessage(`{}`)})
	if err != nil || upcast.EventType != fmt.Sprintf("venue.v%d", links) {
		t.Errorf("Upcast = %+v, %v", upcast, err)
	}
	if n := len(r.StoredTypes(fmt.Sprintf("venue.v%d", links))); n != links+1 {
		t.Errorf("StoredTypes has %d types, want %d", n, links+1)
	}
}

func TestAddUpcasterRejects(t *testing.T) {
	t.Parallel()
	r := core.NewRegistry()
	noop := func(d json.RawMessage) (string, json.RawMessage, error) { return "venue.new", d, nil }
	if err := r.AddUpcaster("venue.old", "venue.new", noop); err != nil {
		t.Fatal(err)
	}
	checkInvalidInput(t, r.AddUpcaster("venue.old", "venue.other", noop), "upcaster")
	checkInvalidInput(t, r.RenameEventType("venue.old", "venue.other"), "upcaster")
	checkInvalidInput(t, r.AddUpcaster("venue.x", "venue.new", nil), "upcaster")
	checkInvalidInput(t, r.AddUpcaster("", "venue.new", noop), "event type")
	checkInvalidInput(t, r.AddUpcaster("venue.x", "", noop), "event type")
	checkInvalidInput(t, r.RenameEventType("venue.\xff", "venue.new"), "event type")
	// The refused registrations changed nothing.
	if got := r.StoredTypes("venue.other"); !slices.Equal(got, []string{"venue.other"}) {
		t.Errorf("StoredTypes(venue.other) = %v after refused registrations", got)
	}
	upcast, err := r.Upcast(&core.RecordedEvent{EventType: "venue.old", Data: json.RawMessage(`{}`)})
	if err != nil || upcast.EventType != "venue.new" {
		t.Errorf("Upcast = %+v, %v; want the first upcaster", upcast, err)
	}
}

// A same-type upcaster changes an event's shape and keeps its type: run
// twice, it would apply the change twice. Decoding what Upcast (or the
// store's Read) returned must not run it again.
func TestUpcastRunsOnceBeforeDecode(t *testing.T) {
	t.Parallel()
	r := core.NewRegistry()
	core.Register[pricedTicket](r)
	runs := 0
	// Prices were stored in euros and are now in cents: applied twice, a
	// price of 10 would become 100000.
	err := r.AddUpcaster("venue.ticket-sold", "venue.ticket-sold", func(data json.RawMessage) (string, json.RawMessage, error) {
		runs++
		var ticket pricedTicket
		if err := json.Unmarshal(data, &ticket); err != nil {
			return "", nil, err
		}
		ticket.Price *= 100
		out, err := json.Marshal(ticket)
		return "venue.ticket-sold", out, err
	})
	if err != nil {
		t.Fatal(err)
	}
	stored := &core.RecordedEvent{StreamID: "venue-1", StreamVersion: 1,
		EventType: "venue.ticket-sold", Data: json.RawMessage(`{"seat":"A1","price":10,"currency":"EUR"}`)}

	upcast, err := r.Upcast(stored)
	if err != nil {
		t.Fatal(err)
	}
	if !upcast.Upcasted || stored.Upcasted {
		t.Fatalf("Upcasted: result %v, argument %v; want true, false", upcast.Upcasted, stored.Upcasted)
	}
	again, err := r.Upcast(upcast)
	if err != nil {
		t.Fatal(err)
	}
	decoded, err := r.Decode(again)
	if err != nil {
		t.Fatal(err)
	}
	if ticket, ok := decoded.(pricedTicket); !ok || ticket.Price != 1000 || runs != 1 {
		t.Errorf("decoded %+v after %d upcaster runs; want a price of 1000 after 1", decoded, runs)
	}

	// An event never upcast is upcast by Decode, once.
	runs = 0
	decoded, err = r.Decode(stored)
	if err != nil {
		t.Fatal(err)
	}
	if ticket, ok := decoded.(pricedTicket); !ok || ticket.Price != 1000 || runs != 1 {
		t.Errorf("Decode of a stored event: %+v after %d runs; want a price of 1000 after 1", decoded, runs)
	}
}
