package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/mire-go/mire/core"
)

// eventJSON is an event as --json prints it.
type eventJSON struct {
	GlobalPosition int64             `json:"global_position"`
	StreamID       string            `json:"stream_id"`
	StreamVersion  int64             `json:"stream_version"`
	EventType      string            `json:"event_type"`
	EventID        string            `json:"event_id"`
	CorrelationID  string            `json:"correlation_id,omitempty"`
	CausationID    string            `json:"causation_id,omitempty"`
	Headers        map[string]string `json:"headers,omitempty"`
	RecordedAt     time.Time         `json:"recorded_at"`
	Data           json.RawMessage   `json:"data"`
}

func toEventJSON(e *core.RecordedEvent) eventJSON {
	return eventJSON{GlobalPosition: e.GlobalPosition, StreamID: e.StreamID, StreamVersion: e.StreamVersion,
		EventType: e.EventType, EventID: e.Metadata.EventID.String(), CorrelationID: uuidOrEmpty(e.Metadata.CorrelationID),
		CausationID: uuidOrEmpty(e.Metadata.CausationID), Headers: e.Metadata.Headers, RecordedAt: e.RecordedAt.UTC(),
		Data: compactJSON(e.Data)}
}

func uuidOrEmpty(id uuid.UUID) string {
	if id == uuid.Nil {
		return ""
	}
	return id.String()
}

// compactJSON is data without insignificant whitespace.
func compactJSON(data json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		return data
	}
	return b.Bytes()
}

// metadataLine is an event's metadata on one line: correlation,
// causation and headers; "" when it has none.
func metadataLine(m core.EventMetadata) string {
	var parts []string
	if id := uuidOrEmpty(m.CorrelationID); id != "" {
		parts = append(parts, "correlation="+id)
	}
	if id := uuidOrEmpty(m.CausationID); id != "" {
		parts = append(parts, "causation="+id)
	}
	for _, k := range slices.Sorted(maps.Keys(m.Headers)) {
		parts = append(parts, fmt.Sprintf("%s=%q", k, m.Headers[k]))
	}
	return strings.Join(parts, " ")
}

// positionOrDash is an event's position, "-" before it has one.
func positionOrDash(p int64) string {
	if p == 0 {
		return "-"
	}
	return fmt.Sprint(p)
}

// jsonLine writes one JSON object per line.
func jsonLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
