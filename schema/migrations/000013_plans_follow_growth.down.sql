-- Back to migration 12: no refresh of the statistics, the store's
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

DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY['grant_runtime(regrole)', 'revoke_runtime(regrole)'] LOOP
        EXECUTE format('ALTER FUNCTION %I.%s SET search_path = %I, pg_temp', current_schema(), fn, current_schema());
    END LOOP;
END;
$$;

DROP FUNCTION log_head();
DROP FUNCTION stored_events(uuid[]);
DROP FUNCTION refresh_statistics();
DROP FUNCTION statistics_stale();
