-- Back to migration 10: sweeps number fresh events in one statement, with
-- log_runs called (not inlined) and a lookup of every run in the log.

CREATE OR REPLACE FUNCTION log_runs(fresh logged_event[])
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

DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY['sequence_events()', 'log_runs(logged_event[])'] LOOP
        EXECUTE format('ALTER FUNCTION %I.%s SET search_path = %I, pg_temp', current_schema(), fn, current_schema());
    END LOOP;
END;
$$;
