-- Whole-log and category reads, and the check of a refused append, whose
-- plans do not depend on statistics. Runs with search_path set to the
-- store's schema.
--
-- A page of the log is a keyset read: the next max_events positions from a
-- position on, joined to their events. The only good plan walks the log's
-- index in order and probes events' (xid, seq) index per row, stopping at
-- the page's end. Planned as plain statements, without statistics
-- (autovacuum off, a young table) or with custom plans for "from position
-- 1", PostgreSQL chose a bitmap scan of every later entry of the category
-- and a sort (a category read was quadratic in the log's size), or hash
-- joins with parallel workers for whole-log pages. These functions pin the
-- plan with their settings, which hold only while they run.

-- The row type of a page: a sequenced event with its position.
CREATE VIEW positioned_events AS
    SELECT log.global_position, events.seq, events.stream_id, events.stream_version, events.category, events.event_id, events.event_type, events.data, events.headers, events.correlation_id, events.causation_id, events.recorded_at, events.xid
    FROM event_log AS log
    JOIN events ON events.xid = log.xid AND events.seq = log.seq;

-- The page of the whole log from from_position on.
CREATE FUNCTION read_log_forward(from_position bigint, stored_types text[], max_events integer)
    RETURNS SETOF positioned_events
    LANGUAGE sql
    STABLE
    SET enable_seqscan = off
    SET enable_bitmapscan = off
    SET enable_hashjoin = off
    SET enable_mergejoin = off
    SET enable_sort = off
    SET max_parallel_workers_per_gather = 0
    SET jit = off
AS $$
    SELECT log.global_position, events.seq, events.stream_id, events.stream_version, events.category, events.event_id, events.event_type, events.data, events.headers, events.correlation_id, events.causation_id, events.recorded_at, events.xid
    FROM event_log AS log
    JOIN events ON events.xid = log.xid AND events.seq = log.seq
    WHERE log.global_position >= from_position
      AND (coalesce(cardinality(stored_types), 0) = 0 OR events.event_type = ANY (stored_types))
    ORDER BY log.global_position 
    LIMIT max_events
$$;

-- The page of the whole log from from_position down.
CREATE FUNCTION read_log_backward(from_position bigint, stored_types text[], max_events integer)
    RETURNS SETOF positioned_events
    LANGUAGE sql
    STABLE
    SET enable_seqscan = off
    SET enable_bitmapscan = off
    SET enable_hashjoin = off
    SET enable_mergejoin = off
    SET enable_sort = off
    SET max_parallel_workers_per_gather = 0
    SET jit = off
AS $$
    SELECT log.global_position, events.seq, events.stream_id, events.stream_version, events.category, events.event_id, events.event_type, events.data, events.headers, events.correlation_id, events.causation_id, events.recorded_at, events.xid
    FROM event_log AS log
    JOIN events ON events.xid = log.xid AND events.seq = log.seq
    WHERE log.global_position <= from_position
      AND (coalesce(cardinality(stored_types), 0) = 0 OR events.event_type = ANY (stored_types))
    ORDER BY log.global_position DESC
    LIMIT max_events
$$;

-- The page of a category's events from from_position on.
CREATE FUNCTION read_category_forward(category_name text, from_position bigint, stored_types text[], max_events integer)
    RETURNS SETOF positioned_events
    LANGUAGE sql
    STABLE
    SET enable_seqscan = off
    SET enable_bitmapscan = off
    SET enable_hashjoin = off
    SET enable_mergejoin = off
    SET enable_sort = off
    SET max_parallel_workers_per_gather = 0
    SET jit = off
AS $$
    SELECT log.global_position, events.seq, events.stream_id, events.stream_version, events.category, events.event_id, events.event_type, events.data, events.headers, events.correlation_id, events.causation_id, events.recorded_at, events.xid
    FROM event_log AS log
    JOIN events ON events.xid = log.xid AND events.seq = log.seq
    WHERE log.category = category_name AND log.global_position >= from_position
      AND (coalesce(cardinality(stored_types), 0) = 0 OR events.event_type = ANY (stored_types))
    ORDER BY log.global_position 
    LIMIT max_events
$$;

-- The page of a category's events from from_position down.
CREATE FUNCTION read_category_backward(category_name text, from_position bigint, stored_types text[], max_events integer)
    RETURNS SETOF positioned_events
    LANGUAGE sql
    STABLE
    SET enable_seqscan = off
    SET enable_bitmapscan = off
    SET enable_hashjoin = off
    SET enable_mergejoin = off
    SET enable_sort = off
    SET max_parallel_workers_per_gather = 0
    SET jit = off
AS $$
    SELECT log.global_position, events.seq, events.stream_id, events.stream_version, events.category, events.event_id, events.event_type, events.data, events.headers, events.correlation_id, events.causation_id, events.recorded_at, events.xid
    FROM event_log AS log
    JOIN events ON events.xid = log.xid AND events.seq = log.seq
    WHERE log.category = category_name AND log.global_position <= from_position
      AND (coalesce(cardinality(stored_types), 0) = 0 OR events.event_type = ANY (stored_types))
    ORDER BY log.global_position DESC
    LIMIT max_events
$$;

-- Whether any of an append's event ids is stored: the question the store
-- asks after a refused append, once per conflict. As a plain statement its
-- generic plan, made while events was small, scanned the whole table on
-- every conflict from then on.
CREATE FUNCTION events_stored(event_ids uuid[]) RETURNS boolean
    LANGUAGE sql
    STABLE
    SET enable_seqscan = off
    SET enable_bitmapscan = off
    SET jit = off
AS $$
    SELECT EXISTS (SELECT 1 FROM events WHERE event_id = ANY (event_ids))
$$;

-- Invoker's rights: a role reads what it may read. Executable by the roles
-- grant_runtime names, not by PUBLIC.
REVOKE EXECUTE ON FUNCTION read_log_forward(bigint, text[], integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION read_log_backward(bigint, text[], integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION read_category_forward(text, bigint, text[], integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION read_category_backward(text, bigint, text[], integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION events_stored(uuid[]) FROM PUBLIC;


-- grant_runtime and revoke_runtime cover the read functions, and every role
-- already given runtime rights gets them.
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
    -- defaults, which the sequencer relies on.
    EXECUTE format('GRANT INSERT (stream_id, stream_version, category, event_id, event_type, data, headers,'
                   ' correlation_id, causation_id) ON %I.events TO %s', schema_name, runtime);
    EXECUTE format('GRANT USAGE ON SEQUENCE %s TO %s', pg_get_serial_sequence(format('%I.events', schema_name), 'seq'), runtime);
    -- Snapshots are a cache of state, not history: the latest replaces the last.
    EXECUTE format('GRANT INSERT (stream_id, stream_version, schema_version, state),'
                   ' UPDATE (stream_version, schema_version, state, taken_at) ON %I.snapshots TO %s',
                   schema_name, runtime);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %I.sequence_events(), %I.read_log_forward(bigint, text[], integer),'
                   ' %I.read_log_backward(bigint, text[], integer), %I.read_category_forward(text, bigint, text[], integer),'
                   ' %I.read_category_backward(text, bigint, text[], integer), %I.events_stored(uuid[]) TO %s',
                   schema_name, schema_name, schema_name, schema_name, schema_name, schema_name, runtime);
    INSERT INTO runtime_roles (role_name) VALUES (runtime::text::name) ON CONFLICT DO NOTHING;
END;
$$;

CREATE OR REPLACE FUNCTION revoke_runtime(runtime regrole) RETURNS void
    LANGUAGE plpgsql
AS $$
DECLARE
    schema_name name := current_schema();
BEGIN
    EXECUTE format('REVOKE ALL ON %I.events, %I.event_log, %I.snapshots, %I.schema_migrations, %I.positioned_events FROM %s',
                   schema_name, schema_name, schema_name, schema_name, schema_name, runtime);
    EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM %s', pg_get_serial_sequence(format('%I.events', schema_name), 'seq'), runtime);
    EXECUTE format('REVOKE ALL ON FUNCTION %I.sequence_events(), %I.read_log_forward(bigint, text[], integer),'
                   ' %I.read_log_backward(bigint, text[], integer), %I.read_category_forward(text, bigint, text[], integer),'
                   ' %I.read_category_backward(text, bigint, text[], integer), %I.events_stored(uuid[]) FROM %s',
                   schema_name, schema_name, schema_name, schema_name, schema_name, schema_name, runtime);
    EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM %s', schema_name, runtime);
    DELETE FROM runtime_roles WHERE role_name = runtime::text::name;
END;
$$;


-- search_path = this schema, then pg_temp (see migration 4). CREATE OR
-- REPLACE dropped grant_runtime's and revoke_runtime's settings: set again.
DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY['read_log_forward(bigint, text[], integer)', 'read_log_backward(bigint, text[], integer)',
                              'read_category_forward(text, bigint, text[], integer)',
                              'read_category_backward(text, bigint, text[], integer)', 'events_stored(uuid[])',
                              'grant_runtime(regrole)', 'revoke_runtime(regrole)'] LOOP
        EXECUTE format('ALTER FUNCTION %I.%s SET search_path = %I, pg_temp', current_schema(), fn, current_schema());
    END LOOP;
END;
$$;

-- Roles dropped since they were granted are skipped.
SELECT grant_runtime(to_regrole(role_name))
FROM runtime_roles
WHERE to_regrole(role_name) IS NOT NULL;
