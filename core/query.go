package core

import (
	"fmt"
	"strings"
)

// StreamQuery says what to read: one stream, one category, or the whole log.
//
// Set StreamID to read a stream, ordered by stream version. Set Category to
// read every stream of a category (stream IDs "<category>-<id>"), or neither
// to read the whole log; both are ordered by global position and include only
// events that have been sequenced.
type StreamQuery struct {
	// StreamID selects one stream.
	StreamID string

	// Category selects the streams whose ID starts with Category followed by
	// "-". A trailing "-" is accepted and ignored ("account-" is "account").
	Category string

	// Direction is Forward (oldest first) or Backward (newest first).
	// Defaults to Forward.
	Direction ReadDirection

	// FromVersion is where a stream read starts, inclusive: the lowest version
	// read going forward, the highest going backward. 0 means the start
	// (forward) or the end (backward). Only for stream reads.
	FromVersion int64

	// FromPosition is where a category or whole-log read starts, inclusive:
	// the lowest global position going forward, the highest going backward. 0
	// means the start (forward) or the end (backward). A subscriber whose
	// checkpoint is c reads from c+1. Only for category and whole-log reads.
	FromPosition int64

	// Limit caps the number of events returned. 0 means no limit: the read
	// streams every matching event, a page at a time.
	Limit int

	// EventTypes, when not empty, keeps only events of these types.
	EventTypes []string

	// Partitions, when above 1, splits the streams into that many partitions
	// by a stable hash of their IDs (see [StreamPartition]), and a category or
	// whole-log read keeps only the events of the streams in partition
	// Partition (0 to Partitions-1). Every stream is in exactly one partition,
	// so its events keep their order within it. At most [StreamBuckets].
	Partitions int

	// Partition is the partition read when Partitions is above 1.
	Partition int
}

// IsPartitioned reports whether q reads one partition of several.
func (q StreamQuery) IsPartitioned() bool { return q.Partitions > 1 }

// ReadStream returns a forward query of one stream from its first event.
func ReadStream(streamID string) StreamQuery { return StreamQuery{StreamID: streamID} }

// ReadCategory returns a forward query of one category from the start of the
// log.
func ReadCategory(category string) StreamQuery { return StreamQuery{Category: category} }

// ReadAll returns a forward query of the whole log from its start.
func ReadAll() StreamQuery { return StreamQuery{} }

// IsStream reports whether q reads a single stream.
func (q StreamQuery) IsStream() bool { return q.StreamID != "" }

// NormalizedCategory returns Category without a trailing "-".
func (q StreamQuery) NormalizedCategory() string { return strings.TrimSuffix(q.Category, "-") }

// Validate reports an [InvalidInputError] for a query that cannot be run.
func (q StreamQuery) Validate() error {
	invalid := func(field, format string, args ...any) error {
		return &InvalidInputError{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case q.StreamID != "" && q.Category != "":
		return invalid("stream query", "set StreamID or Category, not both")
	case q.Direction != Forward && q.Direction != Backward:
		return invalid("direction", "unknown direction %d", q.Direction)
	case q.Limit < 0:
		return invalid("limit", "limit %d is negative", q.Limit)
	case q.FromVersion < 0:
		return invalid("from version", "version %d is negative", q.FromVersion)
	case q.FromPosition < 0:
		return invalid("from position", "position %d is negative", q.FromPosition)
	case q.StreamID == "" && q.FromVersion != 0:
		return invalid("from version", "FromVersion applies to stream reads; use FromPosition")
	case q.StreamID != "" && q.FromPosition != 0:
		return invalid("from position", "FromPosition applies to category and whole-log reads; use FromVersion")
	case q.Partitions < 0 || q.Partitions > StreamBuckets:
		return invalid("partitions", "%d partitions: want 0 to %d", q.Partitions, StreamBuckets)
	case q.Partition < 0 || (q.Partition > 0 && q.Partition >= q.Partitions):
		return invalid("partition", "partition %d of %d does not exist", q.Partition, q.Partitions)
	case q.StreamID != "" && q.Partitions > 1:
		return invalid("partitions", "partitions apply to category and whole-log reads")
	}
	if q.StreamID != "" {
		if err := ValidateStreamID(q.StreamID); err != nil {
			return err
		}
	}
	if q.Category != "" {
		if err := ValidateCategory(q.NormalizedCategory()); err != nil {
			return err
		}
	}
	for _, t := range q.EventTypes {
		if err := ValidateEventType(t); err != nil {
			return err
		}
	}
	return nil
}
