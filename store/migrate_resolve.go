package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/golang-migrate/migrate/v4/database"
	"github.com/jackc/pgx/v5"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/schema"
	"github.com/mire-go/mire/store/internal/dbsqlc"
)

// catalogObject is an object a migration creates or drops.
type catalogObject struct {
	kind catalogKind
	// name is a relation, "table.column", a function signature, or a
	// function signature followed by a fragment of the function's body
	// (catalogFunctionSource, present when the body contains the fragment:
	// for a migration that only redefines a function), unqualified.
	name string
	// created is true when the migration creates the object and false when
	// it drops it.
	created bool
}

type catalogKind uint8

const (
	catalogRelation catalogKind = iota
	catalogColumn
	catalogFunction
	catalogFunctionSource
)

// migrationEffects lists, per migration version V, catalog objects whose
// presence tells the schema at V from the schema at V-1: each is present at
// one and absent at the other. They let Migrate resolve a dirty version left
// by a migration whose connection was lost. Every migration needs an entry;
// a test fails for one without.
var migrationEffects = map[int][]catalogObject{
	1: {
		{catalogRelation, "streams", true},
		{catalogRelation, "events", true},
		{catalogFunction, "sequence_events(integer)", true},
	},
	2: {
		{catalogRelation, "snapshots", true},
	},
	3: {
		{catalogRelation, "event_log", true},
		{catalogRelation, "sequencer_state", true},
		{catalogColumn, "events.xid", true},
		{catalogFunction, "sequence_events()", true},
		{catalogFunction, "restore_sequencer()", true},
		{catalogRelation, "streams", false},
		{catalogColumn, "events.global_position", false},
		{catalogFunction, "sequence_events(integer)", false},
	},
	4: {
		{catalogRelation, "sequencer_sweeps", true},
		{catalogRelation, "runtime_roles", true},
		{catalogFunction, "restore_sequencer(bigint, bigint)", true},
		{catalogFunction, "grant_runtime(regrole)", true},
		{catalogFunction, "revoke_runtime(regrole)", true},
		{catalogRelation, "sequencer_state", false},
		{catalogFunction, "restore_sequencer()", false},
	},
	5: {
		{catalogRelation, "positioned_events", true},
		{catalogFunction, "read_log_forward(bigint, text[], integer)", true},
		{catalogFunction, "read_log_backward(bigint, text[], integer)", true},
		{catalogFunction, "read_category_forward(text, bigint, text[], integer)", true},
		{catalogFunction, "read_category_backward(text, bigint, text[], integer)", true},
		{catalogFunction, "events_stored(uuid[])", true},
	},
	6: {
		{catalogRelation, "subscriptions", true},
		{catalogRelation, "subscription_workers", true},
		{catalogRelation, "parked_streams", true},
		{catalogRelation, "skipped_events", true},
		{catalogColumn, "event_log.bucket", true},
		{catalogFunction, "stream_bucket(text)", true},
		{catalogFunction, "read_log_forward(bigint, text[], integer, integer, integer)", true},
		{catalogFunction, "read_log_backward(bigint, text[], integer, integer, integer)", true},
		{catalogFunction, "read_category_forward(text, bigint, text[], integer, integer, integer)", true},
		{catalogFunction, "read_category_backward(text, bigint, text[], integer, integer, integer)", true},
		{catalogFunction, "read_log_forward(bigint, text[], integer)", false},
		{catalogFunction, "read_log_backward(bigint, text[], integer)", false},
		{catalogFunction, "read_category_forward(text, bigint, text[], integer)", false},
		{catalogFunction, "read_category_backward(text, bigint, text[], integer)", false},
	},
	7: {
		{catalogRelation, "saga_instances", true},
		{catalogRelation, "saga_instances_due_idx", true},
		{catalogRelation, "saga_instances_status_idx", true},
	},
	8: {
		{catalogFunction, "append_refusal(text, uuid[])", true},
		{catalogRelation, "event_log_seq_position_key", true},
		{catalogRelation, "event_log_seq_key", false},
	},
	9: {
		{catalogColumn, "event_log.event_count", true},
		{catalogColumn, "events.run_start", true},
		{catalogRelation, "event_log_stream_version_key", true},
		{catalogColumn, "event_log.seq", false},
		{catalogRelation, "event_log_seq_position_key", false},
	},
	10: {
		{catalogFunctionSource, "append_refusal(text, uuid[]) ORDER BY current.stream_version DESC LIMIT 1", true},
	},
	11: {
		{catalogFunctionSource, "sequence_events() INTO fresh, taken", true},
	},
	12: {
		{catalogFunctionSource, "read_log_forward(bigint, text[], integer, integer, integer) RETURN QUERY", true},
	},
	13: {
		{catalogFunction, "stored_events(uuid[])", true},
		{catalogFunction, "refresh_statistics()", true},
	},
	14: {
		{catalogFunction, "outgrown_statistics(regclass)", true},
	},
}

// resolveDirty clears a dirty migration version when the catalog shows
// which version the schema is at. golang-migrate marks version V dirty in a
// transaction of its own, runs migration V in another and then marks V
// clean, so a lost connection leaves V dirty whether V committed or rolled
// back. A down migration marks its target V-1 dirty in the same way. The
// caller holds the migration lock.
func (s *EventStore) resolveDirty(ctx context.Context, conn *pgx.Conn, driver database.Driver) error {
	version, dirty, err := driver.Version()
	if err != nil || !dirty {
		return err
	}
	at, err := s.dirtyMigrationState(ctx, conn, version)
	if err != nil {
		return err
	}
	recorded := at
	if at == 0 {
		recorded = database.NilVersion
	}
	if err := driver.SetVersion(recorded, false); err != nil {
		return err
	}
	s.logger.WarnContext(ctx, "store: resolved a dirty migration version from the catalog",
		"schema", s.schema, "dirty_version", version, "version", at)
	return nil
}

// dirtyMigrationState returns the version the schema is at, given that
// version dirty is marked dirty: dirty-1 or dirty after an interrupted up
// migration, dirty or dirty+1 after an interrupted down migration.
func (s *EventStore) dirtyMigrationState(ctx context.Context, conn *pgx.Conn, dirty int) (int, error) {
	latest := schema.LatestVersion()
	dirty = max(dirty, 0) // golang-migrate's "no version" (-1) is 0 here
	unresolved := func(reason string, args ...any) error {
		return &core.DirtyMigrationError{Schema: s.schema, Version: dirty, Reason: fmt.Sprintf(reason, args...)}
	}
	// matches reports whether the catalog shows every object of migration v
	// as after it (after) or as before it.
	matches := func(v int, after bool) (bool, error) {
		objects, ok := migrationEffects[v]
		if !ok || len(objects) == 0 {
			return false, unresolved("mire knows no catalog objects of migration %d to check", v)
		}
		for _, object := range objects {
			present, err := s.catalogObjectPresent(ctx, conn, object)
			if err != nil {
				return false, err
			}
			if present != (object.created == after) {
				return false, nil
			}
		}
		return true, nil
	}

	var candidates []int
	if dirty >= 1 {
		before, err := matches(dirty, false)
		if err != nil {
			return 0, err
		}
		if before {
			candidates = append(candidates, dirty-1)
		}
	}
	at := true
	var err error
	if dirty >= 1 {
		if at, err = matches(dirty, true); err != nil {
			return 0, err
		}
	}
	if at && dirty < int(latest) {
		if at, err = matches(dirty+1, false); err != nil {
			return 0, err
		}
	}
	if at {
		candidates = append(candidates, dirty)
	}
	if dirty < int(latest) {
		next, err := matches(dirty+1, true)
		if err != nil {
			return 0, err
		}
		if next {
			candidates = append(candidates, dirty+1)
		}
	}
	switch len(candidates) {
	case 1:
		return candidates[0], nil
	case 0:
		return 0, unresolved("the catalog matches none of versions %d to %d, so a migration stopped part-way and left changes behind",
			max(dirty-1, 0), min(dirty+1, int(latest)))
	default:
		return 0, unresolved("the catalog matches versions %v", candidates)
	}
}

func (s *EventStore) catalogObjectPresent(ctx context.Context, conn *pgx.Conn, object catalogObject) (bool, error) {
	db := s.uncheckedDB(conn)
	switch object.kind {
	case catalogRelation:
		return s.queries.CatalogRelationExists(ctx, db, pgx.Identifier{s.schema, object.name}.Sanitize())
	case catalogFunction:
		// The schema is quoted; the signature is PostgreSQL's syntax.
		return s.queries.CatalogFunctionExists(ctx, db, s.sql.quotedSchema()+"."+object.name)
	case catalogFunctionSource:
		signature, fragment, _ := strings.Cut(object.name, ") ")
		return s.queries.CatalogFunctionSourceContains(ctx, db, &dbsqlc.CatalogFunctionSourceContainsParams{
			QualifiedSignature: s.sql.quotedSchema() + "." + signature + ")",
			Fragment:           fragment,
		})
	case catalogColumn:
		table, column, _ := strings.Cut(object.name, ".")
		return s.queries.CatalogColumnExists(ctx, db, &dbsqlc.CatalogColumnExistsParams{
			QualifiedTable: pgx.Identifier{s.schema, table}.Sanitize(),
			ColumnName:     column,
		})
	}
	return false, fmt.Errorf("unknown catalog object kind %d", object.kind)
}
