-- Subscriptions: what the projection runner (the runner module) keeps in
-- the database, and the stream buckets that let it split the log into
-- partitions. Runs with search_path set to the store's schema.
--
-- 1. Each event's row in the global log records its stream's bucket (0 to
--    1023, a stable hash of the stream id), written by the sequencer. A
--    read of one partition of N filters the log on bucket % N and joins only
--    its own streams' events.
-- 2. The read functions take the partition (count 0 or 1: the whole log).
-- 3. One row per subscription partition holds its checkpoint, its fenced
--    lease, the attempts at its next batch (stored before the batch is
--    dispatched) and its state; the workers that may lead it, the streams it
--    parked and the events an operator skipped have tables of their own.

-- Sweeps wait while the log gets its buckets.
SELECT pg_advisory_xact_lock(1296385, 'events'::regclass::oid::integer);

-- The bucket of a stream id: the first 16 bits of its MD5 digest, modulo
-- 1024. core.StreamBucket computes the same in Go; it must never change,
-- since buckets are stored. Immutable and inlined where it is used.
CREATE FUNCTION stream_bucket(stream_id text) RETURNS smallint
    LANGUAGE sql
    IMMUTABLE
    PARALLEL SAFE
    STRICT
RETURN (('x' || substr(md5(stream_id), 1, 4))::bit(16)::integer % 1024)::smallint;

ALTER TABLE event_log ADD COLUMN bucket smallint;
UPDATE event_log AS log SET bucket = stream_bucket(events.stream_id)
FROM events
WHERE events.xid = log.xid AND events.seq = log.seq;
ALTER TABLE event_log ALTER COLUMN bucket SET NOT NULL;

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
DROP FUNCTION read_log_forward(bigint, text[], integer);
DROP FUNCTION read_log_backward(bigint, text[], integer);
DROP FUNCTION read_category_forward(text, bigint, text[], integer);
DROP FUNCTION read_category_backward(text, bigint, text[], integer);

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

-- One row per subscription partition (partition 0 of 1 for an unsplit
-- subscription). Logged, so fence tokens survive a crash: a token handed
-- out before a crash is never handed out again.
CREATE TABLE subscriptions (
    name text COLLATE "C" NOT NULL,
    partition integer NOT NULL,
    partitions integer NOT NULL,
    -- The position up to which the subscription has handled the log.
    checkpoint bigint NOT NULL DEFAULT 0 CHECK (checkpoint >= 0),
    state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'paused', 'failed')),
    -- The lease: held by worker until lease_expires_at (database clock);
    -- fence grows at every acquisition, and a checkpoint commits only under
    -- the fence its worker acquired.
    worker text,
    fence bigint NOT NULL DEFAULT 0,
    lease_expires_at timestamptz,
    -- The batch last dispatched and not checkpointed since, and how many
    -- times it was: stored before each dispatch, so a handler that kills the
    -- process is counted too.
    attempt_from bigint,
    attempt_to bigint,
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    error_position bigint,
    -- Bumped whenever parked_streams changes, so the leader reloads them.
    parked_changes bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, partition),
    CHECK (partitions BETWEEN 1 AND 1024 AND partition >= 0 AND partition < partitions)
);

-- The workers that may lead a subscription, with a heartbeat: leases are
-- spread over the live ones.
CREATE TABLE subscription_workers (
    name text COLLATE "C" NOT NULL,
    worker text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (name, worker)
);

-- Streams whose events wait because one of them failed past the retry limit
-- (the park policy). Their later events are held until a retry or a skip.
CREATE TABLE parked_streams (
    name text COLLATE "C" NOT NULL,
    partition integer NOT NULL,
    stream_id text COLLATE "C" NOT NULL,
    -- The first held event: the one that failed.
    stream_version bigint NOT NULL,
    global_position bigint NOT NULL,
    error text NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now(),
    retry_requested_at timestamptz,
    -- Set with a retry to skip the failed event instead of handling it.
    skip_reason text,
    PRIMARY KEY (name, partition, stream_id),
    FOREIGN KEY (name, partition) REFERENCES subscriptions ON DELETE CASCADE
);

-- Events an operator skipped, and why: a record, never rewritten.
CREATE TABLE skipped_events (
    name text COLLATE "C" NOT NULL,
    partition integer NOT NULL,
    global_position bigint NOT NULL,
    stream_id text COLLATE "C" NOT NULL,
    stream_version bigint NOT NULL,
    reason text NOT NULL,
    error text,
    skipped_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, partition, global_position)
);

-- The runtime role runs the runner: it keeps subscriptions, and may add to
-- the skip record but not rewrite it.
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
    EXECUTE format('GRANT EXECUTE ON FUNCTION %I.sequence_events(), %I.events_stored(uuid[]),'
                   ' %I.read_log_forward(bigint, text[], integer, integer, integer),'
                   ' %I.read_log_backward(bigint, text[], integer, integer, integer),'
                   ' %I.read_category_forward(text, bigint, text[], integer, integer, integer),'
                   ' %I.read_category_backward(text, bigint, text[], integer, integer, integer) TO %s',
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
    EXECUTE format('REVOKE ALL ON %I.events, %I.event_log, %I.snapshots, %I.schema_migrations, %I.positioned_events,'
                   ' %I.subscriptions, %I.subscription_workers, %I.parked_streams, %I.skipped_events FROM %s',
                   schema_name, schema_name, schema_name, schema_name, schema_name,
                   schema_name, schema_name, schema_name, schema_name, runtime);
    EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM %s', pg_get_serial_sequence(format('%I.events', schema_name), 'seq'), runtime);
    EXECUTE format('REVOKE ALL ON FUNCTION %I.sequence_events(), %I.events_stored(uuid[]),'
                   ' %I.read_log_forward(bigint, text[], integer, integer, integer),'
                   ' %I.read_log_backward(bigint, text[], integer, integer, integer),'
                   ' %I.read_category_forward(text, bigint, text[], integer, integer, integer),'
                   ' %I.read_category_backward(text, bigint, text[], integer, integer, integer) FROM %s',
                   schema_name, schema_name, schema_name, schema_name, schema_name, schema_name, runtime);
    EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM %s', schema_name, runtime);
    DELETE FROM runtime_roles WHERE role_name = runtime::text::name;
END;
$$;

-- search_path = this schema, then pg_temp (see migration 4). CREATE OR
-- REPLACE dropped the settings of the functions it replaced: set again.
DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY['sequence_events()', 'restore_sequencer(bigint, bigint)',
                              'read_log_forward(bigint, text[], integer, integer, integer)',
                              'read_log_backward(bigint, text[], integer, integer, integer)',
                              'read_category_forward(text, bigint, text[], integer, integer, integer)',
                              'read_category_backward(text, bigint, text[], integer, integer, integer)',
                              'grant_runtime(regrole)', 'revoke_runtime(regrole)'] LOOP
        EXECUTE format('ALTER FUNCTION %I.%s SET search_path = %I, pg_temp', current_schema(), fn, current_schema());
    END LOOP;
END;
$$;

SELECT grant_runtime(to_regrole(role_name))
FROM runtime_roles
WHERE to_regrole(role_name) IS NOT NULL;
