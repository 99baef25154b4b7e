-- Least privilege, a sequencer that trusts nothing it runs beside, and a
-- sweep whose cost stays flat. Runs with search_path set to the store's
-- schema.
--
-- 1. A runtime role appends, reads, loads, saves, snapshots and sequences,
--    but cannot rewrite or hide history: grant_runtime(role) below gives it
--    SELECT, INSERT of the columns an append sets (never seq, xid or
--    recorded_at, so it cannot forge an event the sequencer would never
--    number), and EXECUTE on sequence_events(), which runs with the owner's
--    rights. Nothing else: no UPDATE, DELETE or TRUNCATE on events, no write
--    to event_log or the sequencer's state.
-- 2. The sequencer's functions pin search_path to this schema and pg_temp,
--    last: a connection's temporary table named events or event_log can no
--    longer shadow the real one inside them.
-- 3. The sequencer's state becomes one row per sweep instead of one row
--    updated by every sweep: while any transaction stays open, the versions
--    an update leaves behind cannot be pruned, and reading the single row
--    walked all of them. A new row per sweep is found first by a backward
--    scan of its key, and the row it supersedes is deleted by key.
-- 4. Each sweep row records the cluster's system identifier. A stored
--    snapshot means nothing in another cluster (a restore), whatever its
--    xids are: the sweep then takes the restore path. Sweeps also skip
--    events the log already has.

-- Sweeps wait while the state moves to its new table.
SELECT pg_advisory_xact_lock(1296385, 'events'::regclass::oid::integer);

CREATE TABLE sequencer_sweeps (
    -- Each sweep that stores a snapshot takes the previous sweep's number
    -- plus one, under the sequencer's lock: the numbers are contiguous.
    sweep bigint PRIMARY KEY,
    system_identifier bigint NOT NULL,
    snapshot pg_snapshot NOT NULL
);

INSERT INTO sequencer_sweeps (sweep, system_identifier, snapshot)
SELECT 1, (pg_control_system()).system_identifier, snapshot
FROM sequencer_state;

DROP FUNCTION sequence_events();
DROP FUNCTION restore_sequencer();
DROP TABLE sequencer_state;

-- sequence_events gives positions to the events committed since the last
-- sweep and returns how many it numbered.
--
-- A sweep reads, in one statement and so in one snapshot S, the snapshot P
-- the previous sweep stored and every event it can see whose writer was not
-- yet visible in P: xid in P's in-progress list, or xid at or past P's
-- xmax. Those are exactly the events committed between P and S: earlier
-- ones were numbered by an earlier sweep, and rolled-back ones are never
-- visible, so they leave no hole to wait for. It numbers them after the head
-- in seq order (seq comes from a sequence at insert time, so it agrees with
-- each stream's version order and with causal order) and stores S, in the
-- same statement. Sweeps are serialized by an advisory lock taken before that
-- statement, so each sees the previous one committed: positions are gapless
-- and become visible as a prefix. A transaction that stays open only keeps
-- its own xid in the in-progress list: one index probe per sweep, no stall.
--
-- That reasoning needs a fresh snapshot per statement (READ COMMITTED) and
-- xids of this cluster. At another isolation level the sweep refuses to run;
-- after a restore into another cluster, or if xids went backwards, it takes
-- the restore path (restore_sequencer).
--
-- SECURITY DEFINER: the runtime role may sequence, but not write event_log
-- or the sweeps itself.
CREATE FUNCTION sequence_events() RETURNS bigint
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

-- restore_sequencer recovers sequence_events after a restore into another
-- cluster (or xids that went backwards): the stored snapshot says nothing
-- about this cluster's transactions. It sets to 0 the xid of every visible
-- event that this cluster could still take for a recent writer (xid at or
-- past the oldest one running), numbers in seq order every event the log
-- lacks, and stores the current snapshot. Events still being written keep
-- their xid and are numbered by a later sweep. Called by sequence_events
-- with the sequencer's lock held.
CREATE FUNCTION restore_sequencer(seen_sweep bigint, this_cluster bigint) RETURNS bigint
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

-- The roles given runtime rights, so that a later migration that adds a
-- table or function can grant it to each of them again.
CREATE TABLE runtime_roles (
    role_name name PRIMARY KEY,
    granted_at timestamptz NOT NULL DEFAULT now()
);

-- grant_runtime gives a role what mire's runtime needs in this schema, and
-- nothing that could rewrite or hide history. Run it as the schema's owner
-- (the role that migrates). It is idempotent.
CREATE FUNCTION grant_runtime(runtime regrole) RETURNS void
    LANGUAGE plpgsql
AS $$
DECLARE
    schema_name name := current_schema();
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %s', schema_name, runtime);
    EXECUTE format('GRANT SELECT ON %I.events, %I.event_log, %I.snapshots, %I.schema_migrations TO %s',
                   schema_name, schema_name, schema_name, schema_name, runtime);
    -- The columns an append sets; seq, xid and recorded_at take their
    -- defaults, which the sequencer relies on.
    EXECUTE format('GRANT INSERT (stream_id, stream_version, category, event_id, event_type, data, headers,'
                   ' correlation_id, causation_id) ON %I.events TO %s', schema_name, runtime);
    EXECUTE format('GRANT USAGE ON SEQUENCE %s TO %s', pg_get_serial_sequence(format('%I.events', schema_name), 'seq'), runtime);
    -- Snapshots are a cache of state, not history: the latest replaces the last.
    EXECUTE format('GRANT INSERT (stream_id, stream_version, schema_version, state),'
                   ' UPDATE (stream_version, schema_version, state, taken_at) ON %I.snapshots TO %s',
                   schema_name, runtime);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %I.sequence_events() TO %s', schema_name, runtime);
    INSERT INTO runtime_roles (role_name) VALUES (runtime::text::name) ON CONFLICT DO NOTHING;
END;
$$;

-- revoke_runtime takes back what grant_runtime gave.
CREATE FUNCTION revoke_runtime(runtime regrole) RETURNS void
    LANGUAGE plpgsql
AS $$
DECLARE
    schema_name name := current_schema();
BEGIN
    EXECUTE format('REVOKE ALL ON %I.events, %I.event_log, %I.snapshots, %I.schema_migrations FROM %s',
                   schema_name, schema_name, schema_name, schema_name, runtime);
    EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM %s', pg_get_serial_sequence(format('%I.events', schema_name), 'seq'), runtime);
    EXECUTE format('REVOKE ALL ON FUNCTION %I.sequence_events() FROM %s', schema_name, runtime);
    EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM %s', schema_name, runtime);
    DELETE FROM runtime_roles WHERE role_name = runtime::text::name;
END;
$$;

-- Functions are executable by PUBLIC unless revoked. Only the roles
-- grant_runtime names may sequence; the rest are the owner's.
REVOKE EXECUTE ON FUNCTION sequence_events() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION restore_sequencer(bigint, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION grant_runtime(regrole) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION revoke_runtime(regrole) FROM PUBLIC;

-- search_path = this schema, then pg_temp: named last, temporary tables can
-- no longer come first (PostgreSQL searches pg_temp first unless it is
-- listed). The schema's name is only known at run time.
DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY['sequence_events()', 'restore_sequencer(bigint, bigint)',
                              'grant_runtime(regrole)', 'revoke_runtime(regrole)'] LOOP
        EXECUTE format('ALTER FUNCTION %I.%s SET search_path = %I, pg_temp', current_schema(), fn, current_schema());
    END LOOP;
END;
$$;
