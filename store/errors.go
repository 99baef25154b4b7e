package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"

	"github.com/mire-go/mire/core"
)

// interpretError turns a driver error into a *core.DatabaseError with its
// DBErrorKind. It is the one place that knows pgx's error types, so callers
// of mire never need to.
func (s *EventStore) interpretError(op string, err error) error {
	if err == nil {
		return nil
	}
	if isMireError(err) {
		return err
	}
	kind := classify(err)
	dbErr := &core.DatabaseError{Kind: kind, Op: op, Err: err}
	if kind == core.DBSchemaNotMigrated {
		dbErr.Hint = fmt.Sprintf("mire's tables are missing from schema %q: run (*store.EventStore).Migrate first", s.schema)
	}
	return dbErr
}

// isMireError reports one of mire's own errors (a conflict, invalid input, a
// *core.DatabaseError already interpreted, ...), which interpretError passes
// on as it is.
func isMireError(err error) bool {
	for _, sentinel := range []error{
		core.ErrDatabase, core.ErrConcurrency, core.ErrEventIDReused, core.ErrInvalidInput, core.ErrEncode,
		core.ErrDecode, core.ErrCorruptStream, core.ErrStreamNotFound, core.ErrSchemaVersion,
		core.ErrDirtyMigration, core.ErrScopeClosed,
	} {
		if errors.Is(err, sentinel) {
			return true
		}
	}
	return false
}

func classify(err error) core.DBErrorKind {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "42P01", // undefined_table
			"3F000", // invalid_schema_name
			"42883": // undefined_function
			return core.DBSchemaNotMigrated
		case "55P03":
			return core.DBLockNotAvailable
		case "40001":
			return core.DBSerializationFailure
		case "40P01":
			return core.DBDeadlock
		case "23505":
			return core.DBUniqueViolation
		case "42501":
			return core.DBPermissionDenied
		case "57014": // query_canceled: statement_timeout or a cancel request
			return core.DBTimeout
		case "57P01", "57P02", "57P03": // admin_shutdown, crash_shutdown, cannot_connect_now
			return core.DBConnection
		}
		if len(pgErr.Code) == 5 && pgErr.Code[:2] == "08" { // connection_exception class
			return core.DBConnection
		}
		return core.DBOther
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return core.DBTimeout
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	if errors.As(err, &connectErr) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		// pgxpool returns puddle's error, unwrapped, once the pool is closed.
		errors.Is(err, puddle.ErrClosedPool) ||
		pgconn.SafeToRetry(err) {
		return core.DBConnection
	}
	if conn, ok := err.(interface{ IsClosed() bool }); ok && conn.IsClosed() {
		return core.DBConnection
	}
	return core.DBOther
}
