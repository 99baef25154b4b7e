package core

import (
	"fmt"
	"math"
)

// ExpectedVersion is the optimistic-concurrency condition of an append.
//
// The zero value is [Any].
type ExpectedVersion struct {
	kind    expectedKind
	version int64
}

type expectedKind uint8

const (
	expectAny expectedKind = iota
	expectNoStream
	expectStreamExists
	expectExact
)

var (
	// Any appends whatever the stream's state.
	Any = ExpectedVersion{kind: expectAny}

	// NoStream appends only if the stream has no events yet.
	NoStream = ExpectedVersion{kind: expectNoStream}

	// StreamExists appends only if the stream has at least one event.
	StreamExists = ExpectedVersion{kind: expectStreamExists}
)

// Exact appends only if the stream's current version is exactly version.
// Versions start at 1, so Exact(0) means the stream has no events and is the
// same as [NoStream]. A negative version is invalid.
func Exact(version int64) ExpectedVersion {
	if version == 0 {
		return NoStream
	}
	return ExpectedVersion{kind: expectExact, version: version}
}

// IsAny reports whether e is [Any].
func (e ExpectedVersion) IsAny() bool { return e.kind == expectAny }

// IsNoStream reports whether e is [NoStream] (or Exact(0)).
func (e ExpectedVersion) IsNoStream() bool { return e.kind == expectNoStream }

// IsStreamExists reports whether e is [StreamExists].
func (e ExpectedVersion) IsStreamExists() bool { return e.kind == expectStreamExists }

// ExactVersion returns the version of an [Exact] expectation and true, or 0
// and false for the other kinds.
func (e ExpectedVersion) ExactVersion() (int64, bool) {
	return e.version, e.kind == expectExact
}

// String renders the expectation for error messages: "any", "no_stream",
// "stream_exists" or "exact(n)".
func (e ExpectedVersion) String() string {
	switch e.kind {
	case expectNoStream:
		return "no_stream"
	case expectStreamExists:
		return "stream_exists"
	case expectExact:
		return fmt.Sprintf("exact(%d)", e.version)
	default:
		return "any"
	}
}

// Validate reports an [InvalidInputError] when the expectation cannot hold for
// an append of count events: a negative exact version, or one whose append
// would overflow the version counter.
func (e ExpectedVersion) Validate(count int) error {
	if e.kind != expectExact {
		return nil
	}
	if e.version < 0 {
		return &InvalidInputError{Field: "expected version", Reason: fmt.Sprintf("exact version %d is negative", e.version)}
	}
	if e.version > math.MaxInt64-int64(count) {
		return &InvalidInputError{Field: "expected version", Reason: fmt.Sprintf("exact version %d leaves no room for %d more events", e.version, count)}
	}
	return nil
}

// Satisfied reports whether a stream at version current (0 when it has no
// events) meets the expectation.
func (e ExpectedVersion) Satisfied(current int64) bool {
	switch e.kind {
	case expectNoStream:
		return current == 0
	case expectStreamExists:
		return current > 0
	case expectExact:
		return current == e.version
	default:
		return true
	}
}

// ReadDirection is the order a read returns events in.
type ReadDirection uint8

const (
	// Forward reads oldest first.
	Forward ReadDirection = iota
	// Backward reads newest first.
	Backward
)

// String returns "forward" or "backward".
func (d ReadDirection) String() string {
	if d == Backward {
		return "backward"
	}
	return "forward"
}
