package saga

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/mire-go/mire/core"
)

// A saga's journal is its own stream, "saga.<name>-<id>", of these events.
// They are mire's wire format: their types and fields never change
// meaning.

// started opens the journal: the definition, its version and the input.
type started struct {
	Definition string          `json:"definition"`
	Version    int             `json:"version"`
	Input      json.RawMessage `json:"input"`
}

func (started) EventType() string { return "saga.started" }

// stepKind is what a journaled step did.
type stepKind string

const (
	kindSend   stepKind = "send"
	kindStep   stepKind = "step"
	kindStepTx stepKind = "step-tx"
	kindAwait  stepKind = "await"
	kindSleep  stepKind = "sleep"
	kindNow    stepKind = "now"
	kindUUID   stepKind = "uuid"
)

// stepped records the outcome of the saga's seq-th operation.
type stepped struct {
	Seq    int             `json:"seq"`
	Kind   stepKind        `json:"kind"`
	Name   string          `json:"name"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
	// DueAt is a sleep's or a timed await's deadline, by the database
	// clock.
	DueAt *time.Time `json:"due_at,omitempty"`
}

func (stepped) EventType() string { return "saga.stepped" }

// received is an inbox entry: an event that carried the saga's
// correlation id, routed into the journal by the saga-inbox subscription.
type received struct {
	SourceEventID  uuid.UUID       `json:"source_event_id"`
	SourceStream   string          `json:"source_stream"`
	SourceVersion  int64           `json:"source_version"`
	GlobalPosition int64           `json:"global_position"`
	CausationID    uuid.UUID       `json:"causation_id"`
	Type           string          `json:"event_type"`
	Data           json.RawMessage `json:"data"`
	IsError        bool            `json:"is_error"`
	Reason         string          `json:"reason,omitempty"`
	RecordedAt     time.Time       `json:"recorded_at"`
}

func (received) EventType() string { return "saga.received" }

// consumed: await Seq took the inbox entry Entry (its event id in the
// journal).
type consumed struct {
	Seq   int       `json:"seq"`
	Entry uuid.UUID `json:"entry"`
}

func (consumed) EventType() string { return "saga.consumed" }

// timedOut: await Seq passed its deadline with nothing to take.
type timedOut struct {
	Seq int `json:"seq"`
}

func (timedOut) EventType() string { return "saga.timed-out" }

// compensating: the saga failed with Cause and runs its compensations.
type compensating struct {
	Cause string `json:"cause"`
}

func (compensating) EventType() string { return "saga.compensating" }

// compensated: compensation Index (in registration order) ran, and the
// saga's operations were numbered up to Seq when it returned: a replay
// that skips it goes on numbering from there.
type compensated struct {
	Index int    `json:"index"`
	Name  string `json:"name"`
	Seq   int    `json:"seq"`
}

func (compensated) EventType() string { return "saga.compensated" }

// cancelRequested: an operator or caller cancelled the saga.
type cancelRequested struct {
	Reason string `json:"reason"`
}

func (cancelRequested) EventType() string { return "saga.cancel-requested" }

// finished closes the journal with the saga's outcome.
type finished struct {
	Status Status          `json:"status"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

func (finished) EventType() string { return "saga.finished" }

// journal is a saga's journal as read, indexed for replay.
type journal struct {
	version   int64 // the stream's version: the fence of the next append
	started   started
	startedID uuid.UUID
	steps     map[int]stepped
	inbox     []inboxEntry // in journal order
	consumed  map[int]uuid.UUID
	taken     map[uuid.UUID]bool // inbox entries consumed
	timedOut  map[int]bool
	cancel    *cancelRequested
	cause     *compensating
	undone    map[int]int // compensations that ran: the operation count after each
	finished  *finished
}

type inboxEntry struct {
	id uuid.UUID // the journal event's id
	// headers are the journal event's: the reply's trace headers, if it
	// had any.
	headers map[string]string
	received
}

// readJournal indexes a journal's events.
func readJournal(events []*core.RecordedEvent) (*journal, error) {
	j := &journal{steps: map[int]stepped{}, consumed: map[int]uuid.UUID{}, taken: map[uuid.UUID]bool{},
		timedOut: map[int]bool{}, undone: map[int]int{}}
	for _, e := range events {
		j.version = e.StreamVersion
		var err error
		switch e.EventType {
		case started{}.EventType():
			err = json.Unmarshal(e.Data, &j.started)
			j.startedID = e.Metadata.EventID
		case stepped{}.EventType():
			var s stepped
			if err = json.Unmarshal(e.Data, &s); err == nil {
				j.steps[s.Seq] = s
			}
		case received{}.EventType():
			var r received
			if err = json.Unmarshal(e.Data, &r); err == nil {
				j.inbox = append(j.inbox, inboxEntry{id: e.Metadata.EventID, headers: e.Metadata.Headers, received: r})
			}
		case consumed{}.EventType():
			var c consumed
			if err = json.Unmarshal(e.Data, &c); err == nil {
				j.consumed[c.Seq], j.taken[c.Entry] = c.Entry, true
			}
		case timedOut{}.EventType():
			var t timedOut
			if err = json.Unmarshal(e.Data, &t); err == nil {
				j.timedOut[t.Seq] = true
			}
		case cancelRequested{}.EventType():
			var c cancelRequested
			if err = json.Unmarshal(e.Data, &c); err == nil && j.cancel == nil {
				j.cancel = &c
			}
		case compensating{}.EventType():
			var c compensating
			if err = json.Unmarshal(e.Data, &c); err == nil {
				j.cause = &c
			}
		case compensated{}.EventType():
			var c compensated
			if err = json.Unmarshal(e.Data, &c); err == nil {
				j.undone[c.Index] = c.Seq
			}
		case finished{}.EventType():
			var f finished
			if err = json.Unmarshal(e.Data, &f); err == nil {
				j.finished = &f
			}
		default:
			err = fmt.Errorf("unknown journal entry type %q", e.EventType)
		}
		if err != nil {
			return nil, fmt.Errorf("saga: journal %s at version %d: %w", e.StreamID, e.StreamVersion, err)
		}
	}
	if j.startedID == uuid.Nil {
		return nil, fmt.Errorf("saga: the journal has no %s entry", started{}.EventType())
	}
	return j, nil
}

// inbox returns the entry with journal event id id.
func (j *journal) entry(id uuid.UUID) (inboxEntry, bool) {
	for _, e := range j.inbox {
		if e.id == id {
			return e, true
		}
	}
	return inboxEntry{}, false
}

// namespace derives mire's deterministic saga ids (UUIDv5).
var namespace = uuid.MustParse("5d4f2b8e-6a1c-4f0e-9a7b-2c3d4e5f6a7b")

// CorrelationID returns the correlation id of saga id of definition name:
// on everything the saga sends, and on the replies that reach it.
func CorrelationID(name, id string) uuid.UUID {
	return uuid.NewSHA1(namespace, []byte("correlation/"+name+"/"+id))
}

// derivedID is a deterministic id for what a saga writes: the same on
// every replay and retry, so a repeated write is a duplicate, not a second
// write.
func derivedID(base uuid.UUID, what string) uuid.UUID {
	return uuid.NewSHA1(base, []byte(what))
}

// JournalStream returns the stream holding the journal of saga id of
// definition name.
func JournalStream(name, id string) string { return core.StreamID("saga."+name, id) }
