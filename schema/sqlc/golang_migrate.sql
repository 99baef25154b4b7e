-- Not a migration: golang-migrate creates this table in the store's schema
-- (store.MigrationsTable) before it runs the migrations. Declared here so
-- that sqlc can type the store's queries of it.
CREATE TABLE schema_migrations (
    version bigint NOT NULL PRIMARY KEY,
    dirty boolean NOT NULL
);
