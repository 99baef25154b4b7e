-- Back to migration 12: sweeps leave the statistics alone, the store's
-- statements find retried events and the log's head themselves, and
-- grant_runtime and revoke_runtime are migration 9's and migration 8's.

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
    EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM %s', schema_name, runtime);
    DELETE FROM runtime_roles WHERE role_name = runtime::text::name;
END;
$$;

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

DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY['grant_runtime(regrole)', 'revoke_runtime(regrole)', 'sequence_events()'] LOOP
        EXECUTE format('ALTER FUNCTION %I.%s SET search_path = %I, pg_temp', current_schema(), fn, current_schema());
    END LOOP;
END;
$$;

DROP FUNCTION log_head();
DROP FUNCTION stored_events(uuid[]);
