-- Queries are written against unqualified tables (sqlc resolves them from
-- schema/migrations). The store replaces the "/* TEMPLATE: schema */" marker
-- with its quoted schema name and a dot before running them, so one set of
-- queries serves any schema and never depends on the caller's search_path.

-- name: SchemaCreate :exec
CREATE SCHEMA IF NOT EXISTS /* TEMPLATE: schema_name */mire;

-- name: SchemaVersion :one
-- The schema's migration version and whether a failed migration left it
-- dirty (golang-migrate's table: one row), and the isolation level the
-- connection's transactions default to.
SELECT version, dirty, current_setting('default_transaction_isolation')::text AS default_isolation
FROM /* TEMPLATE: schema */schema_migrations
LIMIT 1;

-- name: RuntimeGrant :exec
-- See grant_runtime in schema/migrations. The name is quoted, so it is
-- matched exactly.
SELECT /* TEMPLATE: schema */grant_runtime(quote_ident(@role_name::text)::regrole);

-- name: RuntimeRevoke :exec
SELECT /* TEMPLATE: schema */revoke_runtime(quote_ident(@role_name::text)::regrole);
