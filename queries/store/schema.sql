-- Queries are written against unqualified tables (sqlc resolves them from
-- schema/migrations). The store replaces the "/* TEMPLATE: schema */" marker
-- with its quoted schema name and a dot before running them, so one set of
-- queries serves any schema and never depends on the caller's search_path.

-- SchemaCreate runs only when SchemaInspect found no schema: CREATE SCHEMA
-- IF NOT EXISTS checks CREATE on the database before it looks, so a schema
-- owner without that privilege could not run it on their own schema.
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

-- SchemaInspect tells whether the schema exists, holds any object, and holds
-- the migrations table, so that Migrate neither needs privileges for what
-- exists nor creates mire's tables in a schema that belongs to something else.
-- name: SchemaInspect :one
SELECT
    EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = @schema_name::text) AS schema_exists,
    (EXISTS (SELECT 1 FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
             WHERE n.nspname = @schema_name::text)
     OR EXISTS (SELECT 1 FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
                WHERE n.nspname = @schema_name::text)
     OR EXISTS (SELECT 1 FROM pg_catalog.pg_type AS t JOIN pg_catalog.pg_namespace AS n ON n.oid = t.typnamespace
                WHERE n.nspname = @schema_name::text))::boolean AS has_objects,
    EXISTS (SELECT 1 FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
            WHERE n.nspname = @schema_name::text AND c.relname = @migrations_table::text) AS has_migrations_table,
    current_database()::text AS database_name;

-- name: MigrationSearchPath :one
SELECT current_setting('search_path')::text AS search_path;

-- MigrationSetSearchPath sets the session's search_path: migrations use
-- unqualified names. The store restores the previous value before the
-- connection goes back to the pool.
-- name: MigrationSetSearchPath :exec
SELECT set_config('search_path', @search_path::text, false);

-- MigrationLock takes golang-migrate's session advisory lock for the schema
-- (the same key its driver uses, so mire and golang-migrate exclude each
-- other). Session advisory locks nest: golang-migrate's own lock call on the
-- same session then returns at once.
-- name: MigrationLock :exec
SELECT pg_advisory_lock(@lock_id::bigint);

-- name: MigrationUnlock :exec
SELECT pg_advisory_unlock(@lock_id::bigint);

-- The catalog probes of the migration recovery. Names are schema-qualified
-- and quoted by the caller.

-- name: CatalogRelationExists :one
SELECT (to_regclass(@qualified_name::text) IS NOT NULL)::boolean AS present;

-- name: CatalogFunctionExists :one
SELECT (to_regprocedure(@qualified_signature::text) IS NOT NULL)::boolean AS present;

-- name: CatalogFunctionSourceContains :one
SELECT coalesce((
    SELECT strpos(p.prosrc, @fragment::text) > 0 FROM pg_catalog.pg_proc AS p
    WHERE p.oid = to_regprocedure(@qualified_signature::text)
), false)::boolean AS present;

-- name: CatalogColumnExists :one
SELECT EXISTS (
    SELECT 1 FROM pg_catalog.pg_attribute
    WHERE attrelid = to_regclass(@qualified_table::text)
      AND attname = @column_name::text
      AND attnum > 0
      AND NOT attisdropped
) AS present;
