package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/golang-migrate/migrate/v4"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/schema"
	"github.com/mire-go/mire/store/internal/dbsqlc"
)

// MigrationsTable is the golang-migrate version table, kept inside the
// store's schema so that each schema migrates independently.
const MigrationsTable = "schema_migrations"

// Migrate creates the store's schema if it is missing and applies every
// pending migration. It is idempotent, and concurrent calls (several
// processes starting at once) are serialized by golang-migrate's advisory
// lock on the schema.
//
// Migrate runs on one connection of the store's pool, holding no other: it
// sets that connection's search_path to the store's schema (migrations use
// unqualified names) and restores it before the connection goes back to the
// pool, or closes the connection when it cannot.
//
// ctx bounds every wait: for a pool connection, for another process's
// migration, and for table locks. Migration 3 takes an ACCESS EXCLUSIVE lock
// on events and streams, so it waits for every open transaction that has
// read or written them and holds off appends and reads until it commits. A
// migration that ctx stops rolls back, and Migrate then marks the schema
// clean at the version before it.
//
// A migration whose connection was lost (a killed backend, a crash) leaves
// its version marked dirty although its transaction rolled back. Migrate
// checks the catalog for what that migration creates and drops: when none of
// it is there it records the version before and runs the migration again,
// when all of it is there it records the migration as done, and otherwise it
// returns a [*core.DirtyMigrationError]; see [EventStore.ForceMigrationVersion].
//
// Migrate refuses "public", and a schema that holds other objects but no
// mire migrations table, unless [Config].AllowSharedSchema is set.
func (s *EventStore) Migrate(ctx context.Context) error {
	return s.withMigrator(ctx, migrateOp{name: "migrate", create: true, resolve: true, run: func(m *migrate.Migrate) error {
		if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
			return err
		}
		return nil
	}})
}

// MigrateDown reverts every migration, dropping the store's tables and
// functions and so every stored event. The schema itself is left in place.
// It resolves a dirty version as [EventStore.Migrate] does.
func (s *EventStore) MigrateDown(ctx context.Context) error {
	return s.withMigrator(ctx, migrateOp{name: "migrate down", create: true, resolve: true, run: func(m *migrate.Migrate) error {
		if err := m.Down(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
			return err
		}
		return nil
	}})
}

// MigrateTo migrates the schema up or down to version, for example one step
// back during a rollback of a deploy. Version 0 is not a migration: use
// [EventStore.MigrateDown] to revert them all. It resolves a dirty version as
// [EventStore.Migrate] does.
func (s *EventStore) MigrateTo(ctx context.Context, version uint) error {
	if version == 0 {
		return &core.InvalidInputError{Field: "version", Reason: "is 0; MigrateDown reverts every migration"}
	}
	return s.withMigrator(ctx, migrateOp{name: "migrate", create: true, resolve: true, run: func(m *migrate.Migrate) error {
		if err := m.Migrate(version); err != nil && !errors.Is(err, migrate.ErrNoChange) {
			return err
		}
		return nil
	}})
}

// MigrationVersion returns the schema's migration version, and whether a
// failed migration left it dirty. Version 0 means nothing was applied,
// including when the schema does not exist; it is not created.
func (s *EventStore) MigrationVersion(ctx context.Context) (version uint, dirty bool, err error) {
	err = s.withMigrator(ctx, migrateOp{name: "migration version", run: func(m *migrate.Migrate) error {
		version, dirty, err = m.Version()
		if errors.Is(err, migrate.ErrNilVersion) {
			return nil
		}
		return err
	}})
	if errors.Is(err, errNoSchema) {
		return 0, false, nil
	}
	return version, dirty, err
}

// ForceMigrationVersion records version (0 for none) as the schema's
// migration version, clean, without running any migration. It is the way
// out of a [*core.DirtyMigrationError]: first make the schema match a
// version by hand, by completing or reverting the interrupted migration (the
// files are in the schema module), then record that version here. Forcing a
// version the schema does not match makes later migrations fail or corrupt
// it.
func (s *EventStore) ForceMigrationVersion(ctx context.Context, version uint) error {
	latest := schema.LatestVersion()
	if version > latest {
		return &core.InvalidInputError{Field: "version", Value: strconv.FormatUint(uint64(version), 10),
			Reason: fmt.Sprintf("the latest migration is %d", latest)}
	}
	forced := int(version)
	if version == 0 {
		forced = -1 // golang-migrate's "no version"
	}
	err := s.withMigrator(ctx, migrateOp{name: "force migration version", run: func(m *migrate.Migrate) error {
		return m.Force(forced)
	}})
	if errors.Is(err, errNoSchema) {
		return &core.InvalidInputError{Field: "Config.Schema", Value: s.schema, Reason: "the schema does not exist"}
	}
	if err == nil {
		s.logger.WarnContext(ctx, "store: migration version forced", "schema", s.schema, "version", version)
	}
	return err
}

// migrateOp is one use of golang-migrate.
type migrateOp struct {
	name string
	// create creates the schema when it is missing; without it a missing
	// schema is errNoSchema.
	create bool
	// resolve takes the migration lock for the whole operation and resolves
	// a dirty version first.
	resolve bool
	run     func(*migrate.Migrate) error
}

var errNoSchema = errors.New("schema does not exist")

func (s *EventStore) withMigrator(ctx context.Context, op migrateOp) error {
	defer s.forgetSchemaCheck()
	database, exists, err := s.prepareSchema(ctx, op.create)
	if err != nil {
		return err
	}
	if !exists {
		return errNoSchema
	}
	lockID, err := migrationLockID(database, s.schema)
	if err != nil {
		return err
	}

	session := s.newMigrationSession(ctx, database, lockID)
	ranMigrations, err := session.run(ctx, op)
	session.close()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && ranMigrations {
		// Stopped in a migration: its version is marked dirty and its
		// transaction rolled back. Leave the schema clean rather than for
		// the next Migrate, with a bounded wait of its own.
		cleanupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		if cleanupErr := s.resolveDirtyAfterStop(cleanupCtx, database, lockID); cleanupErr != nil {
			s.logger.WarnContext(ctx, "store: could not resolve the migration stopped by the context",
				"schema", s.schema, "error", cleanupErr)
		}
		cancel()
	}
	return s.migrationError(ctx, op.name, err)
}

// migrationError returns typed errors as they are and wraps the others in a
// *core.DatabaseError; one that ctx caused is DBTimeout and matches ctx's
// error, whatever the driver made of the cancellation.
func (s *EventStore) migrationError(ctx context.Context, op string, err error) error {
	var invalid *core.InvalidInputError
	var dirty *core.DirtyMigrationError
	if errors.As(err, &invalid) || errors.As(err, &dirty) {
		return err
	}
	err = fmt.Errorf("schema %q: %w", s.schema, err)
	if ctxErr := ctx.Err(); ctxErr != nil {
		if !errors.Is(err, ctxErr) {
			err = fmt.Errorf("%w: %w", ctxErr, err)
		}
		return &core.DatabaseError{Kind: core.DBTimeout, Op: op, Err: err}
	}
	return s.interpretError(op, err)
}

// prepareSchema refuses a schema that belongs to something else, creates
// the schema when it is missing and create is set, and returns the current
// database's name and whether the schema exists.
func (s *EventStore) prepareSchema(ctx context.Context, create bool) (database string, exists bool, err error) {
	info, err := s.queries.SchemaInspect(ctx, s.uncheckedDB(s.pool), &dbsqlc.SchemaInspectParams{
		SchemaName:      s.schema,
		MigrationsTable: MigrationsTable,
	})
	if err != nil {
		return "", false, s.migrationError(ctx, "inspect schema", err)
	}
	if !s.config.AllowSharedSchema && !info.HasMigrationsTable {
		if s.schema == "public" {
			return "", false, &core.InvalidInputError{Field: "Config.Schema", Value: s.schema,
				Reason: "public is shared by every role and application; choose a schema of mire's own, or set Config.AllowSharedSchema"}
		}
		if info.HasObjects {
			return "", false, &core.InvalidInputError{Field: "Config.Schema", Value: s.schema,
				Reason: "the schema holds other objects and no mire migrations table; choose a schema of mire's own, or set Config.AllowSharedSchema"}
		}
	}
	if info.SchemaExists {
		return info.DatabaseName, true, nil
	}
	if !create {
		return info.DatabaseName, false, nil
	}
	err = s.queries.SchemaCreate(ctx, s.uncheckedDB(s.pool))
	// Two processes creating the schema at once: one wins, the other hits
	// the catalog's unique index. Either way the schema exists.
	if isSchemaCreateRace(err) {
		err = nil
	}
	if err != nil {
		return "", false, s.migrationError(ctx, "create schema", err)
	}
	return info.DatabaseName, true, nil
}
