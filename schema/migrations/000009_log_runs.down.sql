-- Back to migration 8: one event_log row per event. Every run is expanded
-- into rows for its events, at the same positions; the sequencer and the
-- read functions are migration 6's again.

-- Sweeps wait while the log is rebuilt; events not yet numbered are left to
-- the next sweep.
SELECT pg_advisory_xact_lock(1296385, 'events'::regclass::oid::integer);

DROP FUNCTION read_log_forward(bigint, text[], integer, integer, integer);
DROP FUNCTION read_log_backward(bigint, text[], integer, integer, integer);
DROP FUNCTION read_category_forward(text, bigint, text[], integer, integer, integer);
DROP FUNCTION read_category_backward(text, bigint, text[], integer, integer, integer);
DROP VIEW positioned_events;

ALTER TABLE event_log RENAME TO event_log_runs;
ALTER TABLE event_log_runs RENAME CONSTRAINT event_log_pkey TO event_log_runs_pkey;
ALTER INDEX event_log_category_position_idx RENAME TO event_log_runs_category_position_idx;

CREATE TABLE event_log (
    global_position bigint NOT NULL,
    seq bigint NOT NULL,
    xid xid8 NOT NULL,
    category text COLLATE "C",
    bucket smallint NOT NULL
);

INSERT INTO event_log (global_position, seq, xid, category, bucket)
SELECT run.global_position + (events.stream_version - run.first_version), events.seq, events.xid, run.category, run.bucket
FROM event_log_runs AS run
JOIN events ON events.stream_id = run.stream_id
           AND events.stream_version >= run.first_version
           AND events.stream_version < run.first_version + run.event_count;

DROP TABLE event_log_runs;

ALTER TABLE event_log ADD CONSTRAINT event_log_pkey PRIMARY KEY (global_position);
CREATE UNIQUE INDEX event_log_seq_position_key ON event_log (seq) INCLUDE (global_position);
CREATE INDEX event_log_category_position_idx ON event_log (category, global_position);

CREATE VIEW positioned_events AS
    SELECT log.global_position, events.seq, events.stream_id, events.stream_version, events.category, events.event_id, events.event_type, events.data, events.headers, events.correlation_id, events.causation_id, events.recorded_at, events.xid
    FROM event_log AS log
    JOIN events ON events.xid = log.xid AND events.seq = log.seq;

-- As in migration 4, with the bucket written beside the category.
CREATE OR REPLACE FUNCTION sequence_events() RETURNS bigint
    LANGUAGE plpgsql
    SECURITY DEFINER
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
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'sequence_events() must run in its own transaction, not in one that has written'
            USING ERRCODE = 'active_sql_transaction';
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'sequence_events() must run at READ COMMITTED, not %',
            upper(current_setting('transaction_isolation'))
            USING ERRCODE = 'invalid_transaction_state';
    END IF;

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

    PERFORM pg_advisory_xact_lock(1296385, 'events'::regclass::oid::integer);

    SELECT sweep, system_identifier, pg_snapshot_xmax(snapshot), ARRAY(SELECT pg_snapshot_xip(snapshot))
    INTO seen_sweep, seen_cluster, seen_xmax, seen_xip
    FROM sequencer_sweeps
    ORDER BY sweep DESC
    LIMIT 1;
    IF seen_cluster <> this_cluster OR seen_xmax > pg_snapshot_xmax(pg_current_snapshot()) THEN
        assigned := restore_sequencer(seen_sweep, this_cluster);
    ELSE
        WITH fresh AS (
            SELECT seq, xid, category, stream_id FROM events WHERE xid >= seen_xmax
            UNION ALL
            SELECT seq, xid, category, stream_id FROM events WHERE xid = ANY (seen_xip)
        ), numbered AS (
            INSERT INTO event_log (global_position, seq, xid, category, bucket)
            SELECT (SELECT coalesce(max(global_position), 0) FROM event_log) + row_number() OVER (ORDER BY seq),
                   seq, xid, category, stream_bucket(stream_id)
            FROM fresh
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
    WITH zeroed AS (
        UPDATE events SET xid = '0'
        WHERE xid >= pg_snapshot_xmin(pg_current_snapshot())
        RETURNING seq
    )
    UPDATE event_log SET xid = '0'
    WHERE seq IN (SELECT seq FROM zeroed);

    WITH fresh AS (
        SELECT e.seq, e.xid, e.category, e.stream_id FROM events AS e
        WHERE NOT EXISTS (SELECT 1 FROM event_log AS l WHERE l.seq = e.seq)
    ), numbered AS (
        INSERT INTO event_log (global_position, seq, xid, category, bucket)
        SELECT (SELECT coalesce(max(global_position), 0) FROM event_log) + row_number() OVER (ORDER BY seq),
               seq, xid, category, stream_bucket(stream_id)
        FROM fresh
        RETURNING global_position
    ), saved AS (
        INSERT INTO sequencer_sweeps (sweep, system_identifier, snapshot)
        VALUES (seen_sweep + 1, this_cluster, pg_current_snapshot())
    ), superseded AS (
        DELETE FROM sequencer_sweeps WHERE sweep = seen_sweep
    )
    SELECT count(*) INTO assigned FROM numbered;
    RETURN assigned;
END;
$$;

-- The read functions of migration 5, with a partition: partition_count 0
-- or 1 reads every stream. The bucket is a column of the log, so the
-- filter drops other partitions' rows before their events are joined.

CREATE FUNCTION read_log_forward(from_position bigint, stored_types text[], max_events integer,
                                 partition_count integer, partition_index integer)
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
      AND (partition_count <= 1 OR log.bucket % partition_count = partition_index)
      AND (coalesce(cardinality(stored_types), 0) = 0 OR events.event_type = ANY (stored_types))
    ORDER BY log.global_position
    LIMIT max_events
$$;

CREATE FUNCTION read_log_backward(from_position bigint, stored_types text[], max_events integer,
                                  partition_count integer, partition_index integer)
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
      AND (partition_count <= 1 OR log.bucket % partition_count = partition_index)
      AND (coalesce(cardinality(stored_types), 0) = 0 OR events.event_type = ANY (stored_types))
    ORDER BY log.global_position DESC
    LIMIT max_events
$$;

CREATE FUNCTION read_category_forward(category_name text, from_position bigint, stored_types text[], max_events integer,
                                      partition_count integer, partition_index integer)
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
      AND (partition_count <= 1 OR log.bucket % partition_count = partition_index)
      AND (coalesce(cardinality(stored_types), 0) = 0 OR events.event_type = ANY (stored_types))
    ORDER BY log.global_position
    LIMIT max_events
$$;

CREATE FUNCTION read_category_backward(category_name text, from_position bigint, stored_types text[], max_events integer,
                                       partition_count integer, partition_index integer)
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
      AND (partition_count <= 1 OR log.bucket % partition_count = partition_index)
      AND (coalesce(cardinality(stored_types), 0) = 0 OR events.event_type = ANY (stored_types))
    ORDER BY log.global_position DESC
    LIMIT max_events
$$;

REVOKE EXECUTE ON FUNCTION read_log_forward(bigint, text[], integer, integer, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION read_log_backward(bigint, text[], integer, integer, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION read_category_forward(text, bigint, text[], integer, integer, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION read_category_backward(text, bigint, text[], integer, integer, integer) FROM PUBLIC;

DROP FUNCTION log_runs(logged_event[]);
DROP TYPE logged_event;
ALTER TABLE events DROP COLUMN run_start;

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
    INSERT INTO runtime_roles (role_name) VALUES (runtime::text::name) ON CONFLICT DO NOTHING;
END;
$$;


DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY['sequence_events()', 'restore_sequencer(bigint, bigint)',
                              'read_log_forward(bigint, text[], integer, integer, integer)',
                              'read_log_backward(bigint, text[], integer, integer, integer)',
                              'read_category_forward(text, bigint, text[], integer, integer, integer)',
                              'read_category_backward(text, bigint, text[], integer, integer, integer)',
                              'grant_runtime(regrole)'] LOOP
        EXECUTE format('ALTER FUNCTION %I.%s SET search_path = %I, pg_temp', current_schema(), fn, current_schema());
    END LOOP;
END;
$$;

SELECT grant_runtime(to_regrole(role_name))
FROM runtime_roles
WHERE to_regrole(role_name) IS NOT NULL;
