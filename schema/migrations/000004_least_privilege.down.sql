-- Back to migration 3: one sequencer_state row and the sequencer functions
-- as they were, executable by PUBLIC. Grants given by grant_runtime stay
-- (revoke them with revoke_runtime first if they should go).

SELECT pg_advisory_xact_lock(1296385, 'events'::regclass::oid::integer);

DROP FUNCTION grant_runtime(regrole);
DROP FUNCTION revoke_runtime(regrole);
DROP TABLE runtime_roles;

CREATE TABLE sequencer_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    snapshot pg_snapshot NOT NULL
);
INSERT INTO sequencer_state (snapshot)
SELECT snapshot FROM sequencer_sweeps ORDER BY sweep DESC LIMIT 1;

DROP FUNCTION sequence_events();
DROP FUNCTION restore_sequencer(bigint, bigint);
DROP TABLE sequencer_sweeps;

-- sequence_events gives positions to the events committed since the last
-- sweep and returns how many it numbered.
--
-- A sweep reads, in one statement and so in one snapshot S, the stored
-- snapshot P of the previous sweep and every event it can see whose writer
-- was not yet visible in P: xid in P's in-progress list, or xid at or past
-- P's xmax. Those are exactly the events committed between P and S: earlier
-- ones were numbered by an earlier sweep, and rolled-back ones are never
-- visible, so they leave no hole to wait for. It numbers them after the head
-- in seq order (seq comes from a sequence at insert time, so it agrees with
-- each stream's version order and with causal order) and stores S, in the
-- same statement. Sweeps are serialized by an advisory lock taken before that
-- statement, so each sees the previous one committed: positions are gapless
-- and become visible as a prefix. A transaction that stays open only keeps
-- its own xid in the in-progress list: one index probe per sweep, no stall.
--
-- If xids went backwards (the database was restored into another cluster),
-- the stored snapshot means nothing here: the sweep then numbers every event
-- the log lacks and stamps the old events with xid 0.
CREATE FUNCTION sequence_events() RETURNS bigint
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
    -- Without statistics (autovacuum off, a fresh table) the planner can
    -- take "xid >= $1" for a third of events: keep it on the index, and keep
    -- it from compiling a sweep that takes a millisecond.
    SET enable_seqscan = off
    SET jit = off
AS $$
DECLARE
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

    -- Without the lock: anything to do? Most calls from readers end here.
    SELECT pg_snapshot_xmax(snapshot), ARRAY(SELECT pg_snapshot_xip(snapshot))
    INTO seen_xmax, seen_xip
    FROM sequencer_state;
    IF seen_xmax <= pg_snapshot_xmax(pg_current_snapshot())
       AND NOT EXISTS (SELECT 1 FROM events WHERE xid >= seen_xmax)
       AND NOT EXISTS (SELECT 1 FROM events WHERE xid = ANY (seen_xip)) THEN
        RETURN 0;
    END IF;

    -- 1296385 is 'mire' in base 36: the lock class of the sequencer.
    PERFORM pg_advisory_xact_lock(1296385, 'events'::regclass::oid::integer);

    -- A new statement, so a new snapshot: the previous sweep has committed.
    SELECT pg_snapshot_xmax(snapshot), ARRAY(SELECT pg_snapshot_xip(snapshot))
    INTO seen_xmax, seen_xip
    FROM sequencer_state;
    IF seen_xmax > pg_snapshot_xmax(pg_current_snapshot()) THEN
        RETURN restore_sequencer();
    END IF;

    -- One statement: the events it numbers and the snapshot it stores are
    -- those of the same snapshot.
    WITH fresh AS (
        SELECT seq, xid, category FROM events WHERE xid >= seen_xmax
        UNION ALL
        SELECT seq, xid, category FROM events WHERE xid = ANY (seen_xip)
    ), numbered AS (
        INSERT INTO event_log (global_position, seq, xid, category)
        SELECT (SELECT coalesce(max(global_position), 0) FROM event_log) + row_number() OVER (ORDER BY seq),
               seq, xid, category
        FROM fresh
        RETURNING global_position
    ), saved AS (
        UPDATE sequencer_state SET snapshot = pg_current_snapshot()
        WHERE EXISTS (SELECT 1 FROM fresh)
    )
    SELECT count(*) INTO assigned FROM numbered;

    IF assigned > 0 THEN
        PERFORM pg_notify(current_schema() || '.events',
                          (SELECT max(global_position) FROM event_log)::text);
    END IF;
    RETURN assigned;
END;
$$;

-- restore_sequencer recovers sequence_events after xids went backwards: it
-- numbers, in seq order, every event the log lacks, sets every visible xid
-- to 0 (one pass over events: this is for disaster recovery, not routine)
-- and stores the current snapshot. Called with the sequencer's lock held.
CREATE FUNCTION restore_sequencer() RETURNS bigint
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
    SET jit = off
AS $$
DECLARE
    assigned bigint;
BEGIN
    -- The old cluster's xids would look newer than this one's. Every event
    -- this sweep can see gets a position below, so all of them can take 0;
    -- events still being written keep this cluster's xid.
    UPDATE events SET xid = '0' WHERE xid <> '0';
    UPDATE event_log SET xid = '0' WHERE xid <> '0';

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
        UPDATE sequencer_state SET snapshot = pg_current_snapshot()
    )
    SELECT count(*) INTO assigned FROM numbered;
    RETURN assigned;
END;
$$;
