package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/golang-migrate/migrate/v4"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/schema"
)

// MigrationsTable is the golang-migrate version table, kept inside the
// store's schema so that each schema migrates independently.
const MigrationsTable = "schema_migrations"

// Migrate creates the store's schema if needed and applies every pending
// migration. It is idempotent, and concurrent calls (several processes
// starting at once) are serialized by golang-migrate's advisory lock.
func (s *EventStore) Migrate(ctx context.Context) error {
	return s.withMigrator(ctx, func(m *migrate.Migrate) error {
		if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
			return err
		}
		return nil
	})
}

// MigrateDown reverts every migration, dropping the store's tables and
// functions and so every stored event. The schema itself is left in place.
func (s *EventStore) MigrateDown(ctx context.Context) error {
	return s.withMigrator(ctx, func(m *migrate.Migrate) error {
		if err := m.Down(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
			return err
		}
		return nil
	})
}

// MigrateTo migrates the schema up or down to version, for example one step
// back during a rollback of a deploy. Version 0 is not a migration: use
// [EventStore.MigrateDown] to revert them all.
func (s *EventStore) MigrateTo(ctx context.Context, version uint) error {
	if version == 0 {
		return &core.InvalidInputError{Field: "version", Reason: "is 0; MigrateDown reverts every migration"}
	}
	return s.withMigrator(ctx, func(m *migrate.Migrate) error {
		if err := m.Migrate(version); err != nil && !errors.Is(err, migrate.ErrNoChange) {
			return err
		}
		return nil
	})
}

// MigrationVersion returns the schema's migration version, and whether a
// failed migration left it dirty. Version 0 means nothing was applied.
func (s *EventStore) MigrationVersion(ctx context.Context) (version uint, dirty bool, err error) {
	err = s.withMigrator(ctx, func(m *migrate.Migrate) error {
		version, dirty, err = m.Version()
		if errors.Is(err, migrate.ErrNilVersion) {
			return nil
		}
		return err
	})
	return version, dirty, err
}

func (s *EventStore) withMigrator(ctx context.Context, run func(*migrate.Migrate) error) error {
	defer s.forgetSchemaCheck()
	if err := s.createSchema(ctx); err != nil {
		return err
	}

	// Migrations use unqualified names, so they run on connections whose
	// search_path is only the store's schema.
	connConfig := s.pool.Config().ConnConfig.Copy()
	connConfig.RuntimeParams["search_path"] = s.sql.quotedSchema()
	db := stdlib.OpenDB(*connConfig)
	defer db.Close()

	m, err := newMigrator(ctx, db, s.schema)
	if err != nil {
		return s.interpretError("migrate", err)
	}
	defer m.Close()

	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			m.GracefulStop <- true
		case <-done:
		}
	}()

	if err := run(m); err != nil {
		return s.interpretError("migrate", fmt.Errorf("schema %q: %w", s.schema, err))
	}
	return ctx.Err()
}

func newMigrator(ctx context.Context, db *sql.DB, schemaName string) (*migrate.Migrate, error) {
	if err := db.PingContext(ctx); err != nil {
		return nil, err
	}
	source, err := iofs.New(schema.Migrations, schema.MigrationsDir)
	if err != nil {
		return nil, err
	}
	driver, err := migratepgx.WithInstance(db, &migratepgx.Config{
		SchemaName:      schemaName,
		MigrationsTable: MigrationsTable,
	})
	if err != nil {
		return nil, err
	}
	return migrate.NewWithInstance("iofs", source, "pgx5", driver)
}

func (s *EventStore) createSchema(ctx context.Context) error {
	err := s.queries.SchemaCreate(ctx, s.uncheckedDB(s.pool))
	// Two processes creating the schema at once: one wins, the other hits
	// the catalog's unique index. Either way the schema exists.
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return nil
	}
	return s.interpretError("create schema", err)
}
