-- Plans that no longer fit the tables are remade as the log grows, and a
-- retried append and the log's head are found with plans that do not
-- depend on statistics. Runs with search_path set to the store's schema.
--
-- The store's statements are prepared once per connection, and after a few
-- runs PostgreSQL keeps a generic plan for each, made from the statistics
-- of the moment; nothing makes it again until the statistics change. Made
-- while the tables were a page or two (autovacuum's first ANALYZE, or one
-- by hand, then autovacuum off), generic plans scanned the whole table: the
-- planner saw a sequential scan of a page as cheaper than an index descent.
-- On a connection opened early, an append, a load or a stream read then
-- read every event of its stream or of the log (a read of a one-event
-- stream: 0.4 ms with 100 events, 40 ms with 100,000), for as long as
-- autovacuum stayed off.
--
-- Pinning each of those statements' plans with settings, as the log and
-- category reads are (migrations 5 and 12), means a PL/pgSQL call per
-- statement: measured, it cost single appends, saves and stream reads 5 to
-- 10% of their throughput, and loads from a snapshot a quarter. Instead
-- the store refreshes the statistics after a sweep whenever the events
-- table has doubled since they were taken (statistics_stale,
-- refresh_statistics). ANALYZE
-- invalidates every connection's plans of the tables, and the planner
-- scales the statistics to a table's current size, so no plan outlives a
-- doubling of the table. With autovacuum on, its ANALYZEs and VACUUMs keep
-- the statistics fresher than that, and the store runs one only while the
-- table is a few pages. A refresh is an ANALYZE of a few columns from a
-- small sample, once per doubling (14 ms at 1.5 million events on a
-- development machine).
--
-- The lookups of a retried append's event ids, and the log's head, are
-- rare enough to be pinned instead: the first scanned every event even on a
-- table without statistics.

-- The position of the log's last event, 0 for an empty log.
CREATE FUNCTION log_head() RETURNS bigint
    LANGUAGE plpgsql
    STABLE
    SET enable_seqscan = off
    SET enable_bitmapscan = off
    SET jit = off
    SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN coalesce((SELECT last.global_position + last.event_count - 1 FROM event_log AS last
                     ORDER BY last.global_position DESC
                     LIMIT 1), 0);
END;
$$;

-- The stored events among event_ids, with their positions (0 for none yet),
-- for telling a retried append from a conflict. Planned as a join of the
-- ids to events, it scanned every event when made on a young table.
CREATE FUNCTION stored_events(event_ids uuid[])
    RETURNS SETOF positioned_events
    LANGUAGE plpgsql
    STABLE
    SET enable_seqscan = off
    SET enable_bitmapscan = off
    SET enable_hashjoin = off
    SET enable_mergejoin = off
    SET max_parallel_workers_per_gather = 0
    SET jit = off
    SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
        SELECT coalesce((
                   -- The run holding the event starts at its batch's first
                   -- version (an event appended alone starts its own run).
                   SELECT run.global_position + (stored.stream_version - run.first_version)
                   FROM event_log AS run
                   WHERE run.stream_id = stored.stream_id
                     AND run.first_version = coalesce(stored.run_start, stored.stream_version)
                     AND stored.stream_version < run.first_version + run.event_count
                   LIMIT 1), 0)::bigint,
               stored.seq, stored.stream_id, stored.stream_version, stored.category, stored.event_id,
               stored.event_type, stored.data, stored.headers, stored.correlation_id, stored.causation_id,
               stored.recorded_at, stored.xid
        FROM events AS stored
        WHERE stored.event_id = ANY (event_ids);
END;
$$;

REVOKE EXECUTE ON FUNCTION log_head() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION stored_events(uuid[]) FROM PUBLIC;

-- Whether the events table has doubled since its statistics were taken
-- (relpages is its size then). The store asks it in the sweep's statement,
-- after a sweep that numbered events, so that a refresh costs no round trip
-- until one is due.
CREATE FUNCTION statistics_stale() RETURNS boolean
    LANGUAGE plpgsql
    STABLE
AS $$
BEGIN
    RETURN pg_relation_size('events') / current_setting('block_size')::bigint
           >= 2 * (SELECT relpages FROM pg_catalog.pg_class WHERE oid = 'events'::regclass);
END;
$$;

-- Refreshes the statistics the store's plans are made from when they are
-- stale (see statistics_stale), and returns whether it did. The store runs
-- it in a statement of its own after a sweep that found them stale, so that
-- a slow or failed refresh never holds up or fails the numbering. Only the
-- columns the store's statements select on, from a sample of 3,000 rows (a
-- few milliseconds at a million events): plans need the table's size more
-- than fine statistics. Skipped while a VACUUM or ANALYZE of the tables
-- runs, which refreshes them too. SECURITY DEFINER: ANALYZE needs the
-- tables' owner.
CREATE FUNCTION refresh_statistics() RETURNS boolean
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

REVOKE EXECUTE ON FUNCTION statistics_stale() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION refresh_statistics() FROM PUBLIC;

-- grant_runtime and revoke_runtime cover the new functions.
CREATE OR REPLACE FUNCTION grant_runtime(runtime regrole) RETURNS void
    LANGUAGE plpgsql
AS $$
DECLARE
    schema_name name := current_schema();
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %s', schema_name, runtime);
    EXECUTE format('GRANT SELECT ON %I.events, %I.event_log, %I.snapshots, %I.schema_migrations, %I.positioned_events TO %s',
                   schema_name, schema_name, schema_name, schema_name, schema_name, runtime);
    -- The columns an append sets; seq, xid and recorded_at take their
    -- defaults, which the sequencer relies on. run_start only shapes runs.
    EXECUTE format('GRANT INSERT (stream_id, stream_version, category, event_id, event_type, data, headers,'
                   ' correlation_id, causation_id, run_start) ON %I.events TO %s', schema_name, runtime);
    EXECUTE format('GRANT USAGE ON SEQUENCE %s TO %s', pg_get_serial_sequence(format('%I.events', schema_name), 'seq'), runtime);
    -- Snapshots are a cache of state, not history: the latest replaces the last.
    EXECUTE format('GRANT INSERT (stream_id, stream_version, schema_version, state),'
                   ' UPDATE (stream_version, schema_version, state, taken_at) ON %I.snapshots TO %s',
                   schema_name, runtime);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON %I.subscriptions TO %s', schema_name, runtime);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.subscription_workers, %I.parked_streams TO %s',
                   schema_name, schema_name, runtime);
    EXECUTE format('GRANT SELECT, INSERT ON %I.skipped_events TO %s', schema_name, runtime);
    -- An index of the journals, which hold the history.
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON %I.saga_instances TO %s', schema_name, runtime);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %I.sequence_events(), %I.events_stored(uuid[]), %I.append_refusal(text, uuid[]),'
                   ' %I.read_log_forward(bigint, text[], integer, integer, integer),'
                   ' %I.read_log_backward(bigint, text[], integer, integer, integer),'
                   ' %I.read_category_forward(text, bigint, text[], integer, integer, integer),'
                   ' %I.read_category_backward(text, bigint, text[], integer, integer, integer) TO %s',
                   schema_name, schema_name, schema_name, schema_name, schema_name, schema_name, schema_name, runtime);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %I.log_head(), %I.stored_events(uuid[]), %I.statistics_stale(), %I.refresh_statistics() TO %s',
                   schema_name, schema_name, schema_name, schema_name, runtime);
    INSERT INTO runtime_roles (role_name) VALUES (runtime::text::name) ON CONFLICT DO NOTHING;
END;
$$;

CREATE OR REPLACE FUNCTION revoke_runtime(runtime regrole) RETURNS void
    LANGUAGE plpgsql
AS $$
DECLARE
    schema_name name := current_schema();
BEGIN
    EXECUTE format('REVOKE ALL ON %I.events, %I.event_log, %I.snapshots, %I.schema_migrations, %I.positioned_events,'
                   ' %I.subscriptions, %I.subscription_workers, %I.parked_streams, %I.skipped_events,'
                   ' %I.saga_instances FROM %s',
                   schema_name, schema_name, schema_name, schema_name, schema_name,
                   schema_name, schema_name, schema_name, schema_name, schema_name, runtime);
    EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM %s', pg_get_serial_sequence(format('%I.events', schema_name), 'seq'), runtime);
    EXECUTE format('REVOKE ALL ON FUNCTION %I.sequence_events(), %I.events_stored(uuid[]), %I.append_refusal(text, uuid[]),'
                   ' %I.read_log_forward(bigint, text[], integer, integer, integer),'
                   ' %I.read_log_backward(bigint, text[], integer, integer, integer),'
                   ' %I.read_category_forward(text, bigint, text[], integer, integer, integer),'
                   ' %I.read_category_backward(text, bigint, text[], integer, integer, integer) FROM %s',
                   schema_name, schema_name, schema_name, schema_name, schema_name, schema_name, schema_name, runtime);
    EXECUTE format('REVOKE ALL ON FUNCTION %I.log_head(), %I.stored_events(uuid[]), %I.statistics_stale(), %I.refresh_statistics() FROM %s',
                   schema_name, schema_name, schema_name, schema_name, runtime);
    EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM %s', schema_name, runtime);
    DELETE FROM runtime_roles WHERE role_name = runtime::text::name;
END;
$$;

-- search_path = this schema, then pg_temp (see migration 4), for the new
-- functions and the two CREATE OR REPLACE dropped it from.
DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY['grant_runtime(regrole)', 'revoke_runtime(regrole)',
                              'log_head()', 'stored_events(uuid[])', 'statistics_stale()',
                              'refresh_statistics()'] LOOP
        EXECUTE format('ALTER FUNCTION %I.%s SET search_path = %I, pg_temp', current_schema(), fn, current_schema());
    END LOOP;
END;
$$;

-- Roles with runtime rights get the new functions (roles dropped since are
-- skipped).
SELECT grant_runtime(to_regrole(role_name))
FROM runtime_roles
WHERE to_regrole(role_name) IS NOT NULL;
