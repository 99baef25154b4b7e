package core_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/mire-go/mire/core"
)

// Every typed error matches its sentinel and no other, directly and wrapped,
// and says what happened.
func TestTypedErrorsMatchTheirSentinel(t *testing.T) {
	t.Parallel()
	cause := errors.New("the cause")
	id := uuid.MustParse("0190b4c0-0000-7000-8000-000000000001")
	sentinels := []error{
		core.ErrConcurrency, core.ErrStreamNotFound, core.ErrCorruptStream, core.ErrInvalidInput, core.ErrEncode,
		core.ErrDecode, core.ErrUnknownEventType, core.ErrEventIDReused, core.ErrScopeClosed, core.ErrDatabase,
		core.ErrSchemaNotMigrated,
	}
	tests := []struct {
		err      error
		matches  []error
		contains []string
		unwraps  bool
	}{
		{&core.VersionConflictError{StreamID: "s-1", Expected: core.Exact(3), Actual: 5},
			[]error{core.ErrConcurrency}, []string{`"s-1"`, "exact(3)", "5"}, false},
		{&core.CorruptStreamError{StreamID: "s-1", RecordedVersion: 4, Reason: "gap at 2"},
			[]error{core.ErrCorruptStream}, []string{`"s-1"`, "4", "gap at 2"}, false},
		{&core.InvalidInputError{Field: "stream id", Value: "x\x00", Reason: "contains a NUL byte"},
			[]error{core.ErrInvalidInput}, []string{"stream id", `"x\x00"`, "NUL"}, false},
		{&core.InvalidInputError{Field: "events", Reason: "none"},
			[]error{core.ErrInvalidInput}, []string{"invalid events: none"}, false},
		{&core.EncodeError{EventType: "t.x", Err: cause},
			[]error{core.ErrEncode, cause}, []string{`"t.x"`, "the cause"}, true},
		{&core.DecodeError{StreamID: "s-1", StreamVersion: 2, GlobalPosition: 9, EventType: "t.x", Err: core.ErrUnknownEventType},
			[]error{core.ErrDecode, core.ErrUnknownEventType}, []string{`"t.x"`, `"s-1"`, "version 2", "position 9"}, true},
		{&core.DecodeError{StreamID: "s-1", StreamVersion: 2, EventType: "t.x", Err: core.ErrUnknownEventType},
			[]error{core.ErrDecode, core.ErrUnknownEventType}, []string{`"s-1" version 2: `}, true},
		{&core.EventIDReusedError{EventID: id, StreamID: "s-2", StoredStreamID: "s-1", Reason: "other stream"},
			[]error{core.ErrEventIDReused}, []string{id.String(), `"s-2"`, `"s-1"`, "other stream"}, false},
		{&core.DatabaseError{Kind: core.DBLockNotAvailable, Op: "append", Err: cause},
			[]error{core.ErrDatabase, cause}, []string{"append", "lock_not_available", "the cause"}, true},
		{&core.DatabaseError{Kind: core.DBSchemaNotMigrated, Op: "read", Hint: "run Migrate", Err: cause},
			[]error{core.ErrDatabase, core.ErrSchemaNotMigrated, cause}, []string{"schema_not_migrated", "hint: run Migrate"}, true},
	}
	for _, tt := range tests {
		for _, err := range []error{tt.err, fmt.Errorf("context: %w", tt.err)} {
			for _, sentinel := range append(sentinels, cause) {
				want := slices.Contains(tt.matches, sentinel) // the sentinels themselves, not errors matching them
				if got := errors.Is(err, sentinel); got != want {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", err, sentinel, got, want)
				}
			}
			for _, s := range tt.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message %q does not contain %q", err, s)
				}
			}
		}
		if got := errors.Unwrap(tt.err) != nil; got != tt.unwraps {
			t.Errorf("%T unwraps: %v, want %v", tt.err, got, tt.unwraps)
		}
	}
}

func TestDbKind(t *testing.T) {
	t.Parallel()
	if kind, ok := core.DBKind(errors.New("plain")); ok || kind != core.DBOther {
		t.Errorf("DBKind(plain) = %s, %v", kind, ok)
	}
	if kind, ok := core.DBKind(nil); ok || kind != core.DBOther {
		t.Errorf("DBKind(nil) = %s, %v", kind, ok)
	}
	err := fmt.Errorf("saving: %w", &core.DatabaseError{Kind: core.DBTimeout, Op: "append", Err: context.DeadlineExceeded})
	if kind, ok := core.DBKind(err); !ok || kind != core.DBTimeout {
		t.Errorf("DBKind(wrapped timeout) = %s, %v", kind, ok)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Error("a DatabaseError hides its context error")
	}
}

func TestDBErrorKindNamesAndTransience(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind      core.DBErrorKind
		name      string
		transient bool
	}{
		{core.DBOther, "other", false},
		{core.DBConnection, "connection", true},
		{core.DBTimeout, "timeout", false},
		{core.DBLockNotAvailable, "lock_not_available", true},
		{core.DBSerializationFailure, "serialization_failure", true},
		{core.DBDeadlock, "deadlock", true},
		{core.DBUniqueViolation, "unique_violation", false},
		{core.DBSchemaNotMigrated, "schema_not_migrated", false},
		{core.DBPermissionDenied, "permission_denied", false},
		{core.DBErrorKind(200), "DBErrorKind(200)", false},
	}
	for _, tt := range tests {
		if tt.kind.String() != tt.name || tt.kind.Transient() != tt.transient {
			t.Errorf("kind %d: %q transient %v, want %q transient %v", tt.kind, tt.kind, tt.kind.Transient(), tt.name, tt.transient)
		}
	}
}
