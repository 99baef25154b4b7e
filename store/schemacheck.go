package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/schema"
	"github.com/mire-go/mire/store/internal/dbsqlc"
)

// schemaCheck makes a store refuse to run against a schema migrated to
// another version than the code's, or left dirty: code appending to a schema
// it does not know would write what the schema no longer means. It asks once,
// on the store's first statement, and again after the store migrates.
type schemaCheck struct {
	passed atomic.Bool
	mu     sync.Mutex // one check in flight
}

// ensureSchema returns nil once the schema has been found at the code's
// version. It asks on exec, where the statement about to run would run: a
// second connection could deadlock a caller whose transaction holds the
// pool's last one. In a caller's transaction it fails (and aborts it) only
// where that statement would have: without mire's tables.
func (s *EventStore) ensureSchema(ctx context.Context, exec dbsqlc.DBTX) error {
	if s.schemaCheck.passed.Load() {
		return nil
	}
	s.schemaCheck.mu.Lock()
	defer s.schemaCheck.mu.Unlock()
	if s.schemaCheck.passed.Load() {
		return nil
	}
	row, err := s.queries.SchemaVersion(ctx, s.uncheckedDB(exec))
	var version uint
	var dirty bool
	switch {
	case errors.Is(err, pgx.ErrNoRows): // golang-migrate's table, with no migration recorded
	case err != nil:
		return s.interpretError("check schema version", err)
	default:
		version, dirty = uint(row.Version), row.Dirty
		// A setting of the session, unchanged by the isolation of a
		// caller's transaction the check may run in: the pool's default.
		s.poolNotReadCommitted.Store(row.DefaultIsolation != "read committed")
	}
	if want := schema.LatestVersion(); version != want || dirty {
		return &core.SchemaVersionError{Schema: s.schema, Version: version, Dirty: dirty, Want: want}
	}
	s.schemaCheck.passed.Store(true)
	return nil
}

// forgetSchemaCheck makes the next statement check the version again.
func (s *EventStore) forgetSchemaCheck() { s.schemaCheck.passed.Store(false) }
