-- The log numbers runs of events, not events. Runs with search_path set to
-- the store's schema.
--
-- Before: the sequencer wrote one event_log row per event (its position,
-- seq, xid, category and bucket) and an entry in three indexes for it. On
-- 100-event appends that was a quarter of the append's cost.
--
-- After: one row per run, a stream's events that one append (one batch)
-- wrote: the position of its first event, how many there are, the stream
-- and its first version, which each event of the batch also carries
-- (events.run_start). The run's events are that stream's
-- versions first_version .. first_version + event_count - 1, at consecutive
-- positions, so an event's position is its run's plus its distance from the
-- run's first version. Reads join runs to events on the (stream_id,
-- stream_version) index every event has anyway: a whole-log or category
-- page walks the log's index in position order and reads each run's events
-- as one range, and a stream read finds each event's run with one equality
-- probe on (stream_id, run_start). An append of 100 events costs the
-- sequencer one row.
--
-- Order. A sweep used to number the events committed since the last one in
-- seq order. It now keeps each transaction's events together: transactions
-- in the order of their last event's seq, and each one's events in seq
-- order, cut into runs wherever the stream changes. Every guarantee holds:
--   * Within a transaction, events keep the order they were appended in.
--   * If an event e2 may depend on e1 of another transaction (its writer
--     could see e1), e1's transaction committed before e2 was written, so
--     every seq of e1's transaction is lower than e2's and e1's transaction
--     comes first (or in an earlier sweep). In particular a stream's
--     versions, appended by different transactions, are numbered in order:
--     the next version can only be written once the last one committed.
--   * Positions stay gapless and become visible as a prefix: sweeps are
--     serialized and each numbers what committed since the last, as before.
-- Transactions that were open at the same time have no order between them
-- to keep; their events may now be numbered transaction by transaction
-- rather than interleaved by seq.

-- Sweeps wait while the log is rebuilt. Events committed but not yet
-- numbered need nothing: the next sweep finds them as it always would
-- (they are newer than its stored snapshot) and numbers them as runs.
SELECT pg_advisory_xact_lock(1296385, 'events'::regclass::oid::integer);

-- The first version of the batch an event was appended in (NULL for an
-- event appended alone, as before this migration): events of one batch are
-- one run, and a stream read finds an event's run with one equality probe.
-- Added without a default, so existing rows are not rewritten.
ALTER TABLE events ADD COLUMN run_start bigint;

-- grant_runtime lets appends set it.
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
    INSERT INTO runtime_roles (role_name) VALUES (runtime::text::name) ON CONFLICT DO NOTHING;
END;
$$;

-- The read functions return rows of positioned_events, which reads event_log.
DROP FUNCTION read_log_forward(bigint, text[], integer, integer, integer);
DROP FUNCTION read_log_backward(bigint, text[], integer, integer, integer);
DROP FUNCTION read_category_forward(text, bigint, text[], integer, integer, integer);
DROP FUNCTION read_category_backward(text, bigint, text[], integer, integer, integer);
DROP VIEW positioned_events;

ALTER TABLE event_log RENAME TO event_log_per_event;
ALTER TABLE event_log_per_event RENAME CONSTRAINT event_log_pkey TO event_log_per_event_pkey;
ALTER INDEX event_log_category_position_idx RENAME TO event_log_per_event_category_position_idx;

CREATE TABLE event_log (
    -- The position of the run's first event.
    global_position bigint NOT NULL,
    event_count integer NOT NULL CHECK (event_count >= 1),
    stream_id text COLLATE "C" NOT NULL,
    first_version bigint NOT NULL CHECK (first_version >= 1),
    category text COLLATE "C",
    bucket smallint NOT NULL
);

-- Every event numbered so far becomes a run of one.
INSERT INTO event_log (global_position, event_count, stream_id, first_version, category, bucket)
SELECT log.global_position, 1, events.stream_id, events.stream_version, log.category, log.bucket
FROM event_log_per_event AS log
JOIN events ON events.xid = log.xid AND events.seq = log.seq;

DROP TABLE event_log_per_event;

ALTER TABLE event_log ADD CONSTRAINT event_log_pkey PRIMARY KEY (global_position);
-- Finds the run that holds a stream's version (the last one starting at or
-- before it) from the index alone, for stream reads; and a stream's runs
-- never start at the same version twice.
CREATE UNIQUE INDEX event_log_stream_version_key ON event_log (stream_id, first_version)
    INCLUDE (global_position, event_count);
CREATE INDEX event_log_category_position_idx ON event_log (category, global_position);

-- The row type of a page: a sequenced event with its position.
CREATE VIEW positioned_events AS
    SELECT (log.global_position + (events.stream_version - log.first_version))::bigint AS global_position,
           events.seq, events.stream_id, events.stream_version, events.category, events.event_id, events.event_type,
           events.data, events.headers, events.correlation_id, events.causation_id, events.recorded_at, events.xid
    FROM event_log AS log
    JOIN events ON events.stream_id = log.stream_id
               AND events.stream_version >= log.first_version
               AND events.stream_version < log.first_version + log.event_count;

-- An event to number, as log_runs takes it.
CREATE TYPE logged_event AS (
    seq bigint,
    xid xid8,
    stream_id text COLLATE "C",
    stream_version bigint,
    run_start bigint,
    category text COLLATE "C"
);

-- log_runs cuts committed events into the runs the log numbers: the events
-- of one batch (one transaction, one stream, one run_start: the batch's first
-- version; an event appended alone is a batch of its own). A batch's events
-- have consecutive versions, and no other event of its transaction comes
-- between them in seq order, so each batch is a range of versions and, once
-- numbered, of positions. Each run comes with the seq of its first event
-- and of its transaction's last: numbering runs in the order
-- (transaction_last_seq, first_seq) keeps transactions together, each in
-- the order it appended (see the top of this file).
--
-- The runtime role writes run_start, so nothing may rely on it: a run's
-- versions are its events' own, and a "batch" whose versions have a gap or
-- whose seqs overlap another batch of its transaction (a forged run_start)
-- is numbered event by event, in seq order. One hash aggregate over the
-- events and a window over batches, not windows over every event: a sweep
-- of 100,000 events in 1,000 batches took 145 ms with windows, 60 ms so.
CREATE FUNCTION log_runs(fresh logged_event[])
    RETURNS TABLE (transaction_last_seq bigint, first_seq bigint, event_count integer, stream_id text,
                   first_version bigint, category text)
    LANGUAGE sql
    IMMUTABLE
    SET jit = off
AS $$
    WITH batches AS (
        SELECT e.xid, e.stream_id, coalesce(e.run_start, e.stream_version) AS batch,
               min(e.seq) AS first_seq, max(e.seq) AS last_seq,
               min(e.stream_version) AS first_version, max(e.stream_version) AS last_version,
               count(*) AS events, min(e.category) AS category
        FROM unnest(fresh) AS e
        GROUP BY e.xid, e.stream_id, coalesce(e.run_start, e.stream_version)
    ), checked AS (
        SELECT b.*,
               (b.last_version - b.first_version + 1 = b.events
                AND coalesce(lag(b.last_seq) OVER in_transaction < b.first_seq, true)
                AND coalesce(lead(b.first_seq) OVER in_transaction > b.last_seq, true)) AS whole
        FROM batches AS b
        WINDOW in_transaction AS (PARTITION BY b.xid ORDER BY b.first_seq)
    ), runs AS (
        SELECT c.xid, c.first_seq, c.last_seq, c.events::integer AS event_count, c.stream_id, c.first_version,
               c.category
        FROM checked AS c
        WHERE c.whole
        UNION ALL
        SELECT e.xid, e.seq, e.seq, 1, e.stream_id, e.stream_version, e.category
        FROM unnest(fresh) AS e
        JOIN checked AS c ON c.xid = e.xid AND c.stream_id = e.stream_id
                         AND c.batch = coalesce(e.run_start, e.stream_version)
        WHERE NOT c.whole
    )
    SELECT max(runs.last_seq) OVER (PARTITION BY runs.xid), runs.first_seq, runs.event_count, runs.stream_id,
           runs.first_version, runs.category
    FROM runs
$$;

-- sequence_events, as in migration 6, numbering runs. fresh is what it
-- always was: the events committed since the last sweep. log_runs cuts
-- them into runs, numbered after the head in the order described at the
-- top.
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
            SELECT seq, xid, stream_id, stream_version, run_start, category FROM events WHERE xid >= seen_xmax
            UNION ALL
            SELECT seq, xid, stream_id, stream_version, run_start, category FROM events WHERE xid = ANY (seen_xip)
        ), numbered AS (
            INSERT INTO event_log (global_position, event_count, stream_id, first_version, category, bucket)
            SELECT head.position
                       + sum(runs.event_count) OVER (ORDER BY runs.transaction_last_seq, runs.first_seq)
                       - runs.event_count + 1,
                   runs.event_count, runs.stream_id, runs.first_version, runs.category, stream_bucket(runs.stream_id)
            FROM log_runs(ARRAY(SELECT ROW(seq, xid, stream_id, stream_version, run_start, category)::logged_event FROM fresh))
                AS runs
            CROSS JOIN (SELECT coalesce((SELECT global_position + event_count - 1 FROM event_log
                                         ORDER BY global_position DESC LIMIT 1), 0) AS position) AS head
            -- A run the log has is not numbered again (after a restore,
            -- say). One index probe per run, as a subplan: as NOT EXISTS
            -- the planner may merge-join the whole index.
            WHERE (SELECT logged.first_version FROM event_log AS logged
                   WHERE logged.stream_id = runs.stream_id AND logged.first_version = runs.first_version) IS NULL
            RETURNING event_count
        ), saved AS (
            INSERT INTO sequencer_sweeps (sweep, system_identifier, snapshot)
            SELECT seen_sweep + 1, this_cluster, pg_current_snapshot()
            WHERE EXISTS (SELECT 1 FROM fresh)
            RETURNING sweep
        ), superseded AS (
            DELETE FROM sequencer_sweeps
            WHERE sweep = seen_sweep AND EXISTS (SELECT 1 FROM saved)
        )
        SELECT coalesce(sum(event_count), 0) INTO assigned FROM numbered;
    END IF;

    IF assigned > 0 THEN
        PERFORM pg_notify(current_schema() || '.events',
                          (SELECT global_position + event_count - 1 FROM event_log
                           ORDER BY global_position DESC LIMIT 1)::text);
    END IF;
    RETURN assigned;
END;
$$;

-- restore_sequencer, as in migration 6, numbering runs: every event the log
-- lacks (no run of its stream covers its version), in seq order, once the
-- xids of the other cluster are gone.
CREATE OR REPLACE FUNCTION restore_sequencer(seen_sweep bigint, this_cluster bigint) RETURNS bigint
    LANGUAGE plpgsql
    SET jit = off
AS $$
DECLARE
    assigned bigint;
BEGIN
    -- The log keeps no xids; only events do.
    UPDATE events SET xid = '0'
    WHERE xid >= pg_snapshot_xmin(pg_current_snapshot());

    WITH fresh AS (
        SELECT e.seq, e.xid, e.stream_id, e.stream_version, e.run_start, e.category FROM events AS e
        -- The run that would hold the event is the stream's last one
        -- starting at or before its version: one index probe per event.
        WHERE coalesce((SELECT l.first_version + l.event_count FROM event_log AS l
                        WHERE l.stream_id = e.stream_id AND l.first_version <= e.stream_version
                        ORDER BY l.first_version DESC
                        LIMIT 1), 0) <= e.stream_version
    ), numbered AS (
        INSERT INTO event_log (global_position, event_count, stream_id, first_version, category, bucket)
        SELECT head.position
                   + sum(runs.event_count) OVER (ORDER BY runs.transaction_last_seq, runs.first_seq)
                   - runs.event_count + 1,
               runs.event_count, runs.stream_id, runs.first_version, runs.category, stream_bucket(runs.stream_id)
        FROM log_runs(ARRAY(SELECT ROW(seq, xid, stream_id, stream_version, run_start, category)::logged_event FROM fresh))
            AS runs
        CROSS JOIN (SELECT coalesce((SELECT global_position + event_count - 1 FROM event_log
                                     ORDER BY global_position DESC LIMIT 1), 0) AS position) AS head
        RETURNING event_count
    ), saved AS (
        INSERT INTO sequencer_sweeps (sweep, system_identifier, snapshot)
        VALUES (seen_sweep + 1, this_cluster, pg_current_snapshot())
    ), superseded AS (
        DELETE FROM sequencer_sweeps WHERE sweep = seen_sweep
    )
    SELECT coalesce(sum(event_count), 0) INTO assigned FROM numbered;
    RETURN assigned;
END;
$$;

-- The read functions of migration 6 over runs. A page walks the log's index
-- in position order from the run that holds from_position (the last one
-- starting at or before it) and reads each run's events as one range of
-- the (stream_id, stream_version) index, skipping those before
-- from_position. Runs arrive in position order and each run's events in
-- version order; the incremental sort only orders within a run, which is
-- already in order. The settings pin that plan whatever the statistics say.
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
    SELECT log.global_position + (events.stream_version - log.first_version), events.seq, events.stream_id,
           events.stream_version, events.category, events.event_id, events.event_type, events.data, events.headers,
           events.correlation_id, events.causation_id, events.recorded_at, events.xid
    FROM event_log AS log
    JOIN events ON events.stream_id = log.stream_id
               AND events.stream_version >= log.first_version + (greatest(from_position, log.global_position) - log.global_position)
               AND events.stream_version < log.first_version + log.event_count
    WHERE log.global_position >= coalesce((SELECT max(start.global_position) FROM event_log AS start
                                           WHERE start.global_position <= from_position), from_position)
      AND (partition_count <= 1 OR log.bucket % partition_count = partition_index)
      AND (coalesce(cardinality(stored_types), 0) = 0 OR events.event_type = ANY (stored_types))
    ORDER BY log.global_position, events.stream_version
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
    SELECT log.global_position + (events.stream_version - log.first_version), events.seq, events.stream_id,
           events.stream_version, events.category, events.event_id, events.event_type, events.data, events.headers,
           events.correlation_id, events.causation_id, events.recorded_at, events.xid
    FROM event_log AS log
    JOIN events ON events.stream_id = log.stream_id
               AND events.stream_version >= log.first_version
               AND events.stream_version <= log.first_version
                                             + (least(from_position, log.global_position + log.event_count - 1) - log.global_position)
    WHERE log.global_position <= from_position
      AND (partition_count <= 1 OR log.bucket % partition_count = partition_index)
      AND (coalesce(cardinality(stored_types), 0) = 0 OR events.event_type = ANY (stored_types))
    ORDER BY log.global_position DESC, events.stream_version DESC
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
    SELECT log.global_position + (events.stream_version - log.first_version), events.seq, events.stream_id,
           events.stream_version, events.category, events.event_id, events.event_type, events.data, events.headers,
           events.correlation_id, events.causation_id, events.recorded_at, events.xid
    FROM event_log AS log
    JOIN events ON events.stream_id = log.stream_id
               AND events.stream_version >= log.first_version + (greatest(from_position, log.global_position) - log.global_position)
               AND events.stream_version < log.first_version + log.event_count
    WHERE log.category = category_name
      AND log.global_position >= coalesce((SELECT max(start.global_position) FROM event_log AS start
                                           WHERE start.category = category_name
                                             AND start.global_position <= from_position), from_position)
      AND (partition_count <= 1 OR log.bucket % partition_count = partition_index)
      AND (coalesce(cardinality(stored_types), 0) = 0 OR events.event_type = ANY (stored_types))
    ORDER BY log.global_position, events.stream_version
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
    SELECT log.global_position + (events.stream_version - log.first_version), events.seq, events.stream_id,
           events.stream_version, events.category, events.event_id, events.event_type, events.data, events.headers,
           events.correlation_id, events.causation_id, events.recorded_at, events.xid
    FROM event_log AS log
    JOIN events ON events.stream_id = log.stream_id
               AND events.stream_version >= log.first_version
               AND events.stream_version <= log.first_version
                                             + (least(from_position, log.global_position + log.event_count - 1) - log.global_position)
    WHERE log.category = category_name AND log.global_position <= from_position
      AND (partition_count <= 1 OR log.bucket % partition_count = partition_index)
      AND (coalesce(cardinality(stored_types), 0) = 0 OR events.event_type = ANY (stored_types))
    ORDER BY log.global_position DESC, events.stream_version DESC
    LIMIT max_events
$$;

REVOKE EXECUTE ON FUNCTION read_log_forward(bigint, text[], integer, integer, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION read_log_backward(bigint, text[], integer, integer, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION read_category_forward(text, bigint, text[], integer, integer, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION read_category_backward(text, bigint, text[], integer, integer, integer) FROM PUBLIC;
-- Only the sequencer's functions call it.
REVOKE EXECUTE ON FUNCTION log_runs(logged_event[]) FROM PUBLIC;

-- search_path = this schema, then pg_temp (see migration 4); CREATE OR
-- REPLACE dropped the sequencer's.
DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY['sequence_events()', 'restore_sequencer(bigint, bigint)', 'log_runs(logged_event[])',
                              'grant_runtime(regrole)',
                              'read_log_forward(bigint, text[], integer, integer, integer)',
                              'read_log_backward(bigint, text[], integer, integer, integer)',
                              'read_category_forward(text, bigint, text[], integer, integer, integer)',
                              'read_category_backward(text, bigint, text[], integer, integer, integer)'] LOOP
        EXECUTE format('ALTER FUNCTION %I.%s SET search_path = %I, pg_temp', current_schema(), fn, current_schema());
    END LOOP;
END;
$$;

-- The new log and view are new objects: roles with runtime rights get
-- theirs again (roles dropped since are skipped).
SELECT grant_runtime(to_regrole(role_name))
FROM runtime_roles
WHERE to_regrole(role_name) IS NOT NULL;
