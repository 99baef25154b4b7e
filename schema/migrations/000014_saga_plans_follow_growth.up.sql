-- The saga table's plans follow its growth, as migration 13 made the
-- log's follow the log's. Runs with search_path set to the store's schema.
--
-- saga_instances gains a row per saga and keeps it once the saga ends. With
-- statistics taken while it held a handful of rows (autovacuum's first
-- ANALYZE, or one by hand, then autovacuum off), the generic plan of every
-- saga statement scanned the whole table: the planner saw a sequential scan
-- of a page as cheaper than an index descent. At 200,000 ended sagas, a
-- saga's lookup, the claim of due sagas, the next wake-up and the routing
-- of a reply each read 3,076 pages (26-31 ms) instead of three. Without
-- statistics the planner takes the indexes, as it does once they are
-- fresh.
--
-- statistics_stale now also reports a saga table that has doubled since its
-- statistics were taken, and refresh_statistics analyzes each table that
-- has. Sagas append their journals, so the sweeps that ask keep running
-- while sagas accumulate. A table of no pages is never stale: a store
-- whose saga table stays empty never analyzes it, and an empty events
-- table never calls for a refresh either.

-- Whether table has at least doubled since its statistics were taken
-- (relpages is its size then); never for a table of no pages.
CREATE FUNCTION outgrown_statistics(table_name regclass) RETURNS boolean
    LANGUAGE plpgsql
    STABLE
AS $$
DECLARE
    pages bigint := pg_relation_size(table_name) / current_setting('block_size')::bigint;
BEGIN
    RETURN pages > 0 AND pages >= 2 * (SELECT relpages FROM pg_catalog.pg_class WHERE oid = table_name);
END;
$$;

-- SECURITY DEFINER, as refresh_statistics is, so that runtime roles need
-- no right on outgrown_statistics: it reads two sizes and runs nothing else.
CREATE OR REPLACE FUNCTION statistics_stale() RETURNS boolean
    LANGUAGE plpgsql
    STABLE
    SECURITY DEFINER
AS $$
BEGIN
    RETURN outgrown_statistics('events') OR outgrown_statistics('saga_instances');
END;
$$;

-- As migration 13's, for each table whose statistics are stale: the log's
-- three tables when events has doubled, the saga table when it has. Only
-- the columns the statements select on.
CREATE OR REPLACE FUNCTION refresh_statistics() RETURNS boolean
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET default_statistics_target = 10
AS $$
DECLARE
    refreshed boolean := false;
BEGIN
    IF outgrown_statistics('events') THEN
        ANALYZE (SKIP_LOCKED) events (stream_id, stream_version), event_log (stream_id, first_version),
            snapshots (stream_id);
        refreshed := true;
    END IF;
    IF outgrown_statistics('saga_instances') THEN
        ANALYZE (SKIP_LOCKED) saga_instances (name, id, correlation_id, status, wake_at);
        refreshed := true;
    END IF;
    RETURN refreshed;
END;
$$;

-- Only statistics_stale and refresh_statistics call it, as the owner.
REVOKE EXECUTE ON FUNCTION outgrown_statistics(regclass) FROM PUBLIC;

-- search_path = this schema, then pg_temp (see migration 4): CREATE OR
-- REPLACE dropped the two functions', and the new one has none yet.
DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY['outgrown_statistics(regclass)', 'statistics_stale()', 'refresh_statistics()'] LOOP
        EXECUTE format('ALTER FUNCTION %I.%s SET search_path = %I, pg_temp', current_schema(), fn, current_schema());
    END LOOP;
END;
$$;
