// Package schema embeds mire's PostgreSQL migrations so that the store can
// run them (golang-migrate, iofs source) and sqlc can read the same files as
// the schema of its queries: every table is defined once, here.
//
// Migrations are numbered NNNNNN_name.up.sql / .down.sql. They use
// unqualified names and run with search_path set to the store's schema, so
// one set of files serves any schema name.
package schema

import "embed"

// Migrations holds the migration files under "migrations/".
//
//go:embed migrations/*.sql
var Migrations embed.FS

// MigrationsDir is the directory inside [Migrations] that holds the files.
const MigrationsDir = "migrations"
