-- Back to migration 9: append_refusal reads the stream's head as max().

CREATE OR REPLACE FUNCTION append_refusal(stream_id text, event_ids uuid[])
    RETURNS TABLE (current_version bigint, duplicate_ids boolean)
    LANGUAGE plpgsql
    VOLATILE
    SET enable_seqscan = off
    SET enable_bitmapscan = off
    SET jit = off
AS $$
BEGIN
    RETURN QUERY
    SELECT coalesce((SELECT max(current.stream_version) FROM events AS current
                     WHERE current.stream_id = append_refusal.stream_id), 0)::bigint,
           EXISTS (SELECT 1 FROM events WHERE events.event_id = ANY (append_refusal.event_ids));
END;
$$;

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION %I.append_refusal(text, uuid[]) SET search_path = %I, pg_temp',
                   current_schema(), current_schema());
END;
$$;
