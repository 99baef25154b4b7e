package core_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/mire-go/mire/core"
)

type ticketSold struct {
	Seat  string `json:"seat"`
	Price int64  `json:"price"`
}

func (ticketSold) EventType() string { return "venue.ticket-sold" }

type ticketRefunded struct {
	Seat string `json:"seat"`
}

func (ticketRefunded) EventType() string { return "venue.ticket-refunded" }

// doorsOpened implements EventData on its pointer.
type doorsOpened struct {
	At string `json:"at"`
}

func (*doorsOpened) EventType() string { return "venue.doors-opened" }

// soldLookalike claims ticketSold's event type with another Go type.
type soldLookalike struct{}

func (soldLookalike) EventType() string { return "venue.ticket-sold" }

type namedEvent string

func (e namedEvent) EventType() string { return string(e) }

type unencodable struct {
	F float64 `json:"f"`
}

func (unencodable) EventType() string { return "venue.unencodable" }

func TestRegistryAdd(t *testing.T) {
	t.Parallel()
	r := core.NewRegistry()
	if got := r.EventTypes(); len(got) != 0 {
		t.Errorf("new registry has types %v", got)
	}
	if err := r.Add(ticketSold{}, ticketRefunded{}, &doorsOpened{}); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(ticketSold{}); err != nil {
		t.Errorf("registering the same type again: %v", err)
	}
	want := []string{"venue.doors-opened", "venue.ticket-refunded", "venue.ticket-sold"}
	if got := r.EventTypes(); !slices.Equal(got, want) {
		t.Errorf("EventTypes = %v, want %v", got, want)
	}
	for _, eventType := range want {
		if !r.Known(eventType) {
			t.Errorf("Known(%q) = false", eventType)
		}
	}
	if r.Known("venue.closed") {
		t.Error(`Known("venue.closed") = true`)
	}

	invalid := checkInvalidInput(t, r.Add(soldLookalike{}), "event type")
	if invalid.Value != "venue.ticket-sold" {
		t.Errorf("Value = %q", invalid.Value)
	}
	checkInvalidInput(t, r.Add(nil), "event type")
	checkInvalidInput(t, r.Add(namedEvent("")), "event type")
	checkInvalidInput(t, r.Add(namedEvent("bad\x00type")), "event type")
	// Add stops at a conflicting example without registering it.
	if err := r.Add(namedEvent("venue.ok"), soldLookalike{}); err == nil {
		t.Error("Add with a conflicting example succeeded")
	}
	ev, err := r.Decode(&core.RecordedEvent{EventType: "venue.ticket-sold", Data: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ev.(ticketSold); !ok {
		t.Errorf("after a conflicting Add, ticket-sold decodes to %T", ev)
	}
}

func TestRegisterPanicsOnConflict(t *testing.T) {
	t.Parallel()
	r := core.NewRegistry()
	core.Register[ticketSold](r)
	core.Register[ticketSold](r) // harmless
	defer func() {
		err, ok := recover().(error)
		if !ok || !errors.Is(err, core.ErrInvalidInput) {
			t.Errorf("recovered %v, want an invalid input error", err)
		}
	}()
	core.Register[soldLookalike](r)
	t.Error("Register of a conflicting type did not panic")
}

func TestRegistryEncodeDecode(t *testing.T) {
	t.Parallel()
	r := core.NewRegistry()
	core.Register[ticketSold](r)
	core.Register[*doorsOpened](r)

	tests := []struct {
		data core.EventData
	}{
		{ticketSold{Seat: "A1", Price: 4200}},
		{ticketSold{Seat: "☃ \"\\ \u2028", Price: math.MinInt64}},
		{&doorsOpened{At: "19:30"}},
	}
	for _, tt := range tests {
		encoded, err := r.Encode(tt.data)
		if err != nil {
			t.Fatalf("Encode(%#v): %v", tt.data, err)
		}
		if !json.Valid(encoded) {
			t.Errorf("Encode(%#v) = %s, not JSON", tt.data, encoded)
		}
		decoded, err := r.Decode(&core.RecordedEvent{EventType: tt.data.EventType(), Data: encoded})
		if err != nil {
			t.Fatalf("Decode(%s): %v", encoded, err)
		}
		if !reflect.DeepEqual(decoded, tt.data) {
			t.Errorf("round trip of %#v = %#v", tt.data, decoded)
		}
	}

	// Unknown fields are ignored; missing ones are zero.
	decoded, err := r.Decode(&core.RecordedEvent{EventType: "venue.ticket-sold", Data: json.RawMessage(`{"seat":"B2","extra":true}`)})
	if err != nil || decoded != (ticketSold{Seat: "B2"}) {
		t.Errorf("Decode with extra field = %#v, %v", decoded, err)
	}
}

func TestRegistryEncodeErrors(t *testing.T) {
	t.Parallel()
	r := core.NewRegistry()
	_, err := r.Encode(nil)
	var encErr *core.EncodeError
	if !errors.As(err, &encErr) || !errors.Is(err, core.ErrEncode) {
		t.Errorf("Encode(nil) = %v (%T), want *EncodeError", err, err)
	}
	_, err = r.Encode(unencodable{F: math.NaN()})
	if !errors.As(err, &encErr) || !errors.Is(err, core.ErrEncode) || encErr.EventType != "venue.unencodable" {
		t.Fatalf("Encode(NaN) = %v (%T), want *EncodeError naming the type", err, err)
	}
	var unsupported *json.UnsupportedValueError
	if !errors.As(err, &unsupported) {
		t.Errorf("cause = %T, want *json.UnsupportedValueError", encErr.Err)
	}
}

func TestRegistryDecodeErrors(t *testing.T) {
	t.Parallel()
	r := core.NewRegistry()
	core.Register[ticketSold](r)
	tests := []struct {
		name    string
		event   core.RecordedEvent
		unknown bool
	}{
		{"unknown type", core.RecordedEvent{EventType: "venue.closed", Data: json.RawMessage(`{}`)}, true},
		{"wrong field type", core.RecordedEvent{EventType: "venue.ticket-sold", Data: json.RawMessage(`{"price":"free"}`)}, false},
		{"not JSON", core.RecordedEvent{EventType: "venue.ticket-sold", Data: json.RawMessage(`{`)}, false},
		{"empty data", core.RecordedEvent{EventType: "venue.ticket-sold"}, false},
		{"array", core.RecordedEvent{EventType: "venue.ticket-sold", Data: json.RawMessage(`[1]`)}, false},
	}
	for _, tt := range tests {
		event := tt.event
		event.StreamID, event.StreamVersion, event.GlobalPosition = "venue-1", 4, 99
		_, err := r.Decode(&event)
		var decodeErr *core.DecodeError
		if !errors.As(err, &decodeErr) || !errors.Is(err, core.ErrDecode) {
			t.Errorf("%s: err = %v (%T), want *DecodeError", tt.name, err, err)
			continue
		}
		if errors.Is(err, core.ErrUnknownEventType) != tt.unknown {
			t.Errorf("%s: errors.Is(ErrUnknownEventType) = %v, want %v", tt.name, !tt.unknown, tt.unknown)
		}
		want := core.DecodeError{StreamID: "venue-1", StreamVersion: 4, GlobalPosition: 99, EventType: event.EventType, Err: decodeErr.Err}
		if *decodeErr != want || decodeErr.Err == nil {
			t.Errorf("%s: DecodeError = %+v, want %+v", tt.name, *decodeErr, want)
		}
	}
}

// The registry is safe for concurrent registration, decoding and upcasting.
func TestRegistryConcurrentUse(t *testing.T) {
	t.Parallel()
	r := core.NewRegistry()
	core.Register[ticketSold](r)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				name := fmt.Sprintf("venue.e%d-%d", i, j)
				if err := r.Add(namedEvent(name)); err != nil {
					t.Error(err)
				}
				if err := r.RenameEventType(name+"-old", name); err != nil {
					t.Error(err)
				}
				if _, err := r.Decode(&core.RecordedEvent{EventType: "venue.ticket-sold", Data: json.RawMessage(`{}`)}); err != nil {
					t.Error(err)
				}
				_ = r.Known(name)
				_ = r.EventTypes()
				_ = r.StoredTypes(name)
			}
		}()
	}
	wg.Wait()
	if n := len(r.EventTypes()); n != 8*50+1 {
		t.Errorf("%d types registered, want %d", n, 8*50+1)
	}
}
