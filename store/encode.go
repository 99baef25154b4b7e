package store

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/mire-go/mire/core"
)

// appendRequest is an append, validated and encoded: what the statements
// store and what the caller gets back.
type appendRequest struct {
	streamID string
	category *string // nil for a stream ID without a category
	expected core.ExpectedVersion
	events   []encodedEvent
	// recorded are the events to report, without versions until stored.
	recorded []core.RecordedEvent
	// newIDs: the store generated every event id, so none can be stored
	// already (the append is no retry).
	newIDs bool
	// For the instrumentation, small so that they fit beside newIDs: group
	// is the number of appends in the group commit that stored the append
	// (0 when it ran alone, at most maxGroupSize), bytes the events'
	// encoded size, data plus headers (over a gigabyte PostgreSQL refuses
	// a statement anyway).
	group int16
	bytes int32
}

// encodedEvent is one event of an append as the statements take it.
type encodedEvent struct {
	id            uuid.UUID
	eventType     string
	data, headers []byte
	correlationID uuid.UUID // uuid.Nil for none
	causationID   uuid.UUID
}

// committed is what the caller gets for a request stored from version from
// on, at recordedAt.
func (r *appendRequest) committed(from int64, recordedAt time.Time) *core.CommittedEvents {
	for i := range r.recorded {
		r.recorded[i].StreamVersion = from + int64(i)
		r.recorded[i].RecordedAt = recordedAt
	}
	to := from + int64(len(r.recorded)) - 1
	return &core.CommittedEvents{StreamID: r.streamID, FromVersion: from, ToVersion: to, Events: r.recorded}
}

// encodeAppend validates and encodes an append. Nothing invalid reaches the
// database: the store rejects, with a typed error, what PostgreSQL would
// refuse or store otherwise than sent. trace, when not empty, holds the
// trace headers to add to each event's (see withTraceHeaders).
func (s *EventStore) encodeAppend(streamID string, expected core.ExpectedVersion, events []core.Event, trace map[string]string) (*appendRequest, error) {
	if err := core.ValidateStreamID(streamID); err != nil {
		return nil, err
	}
	if len(events) == 0 {
		return nil, &core.InvalidInputError{Field: "events", Reason: "an append needs at least one event"}
	}
	if err := expected.Validate(len(events)); err != nil {
		return nil, err
	}
	req := &appendRequest{
		streamID: streamID,
		category: categoryOf(streamID),
		expected: expected,
		events:   make([]encodedEvent, len(events)),
		recorded: make([]core.RecordedEvent, len(events)),
		newIDs:   true,
	}
	seen := make(map[uuid.UUID]struct{}, len(events))
	batchBytes := 0
	for i, event := range events {
		if event.Data == nil {
			return nil, &core.InvalidInputError{Field: "event data", Reason: fmt.Sprintf("event %d has no data", i)}
		}
		eventType := event.Data.EventType()
		if err := core.ValidateEventType(eventType); err != nil {
			return nil, err
		}
		data, err := s.registry.Encode(event.Data)
		if err != nil {
			return nil, err
		}
		metadata := event.Metadata
		if len(trace) > 0 {
			metadata.Headers = withTraceHeaders(metadata.Headers, trace)
		}
		headers, err := encodeHeaders(eventType, metadata.Headers)
		if err != nil {
			return nil, err
		}
		size := len(data) + len(headers)
		if size > s.config.MaxEventBytes {
			return nil, &core.InvalidInputError{Field: "event data", Value: eventType,
				Reason: fmt.Sprintf("encodes to %d bytes, over the limit of %d", size, s.config.MaxEventBytes)}
		}
		if batchBytes += size; batchBytes > s.config.MaxBatchBytes {
			// Stop here: encoding the rest could take as much memory again.
			return nil, &core.InvalidInputError{Field: "events", Reason: fmt.Sprintf(
				"the first %d of %d events encode to %d bytes, over the batch limit of %d (Config.MaxBatchBytes)",
				i+1, len(events), batchBytes, s.config.MaxBatchBytes)}
		}
		if err := checkJSONB(event.Data, eventType, data, headers); err != nil {
			return nil, err
		}

		if metadata.EventID == uuid.Nil {
			if metadata.EventID, err = uuid.NewV7(); err != nil {
				return nil, fmt.Errorf("mire: generating event id: %w", err)
			}
		} else {
			req.newIDs = false
		}
		if _, dup := seen[metadata.EventID]; dup {
			return nil, &core.InvalidInputError{Field: "event id", Value: metadata.EventID.String(),
				Reason: "appears twice in one append"}
		}
		seen[metadata.EventID] = struct{}{}

		req.events[i] = encodedEvent{id: metadata.EventID, eventType: eventType, data: data, headers: headers,
			correlationID: metadata.CorrelationID, causationID: metadata.CausationID}
		req.recorded[i] = core.RecordedEvent{StreamID: streamID, EventType: eventType, Data: data, Metadata: metadata}
	}
	req.bytes = int32(min(batchBytes, math.MaxInt32))
	return req, nil
}

// categoryOf returns the category of a stream ID, the part before the first
// separator, or nil for an ID without one.
func categoryOf(streamID string) *string {
	category, _, found := strings.Cut(streamID, core.CategorySeparator)
	if !found {
		return nil
	}
	return &category
}

func encodeHeaders(eventType string, headers map[string]string) ([]byte, error) {
	if len(headers) == 0 {
		return nil, nil
	}
	// encoding/json would replace invalid UTF-8 by U+FFFD, and could so
	// merge two keys into one.
	for key, value := range headers {
		if !utf8.ValidString(key) {
			return nil, &core.InvalidInputError{Field: "event data", Value: eventType,
				Reason: fmt.Sprintf("header key %q is not valid UTF-8", key)}
		}
		if !utf8.ValidString(value) {
			return nil, &core.InvalidInputError{Field: "event data", Value: eventType,
				Reason: fmt.Sprintf("the value of header %q is not valid UTF-8", key)}
		}
	}
	return headersJSON(headers), nil
}

// headersJSON is json.Marshal(headers), byte for byte, without reflection:
// headers go with every event, and encoding/json spent as long on a map of
// one trace header as on the event's data. Strings of plain printable ASCII
// are written as they are; any other string is encoded by encoding/json,
// which escapes it.
func headersJSON(headers map[string]string) []byte {
	var stack [8]string
	keys := stack[:0]
	size := 2
	for key, value := range headers {
		keys = append(keys, key)
		size += len(key) + len(value) + 6
	}
	slices.Sort(keys)
	out := make([]byte, 0, size)
	out = append(out, '{')
	for i, key := range keys {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendJSONString(out, key)
		out = append(out, ':')
		out = appendJSONString(out, headers[key])
	}
	return append(out, '}')
}

// appendJSONString appends s as encoding/json writes it.
func appendJSONString(out []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		// encoding/json escapes control characters, quotes and backslashes,
		// and <, > and & for HTML; beyond ASCII it may escape or replace.
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			encoded, _ := json.Marshal(s) // a string always encodes
			return append(out, encoded...)
		}
	}
	out = append(out, '"')
	out = append(out, s...)
	return append(out, '"')
}
