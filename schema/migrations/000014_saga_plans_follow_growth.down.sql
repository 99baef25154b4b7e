-- Back to migration 13: the statistics are refreshed as events grows, and
-- the saga table's are left alone.

CREATE OR REPLACE FUNCTION statistics_stale() RETURNS boolean
    LANGUAGE plpgsql
    STABLE
    SECURITY INVOKER
AS $$
BEGIN
    RETURN pg_relation_size('events') / current_setting('block_size')::bigint
           >= 2 * (SELECT relpages FROM pg_catalog.pg_class WHERE oid = 'events'::regclass);
END;
$$;

CREATE OR REPLACE FUNCTION refresh_statistics() RETURNS boolean
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET default_statistics_target = 10
AS $$
BEGIN
    IF NOT statistics_stale() THEN
        RETURN false;
    END IF;
    ANALYZE (SKIP_LOCKED) events (stream_id, stream_version), event_log (stream_id, first_version),
        snapshots (stream_id);
    RETURN true;
END;
$$;

DROP FUNCTION outgrown_statistics(regclass);

DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY['statistics_stale()', 'refresh_statistics()'] LOOP
        EXECUTE format('ALTER FUNCTION %I.%s SET search_path = %I, pg_temp', current_schema(), fn, current_schema());
    END LOOP;
END;
$$;
