-- Queries are written against unqualified tables (sqlc resolves them from
-- schema/migrations). The store replaces the "/* TEMPLATE: schema */" marker
-- with its quoted schema name and a dot before running them, so one set of
-- queries serves any schema and never depends on the caller's search_path.

-- name: SchemaCreate :exec
CREATE SCHEMA IF NOT EXISTS /* TEMPLATE: schema_name */mire;
