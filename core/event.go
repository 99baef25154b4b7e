package core

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// EventData is the serializable shape of a domain event. EventType returns a
// stable discriminator stored in the event_type column; it is wire format, so
// renaming it orphans the events already stored under the old name (register
// an upcaster instead).
//
// Implement EventType on the value receiver so that [EventTypeOf] can ask a
// zero value for it.
type EventData interface {
	EventType() string
}

// EventTypeOf returns the event type of E without needing an instance, for
// APIs that name an event by its Go type.
func EventTypeOf[E EventData]() string {
	var zero E
	return zero.EventType()
}

// EventMetadata is what travels with an event besides its data.
type EventMetadata struct {
	// EventID identifies the event. Appending again with the same EventIDs
	// after an unknown outcome (a connection lost around commit) returns the
	// original result instead of storing the events twice. When zero, the
	// store assigns a time-ordered UUIDv7.
	EventID uuid.UUID

	// CorrelationID groups the events of one workflow or request. Zero means
	// none.
	CorrelationID uuid.UUID

	// CausationID is the EventID of the event (or the ID of the command) that
	// caused this one. Zero means none.
	CausationID uuid.UUID

	// Headers are free-form user metadata.
	Headers map[string]string
}

// Event is the write-side envelope: domain data plus metadata.
type Event struct {
	Data     EventData
	Metadata EventMetadata
}

// NewEvent wraps data in an Event with empty metadata.
func NewEvent(data EventData) Event {
	return Event{Data: data}
}

// Events wraps each of data in an Event with empty metadata.
func Events(data ...EventData) []Event {
	events := make([]Event, len(data))
	for i, d := range data {
		events[i] = Event{Data: d}
	}
	return events
}

// RecordedEvent is an event as stored.
type RecordedEvent struct {
	// GlobalPosition orders the event in the whole log. Positions are gapless
	// and assigned shortly after commit by the store's sequencer; it is 0 for
	// an event read from its stream before it was sequenced.
	GlobalPosition int64

	// StreamID is the stream the event belongs to.
	StreamID string

	// StreamVersion orders the event within its stream, starting at 1.
	StreamVersion int64

	// EventType is the stored discriminator, as returned by EventType.
	EventType string

	// Data is the event data as stored (JSON).
	Data json.RawMessage

	// Metadata carries the event ID, correlation and causation IDs and
	// headers.
	Metadata EventMetadata

	// RecordedAt is when the event was appended, by the database clock, in
	// UTC.
	RecordedAt time.Time

	// Upcasted reports that EventType and Data are already current: the
	// registry's upcasters have run on them (the store's reads do that), so
	// [Registry.Decode] and [Registry.Upcast] must not run them again. A
	// same-type upcaster (a change of shape) applied twice would corrupt the
	// data.
	Upcasted bool
}

// CommittedEvents is the result of an append or save.
type CommittedEvents struct {
	// StreamID is the stream appended to.
	StreamID string

	// FromVersion is the stream version of the first appended event.
	FromVersion int64

	// ToVersion is the stream version of the last appended event, the
	// stream's version after the append.
	ToVersion int64

	// Events are the appended events. Their GlobalPosition is 0, since
	// positions are assigned after commit, unless Duplicate is set.
	Events []RecordedEvent

	// Duplicate is true when the events were found already stored, with the
	// same content, by an append with the same event IDs: nothing was stored
	// twice, and Events are the events as stored (data in PostgreSQL's JSON
	// formatting, positions if already assigned). Treat it as success: the
	// events are in the stream exactly once. Usually the caller retried
	// after an unknown outcome, but a first call can see it too, when the
	// store itself retried: a group commit whose acknowledgement was lost
	// with its connection is run again alone, and finds its events
	// committed.
	Duplicate bool
}
