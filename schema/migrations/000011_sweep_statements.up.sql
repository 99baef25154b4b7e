-- Sweeps cost less per event, with the same order and guarantees. Runs with
-- search_path set to the store's schema.
--
-- A sweep of 200 single-event appends took about 10 ms of server CPU (50 µs
-- an event, most of what the appends themselves cost under group commit).
-- Three things in it did not depend on the events:
--   * log_runs was a SQL function with SET clauses, which PostgreSQL never
--     inlines: its body was parsed and planned again on every sweep, and its
--     argument (ARRAY(SELECT ...)) kept it from inlining anyway. The sweep's
--     own statement took a custom plan each time (its parameters are the
--     stored snapshot's), planned again too.
--   * Every event went through the grouping that finds batches, though an
--     event appended alone is always a run of its own.
--   * Every run was looked up in the log before it was inserted, to skip
--     runs the log already has (after a restore). The unique index on
--     (stream_id, first_version) makes that same lookup as the run goes in.
-- Now the sweep reads the fresh events and the snapshot it stores in one
-- statement (so in one snapshot, as before) into variables, and numbers
-- them in a second statement with log_runs inlined and generic plans. The
-- insert skips the lookup; a unique violation means the log has one of the
-- runs, and the sweep then runs the statement again with the lookup, as
-- before, numbering only the runs the log lacks.
-- log_runs takes the events of transactions that appended no batch straight
-- to runs of one. The same sweep now takes about 6 ms.

-- log_runs has no SET clause, so that the sweep can inline it: it reads no
-- table, and inlined it is parsed under sequence_events' search_path. Its
-- result is migration 9's for every input: an event of a transaction that
-- appended no batch (run_start is NULL on all of its events) is a run of
-- one there too.
CREATE OR REPLACE FUNCTION log_runs(fresh logged_event[])
    RETURNS TABLE (transaction_last_seq bigint, first_seq bigint, event_count integer, stream_id text,
                   first_version bigint, category text)
    LANGUAGE sql
    IMMUTABLE
AS $$
    WITH batching AS (
        -- Transactions that appended at least one batch.
        SELECT DISTINCT e.xid FROM unnest(fresh) AS e WHERE e.run_start IS NOT NULL
    ), batched AS (
        SELECT e.* FROM unnest(fresh) AS e WHERE e.xid IN (SELECT b.xid FROM batching AS b)
    ), batches AS (
        SELECT e.xid, e.stream_id, coalesce(e.run_start, e.stream_version) AS batch,
               min(e.seq) AS first_seq, max(e.seq) AS last_seq,
               min(e.stream_version) AS first_version, max(e.stream_version) AS last_version,
               count(*) AS events, min(e.category) AS category
        FROM batched AS e
        GROUP BY e.xid, e.stream_id, coalesce(e.run_start, e.stream_version)
    ), checked AS (
        -- A batch is one run when its versions are consecutive and no other
        -- batch of its transaction falls between its first and last event.
        SELECT b.*,
               (b.last_version - b.first_version + 1 = b.events
                AND coalesce(lag(b.last_seq) OVER in_transaction < b.first_seq, true)
                AND coalesce(lead(b.first_seq) OVER in_transaction > b.last_seq, true)) AS whole
        FROM batches AS b
        WINDOW in_transaction AS (PARTITION BY b.xid ORDER BY b.first_seq)
    ), runs AS (
        SELECT e.xid, e.seq AS first_seq, e.seq AS last_seq, 1 AS event_count, e.stream_id,
               e.stream_version AS first_version, e.category
        FROM unnest(fresh) AS e
        WHERE e.xid NOT IN (SELECT b.xid FROM batching AS b)
        UNION ALL
        SELECT c.xid, c.first_seq, c.last_seq, c.events::integer, c.stream_id, c.first_version, c.category
        FROM checked AS c
        WHERE c.whole
        UNION ALL
        SELECT e.xid, e.seq, e.seq, 1, e.stream_id, e.stream_version, e.category
        FROM batched AS e
        JOIN checked AS c ON c.xid = e.xid AND c.stream_id = e.stream_id
                         AND c.batch = coalesce(e.run_start, e.stream_version)
        WHERE NOT c.whole
    )
    SELECT max(runs.last_seq) OVER (PARTITION BY runs.xid), runs.first_seq, runs.event_count, runs.stream_id,
           runs.first_version, runs.category
    FROM runs
$$;

-- sequence_events as migration 9 made it, but for the statements that number
-- the fresh events (see above). CREATE OR REPLACE keeps the owner and the
-- grants; SECURITY DEFINER and every SET clause are restated.
CREATE OR REPLACE FUNCTION sequence_events() RETURNS bigint
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET enable_seqscan = off
    SET jit = off
    -- Every statement here has one good plan whatever the snapshot: the
    -- fresh events come from the xid index, the log's head from the end of
    -- its primary key. Custom plans only cost a planning per sweep.
    SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    this_cluster bigint := (pg_control_system()).system_identifier;
    seen_sweep bigint;
    seen_cluster bigint;
    seen_xmax xid8;
    seen_xip xid8[];
    fresh logged_event[];
    taken pg_snapshot;
    check_logged boolean := false;
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
        -- One statement, so one snapshot: the events committed since the
        -- last sweep, and the snapshot stored for the next one. An event
        -- that commits after it is in neither, and the next sweep finds it.
        SELECT ARRAY(SELECT ROW(seq, xid, stream_id, stream_version, run_start, category)::logged_event
                     FROM events WHERE xid >= seen_xmax
                     UNION ALL
                     SELECT ROW(seq, xid, stream_id, stream_version, run_start, category)::logged_event
                     FROM events WHERE xid = ANY (seen_xip)),
               pg_current_snapshot()
        INTO fresh, taken;
        IF cardinality(fresh) = 0 THEN
            RETURN 0;
        END IF;
        -- The log's unique index on (stream_id, first_version) refuses a
        -- run it already has, which happens only after a restore: then the
        -- statement runs again and looks each run up first, numbering only
        -- those the log lacks. Runs are numbered in the order of their
        -- transaction's last event, then their own.
        LOOP
            BEGIN
                WITH numbered AS (
                    INSERT INTO event_log (global_position, event_count, stream_id, first_version, category, bucket)
                    SELECT head.position
                               + sum(runs.event_count) OVER (ORDER BY runs.transaction_last_seq, runs.first_seq)
                               - runs.event_count + 1,
                           runs.event_count, runs.stream_id, runs.first_version, runs.category,
                           stream_bucket(runs.stream_id)
                    FROM log_runs(fresh) AS runs
                    CROSS JOIN (SELECT coalesce((SELECT global_position + event_count - 1 FROM event_log
                                                 ORDER BY global_position DESC LIMIT 1), 0) AS position) AS head
                    -- The lookup runs only when check_logged is set: one
                    -- index probe per run, as a subplan (as NOT EXISTS the
                    -- planner may merge-join the whole index).
                    WHERE NOT check_logged
                       OR (SELECT logged.first_version FROM event_log AS logged
                           WHERE logged.stream_id = runs.stream_id
                             AND logged.first_version = runs.first_version) IS NULL
                    RETURNING event_count
                ), saved AS (
                    INSERT INTO sequencer_sweeps (sweep, system_identifier, snapshot)
                    VALUES (seen_sweep + 1, this_cluster, taken)
                    RETURNING sweep
                ), superseded AS (
                    DELETE FROM sequencer_sweeps
                    WHERE sweep = seen_sweep AND EXISTS (SELECT 1 FROM saved)
                )
                SELECT coalesce(sum(event_count), 0) INTO assigned FROM numbered;
                EXIT;
            EXCEPTION WHEN unique_violation THEN
                IF check_logged THEN
                    RAISE;
                END IF;
                check_logged := true;
            END;
        END LOOP;
    END IF;

    IF assigned > 0 THEN
        PERFORM pg_notify(current_schema() || '.events',
                          (SELECT global_position + event_count - 1 FROM event_log
                           ORDER BY global_position DESC LIMIT 1)::text);
    END IF;
    RETURN assigned;
END;
$$;

-- search_path = this schema, then pg_temp (see migration 4): CREATE OR
-- REPLACE dropped sequence_events'. log_runs keeps none (see above).
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION %I.sequence_events() SET search_path = %I, pg_temp',
                   current_schema(), current_schema());
END;
$$;
