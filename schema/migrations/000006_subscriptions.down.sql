-- Back to migration 5: the runner's tables go, the log loses its buckets,
-- and the sequencer, the read functions and grant_runtime are as they were.

-- Sweeps wait while the log loses its buckets.
SELECT pg_advisory_xact_lock(1296385, 'events'::regclass::oid::integer);

DROP TABLE skipped_events;
DROP TABLE parked_streams;
DROP TABLE subscription_workers;
DROP TABLE subscriptions;

DROP FUNCTION read_log_forward(bigint, text[], integer, integer, integer);
DROP FUNCTION read_log_backward(bigint, text[], integer, integer, integer);
DROP FUNCTION read_category_forward(text, bigint, text[], integer, integer, integer);
DROP FUNCTION read_category_backward(text, bigint, text[], integer, integer, integer);

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

REVOKE EXECUTE ON FUNCTION read_log_forward(bigint, text[], integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION read_log_backward(bigint, text[], integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION read_category_forward(text, bigint, text[], integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION read_category_backward(text, bigint, text[], integer) FROM PUBLIC;

CREATE OR REPLACE FUNCTION sequence_events() RETURNS bigint
    LANGUAGE plpgsql
    SECURITY DEFINER
    -- Without statistics (autovacuum off, a fresh table) the planner can
    -- take "xid >= $1" for a third of events: keep it on the index, and keep
    -- it from compiling a sweep that takes a millisecond.
    SET enable_seqscan = off
    SET jit = off
AS $$
DECLARE
    this_cluster bigint := (pg_control_system()).system_identifier;
    seen_sweep bigint;
    seen_cluster bigint;
    seen_xmax xid8;
    seen_xip xid8[];
    assigned bigint;
BEGIN
    -- The stored snapshot counts this transaction's own xid as finished, so
    -- events it appended after the sweep would never be numbered. A sweep
    -- must be a transaction of its own.
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'sequence_events() must run in its own transaction, not in one that has written'
            USING ERRCODE = 'active_sql_transaction';
    END IF;
    -- In one snapshot for the whole transaction, the sweep would not see
    -- what the sweep it waited for numbered.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'sequence_events() must run at READ COMMITTED, not %',
            upper(current_setting('transaction_isolation'))
            USING ERRCODE = 'invalid_transaction_state';
    END IF;

    -- Without the lock: anything to do? Most calls from readers end here.
    SELECT sweep, system_identifier, pg_snapshot_xmax(snapshot), ARRAY(SELECT pg_snapshot_xip(snapshot))
    INTO seen_sweep, seen_cluster, seen_xmax, seen_xip
    FROM sequencer_sweeps
    ORDER BY sweep DESC
    LIMIT 1;
    IF seen_cluster = this_cluster
       AND seen_xmax <= pg_snapshot_xmax(pg_current_snapshot())
       AND NOT EXISTS (SELECT 1 FROM events WHERE xid >= seen_xmax)
       AND NOT EXISTS (SELECT 1 FROM events WHERE xid = ANY (seen_xip)) THEN
        RETURN 0;
    END IF;

    -- 1296385 is 'mire' in base 36: the lock class of the sequencer.
    PERFORM pg_advisory_xact_lock(1296385, 'events'::regclass::oid::integer);

    -- A new statement, so a new snapshot: the previous sweep has committed.
    SELECT sweep, system_identifier, pg_snapshot_xmax(snapshot), ARRAY(SELECT pg_snapshot_xip(snapshot))
    INTO seen_sweep, seen_cluster, seen_xmax, seen_xip
    FROM sequencer_sweeps
    ORDER BY sweep DESC
    LIMIT 1;
    IF seen_cluster <> this_cluster OR seen_xmax > pg_snapshot_xmax(pg_current_snapshot()) THEN
        assigned := restore_sequencer(seen_sweep, this_cluster);
    ELSE
        -- One statement: the events it numbers and the snapshot it stores
        -- are those of the same snapshot.
        WITH fresh AS (
            SELECT seq, xid, category FROM events WHERE xid >= seen_xmax
            UNION ALL
            SELECT seq, xid, category FROM events WHERE xid = ANY (seen_xip)
        ), numbered AS (
            INSERT INTO event_log (global_position, seq, xid, category)
            SELECT (SELECT coalesce(max(global_position), 0) FROM event_log) + row_number() OVER (ORDER BY seq),
                   seq, xid, category
            FROM fresh
            -- A probe of the seq index per event, as a subplan: written as
            -- NOT EXISTS, the planner may merge-join the whole index.
            WHERE (SELECT l.seq FROM event_log AS l WHERE l.seq = fresh.seq) IS NULL
            RETURNING global_position
        ), saved AS (
            INSERT INTO sequencer_sweeps (sweep, system_identifier, snapshot)
            SELECT seen_sweep + 1, this_cluster, pg_current_snapshot()
            WHERE EXISTS (SELECT 1 FROM fresh)
            RETURNING sweep
        ), superseded AS (
            DELETE FROM sequencer_sweeps
            WHERE sweep = seen_sweep AND EXISTS (SELECT 1 FROM saved)
        )
        SELECT count(*) INTO assigned FROM numbered;
    END IF;

    IF assigned > 0 THEN
        PERFORM pg_notify(current_schema() || '.events',
                          (SELECT max(global_position) FROM event_log)::text);
    END IF;
    RETURN assigned;
END;
$$;

CREATE OR REPLACE FUNCTION restore_sequencer(seen_sweep bigint, this_cluster bigint) RETURNS bigint
    LANGUAGE plpgsql
    SET jit = off
AS $$
DECLARE
    assigned bigint;
BEGIN
    -- Reads join the log to events on (xid, seq): keep both in step.
    WITH zeroed AS (
        UPDATE events SET xid = '0'
        WHERE xid >= pg_snapshot_xmin(pg_current_snapshot())
        RETURNING seq
    )
    UPDATE event_log SET xid = '0'
    WHERE seq IN (SELECT seq FROM zeroed);

    WITH fresh AS (
        SELECT e.seq, e.xid, e.category FROM events AS e
        WHERE NOT EXISTS (SELECT 1 FROM event_log AS l WHERE l.seq = e.seq)
    ), numbered AS (
        INSERT INTO event_log (global_position, seq, xid, category)
        SELECT (SELECT coalesce(max(global_position), 0) FROM event_log) + row_number() OVER (ORDER BY seq),
               seq, xid, category
        FROM fresh
        RETURNING global_position
    ), saved AS (
        -- In the same statement, so in the same snapshot, as the numbering.
        INSERT INTO sequencer_sweeps (sweep, system_identifier, snapshot)
        VALUES (seen_sweep + 1, this_cluster, pg_current_snapshot())
    ), superseded AS (
        DELETE FROM sequencer_sweeps WHERE sweep = seen_sweep
    )
    SELECT count(*) INTO assigned FROM numbered;
    RETURN assigned;
END;
$$;

ALTER TABLE event_log DROP COLUMN bucket;
DROP FUNCTION stream_bucket(text);

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

DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY['sequence_events()', 'restore_sequencer(bigint, bigint)',
                              'read_log_forward(bigint, text[], integer)', 'read_log_backward(bigint, text[], integer)',
                              'read_category_forward(text, bigint, text[], integer)',
                              'read_category_backward(text, bigint, text[], integer)',
                              'grant_runtime(regrole)', 'revoke_runtime(regrole)'] LOOP
        EXECUTE format('ALTER FUNCTION %I.%s SET search_path = %I, pg_temp', current_schema(), fn, current_schema());
    END LOOP;
END;
$$;

SELECT grant_runtime(to_regrole(role_name))
FROM runtime_roles
WHERE to_regrole(role_name) IS NOT NULL;
