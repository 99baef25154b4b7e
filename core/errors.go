package core

import (
	"errors"
	"fmt"

	"github.com/google/uuid"
)

// Sentinel errors. Every error mire returns matches one of these with
// [errors.Is]; the typed errors below carry the details and match with
// [errors.As].
var (
	// ErrConcurrency means an append's [ExpectedVersion] did not hold. See
	// [VersionConflictError].
	ErrConcurrency = errors.New("mire: concurrency conflict")

	// ErrStreamNotFound means the stream has no events.
	ErrStreamNotFound = errors.New("mire: stream not found")

	// ErrCorruptStream means the stored events of a stream disagree with its
	// recorded version. Such a stream is never hydrated. See
	// [CorruptStreamError].
	ErrCorruptStream = errors.New("mire: corrupt stream")

	// ErrInvalidInput means a caller's argument was rejected before anything
	// was written. See [InvalidInputError].
	ErrInvalidInput = errors.New("mire: invalid input")

	// ErrEncode means event data could not be serialized. See [EncodeError].
	ErrEncode = errors.New("mire: cannot encode event")

	// ErrDecode means a stored event could not be turned back into its Go
	// type. See [DecodeError].
	ErrDecode = errors.New("mire: cannot decode event")

	// ErrUnknownEventType means a stored event type has no registered Go
	// type. It is wrapped in a [DecodeError] naming the event.
	ErrUnknownEventType = errors.New("mire: unknown event type")

	// ErrEventIDReused means an append reused an event ID that is stored
	// with different content or in another stream. See [EventIDReusedError].
	ErrEventIDReused = errors.New("mire: event id reused")

	// ErrScopeClosed means a transaction scope was used after it was
	// committed or rolled back.
	ErrScopeClosed = errors.New("mire: transaction scope already committed or rolled back")

	// ErrDatabase matches every [DatabaseError].
	ErrDatabase = errors.New("mire: database error")

	// ErrSchemaNotMigrated means mire's tables are missing from the schema
	// the store uses: run the store's Migrate first. It matches a
	// [DatabaseError] of kind [DBSchemaNotMigrated].
	ErrSchemaNotMigrated = errors.New("mire: schema not migrated")

	// ErrSchemaVersion means the store's schema is at a migration version
	// other than the one the code was built for. See [SchemaVersionError].
	ErrSchemaVersion = errors.New("mire: schema version mismatch")

	// ErrDirtyMigration means a migration of the store's schema failed
	// part-way in a state mire cannot resolve on its own. See
	// [DirtyMigrationError].
	ErrDirtyMigration = errors.New("mire: dirty migration")
)

// SchemaVersionError reports a schema that the store refuses to run
// against: migrated to another version than the code expects, or left dirty
// by a failed migration. An older schema also matches
// [ErrSchemaNotMigrated].
type SchemaVersionError struct {
	Schema string
	// Version is the schema's migration version; Dirty that a migration to
	// it failed part way.
	Version uint
	Dirty   bool
	// Want is the version the code expects.
	Want uint
}

func (e *SchemaVersionError) Error() string {
	switch {
	case e.Dirty:
		return fmt.Sprintf("mire: schema %q is at migration %d, left dirty by a failed migration (this code needs %d): run Migrate, which recovers it",
			e.Schema, e.Version, e.Want)
	case e.Version < e.Want:
		return fmt.Sprintf("mire: schema %q is at migration %d, this code needs %d: run Migrate", e.Schema, e.Version, e.Want)
	default:
		return fmt.Sprintf("mire: schema %q is at migration %d, newer than this code understands (%d): deploy the newer code, or migrate the schema down",
			e.Schema, e.Version, e.Want)
	}
}

// Is makes the error match [ErrSchemaVersion], and [ErrSchemaNotMigrated]
// for a schema behind the code.
func (e *SchemaVersionError) Is(target error) bool {
	return target == ErrSchemaVersion || (target == ErrSchemaNotMigrated && (e.Dirty || e.Version < e.Want))
}

// VersionConflictError reports an append whose expected version did not
// hold.
type VersionConflictError struct {
	StreamID string
	Expected ExpectedVersion
	// Actual is the stream's version when the append was refused, 0 if the
	// stream has no events.
	Actual int64
}

func (e *VersionConflictError) Error() string {
	return fmt.Sprintf("mire: concurrency conflict on stream %q: expected %s, actual version %d", e.StreamID, e.Expected, e.Actual)
}

// Is makes the error match [ErrConcurrency].
func (e *VersionConflictError) Is(target error) bool { return target == ErrConcurrency }

// CorruptStreamError reports a stream whose stored events disagree with its
// recorded version.
type CorruptStreamError struct {
	StreamID string
	// RecordedVersion is the stream's version as the store knows it: the
	// highest stored stream_version, or the version a load had reached when
	// the events stopped following on.
	RecordedVersion int64
	// Reason says what disagreed.
	Reason string
}

func (e *CorruptStreamError) Error() string {
	return fmt.Sprintf("mire: corrupt stream %q (recorded version %d): %s", e.StreamID, e.RecordedVersion, e.Reason)
}

// Is makes the error match [ErrCorruptStream].
func (e *CorruptStreamError) Is(target error) bool { return target == ErrCorruptStream }

// InvalidInputError reports an argument rejected before anything was
// written.
type InvalidInputError struct {
	// Field names the argument, e.g. "stream id".
	Field string
	// Value is the rejected value (shortened when long), if it helps.
	Value string
	// Reason says what is wrong.
	Reason string
}

func (e *InvalidInputError) Error() string {
	if e.Value != "" {
		return fmt.Sprintf("mire: invalid %s %q: %s", e.Field, e.Value, e.Reason)
	}
	return fmt.Sprintf("mire: invalid %s: %s", e.Field, e.Reason)
}

// Is makes the error match [ErrInvalidInput].
func (e *InvalidInputError) Is(target error) bool { return target == ErrInvalidInput }

// DirtyMigrationError reports a schema whose migration version is marked
// dirty (a migration started and did not finish) while the catalog matches
// neither the version before that migration nor the one after it, so mire
// will not guess. The operator inspects the schema, completes or reverts the
// migration by hand, and then records the version the schema is at with the
// store's ForceMigrationVersion.
type DirtyMigrationError struct {
	Schema string
	// Version is the dirty version recorded in the migrations table.
	Version int
	// Reason says what the catalog shows.
	Reason string
}

func (e *DirtyMigrationError) Error() string {
	return fmt.Sprintf("mire: schema %q is at dirty migration version %d: %s; "+
		"complete or revert that migration by hand, then record the version the schema is at with ForceMigrationVersion",
		e.Schema, e.Version, e.Reason)
}

// Is makes the error match [ErrDirtyMigration].
func (e *DirtyMigrationError) Is(target error) bool { return target == ErrDirtyMigration }

// EncodeError reports event data or metadata that could not be serialized.
type EncodeError struct {
	EventType string
	Err       error
}

func (e *EncodeError) Error() string {
	return fmt.Sprintf("mire: cannot encode event %q: %v", e.EventType, e.Err)
}

// Is makes the error match [ErrEncode].
func (e *EncodeError) Is(target error) bool { return target == ErrEncode }

// Unwrap returns the serializer's error.
func (e *EncodeError) Unwrap() error { return e.Err }

// DecodeError reports a stored event that could not be decoded into its Go
// type: an unknown event type ([ErrUnknownEventType]), data that does not
// fit the type, or an upcaster that failed.
type DecodeError struct {
	StreamID      string
	StreamVersion int64
	// GlobalPosition is the event's position in the log, or 0 when the
	// reader did not know it (aggregate loads, events not yet sequenced).
	GlobalPosition int64
	EventType      string
	Err            error
}

func (e *DecodeError) Error() string {
	if e.GlobalPosition == 0 {
		return fmt.Sprintf("mire: cannot decode event %q at stream %q version %d: %v",
			e.EventType, e.StreamID, e.StreamVersion, e.Err)
	}
	return fmt.Sprintf("mire: cannot decode event %q at stream %q version %d (global position %d): %v",
		e.EventType, e.StreamID, e.StreamVersion, e.GlobalPosition, e.Err)
}

// Is makes the error match [ErrDecode].
func (e *DecodeError) Is(target error) bool { return target == ErrDecode }

// Unwrap returns the cause, e.g. [ErrUnknownEventType].
func (e *DecodeError) Unwrap() error { return e.Err }

// EventIDReusedError reports an append that reused a stored event ID for
// different content, or for a different stream or position.
type EventIDReusedError struct {
	EventID uuid.UUID
	// StreamID is the stream of the rejected append.
	StreamID string
	// StoredStreamID is the stream the ID is stored in.
	StoredStreamID string
	Reason         string
}

func (e *EventIDReusedError) Error() string {
	return fmt.Sprintf("mire: event id %s appended to %q is already stored in stream %q: %s",
		e.EventID, e.StreamID, e.StoredStreamID, e.Reason)
}

// Is makes the error match [ErrEventIDReused].
func (e *EventIDReusedError) Is(target error) bool { return target == ErrEventIDReused }

// DBErrorKind is a coarse class of database failure, so callers can react to
// common failures without importing the driver.
type DBErrorKind uint8

const (
	// DBOther is any failure not classified below.
	DBOther DBErrorKind = iota
	// DBConnection means the connection could not be made or was lost. A write
	// that fails so has an unknown outcome: it may have committed.
	DBConnection
	// DBTimeout means a deadline, statement timeout or cancellation ended the
	// wait for the operation. A write that fails so has an unknown outcome:
	// the server may still commit it. Retry appends with the same event IDs.
	DBTimeout
	// DBLockNotAvailable means a lock could not be taken within lock_timeout or
	// NOWAIT.
	DBLockNotAvailable
	// DBSerializationFailure means a serializable or repeatable-read transaction
	// must be retried.
	DBSerializationFailure
	// DBDeadlock means PostgreSQL broke a deadlock by aborting this transaction.
	DBDeadlock
	// DBUniqueViolation means a unique constraint was violated.
	DBUniqueViolation
	// DBSchemaNotMigrated means mire's tables or functions are missing.
	DBSchemaNotMigrated
	// DBPermissionDenied means the role lacks a privilege.
	DBPermissionDenied
)

var dbErrorKindNames = [...]string{
	DBOther:                "other",
	DBConnection:           "connection",
	DBTimeout:              "timeout",
	DBLockNotAvailable:     "lock_not_available",
	DBSerializationFailure: "serialization_failure",
	DBDeadlock:             "deadlock",
	DBUniqueViolation:      "unique_violation",
	DBSchemaNotMigrated:    "schema_not_migrated",
	DBPermissionDenied:     "permission_denied",
}

// String returns the kind's snake_case name.
func (k DBErrorKind) String() string {
	if int(k) < len(dbErrorKindNames) {
		return dbErrorKindNames[k]
	}
	return fmt.Sprintf("DBErrorKind(%d)", k)
}

// Transient reports whether retrying the whole operation may succeed:
// connection loss, serialization failure, deadlock and lock timeouts.
func (k DBErrorKind) Transient() bool {
	switch k {
	case DBConnection, DBSerializationFailure, DBDeadlock, DBLockNotAvailable:
		return true
	}
	return false
}

// DatabaseError wraps a driver or server error with its [DBErrorKind].
type DatabaseError struct {
	Kind DBErrorKind
	// Op says what mire was doing, e.g. "append".
	Op string
	// Hint suggests a fix, when there is an obvious one.
	Hint string
	Err  error
}

func (e *DatabaseError) Error() string {
	msg := fmt.Sprintf("mire: %s: database error (%s): %v", e.Op, e.Kind, e.Err)
	if e.Hint != "" {
		msg += " (hint: " + e.Hint + ")"
	}
	return msg
}

// Is makes the error match [ErrDatabase], and [ErrSchemaNotMigrated] when
// that is its kind.
func (e *DatabaseError) Is(target error) bool {
	return target == ErrDatabase || (target == ErrSchemaNotMigrated && e.Kind == DBSchemaNotMigrated)
}

// Unwrap returns the driver's error (and so context.Canceled or
// context.DeadlineExceeded where those caused it).
func (e *DatabaseError) Unwrap() error { return e.Err }

// DBKind returns the [DBErrorKind] of the first [DatabaseError] in err's
// chain, and false if there is none.
func DBKind(err error) (DBErrorKind, bool) {
	var dbErr *DatabaseError
	if errors.As(err, &dbErr) {
		return dbErr.Kind, true
	}
	return DBOther, false
}
