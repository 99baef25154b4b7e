-- A refused append reads the stream's head from the end of the stream's
-- range of the version index, not as max(). Runs with search_path set to
-- the store's schema.
--
-- append_refusal's statement is PL/pgSQL's, which keeps its plan for the
-- session, and a session's first calls often come while events is empty or
-- has no statistics. The generic plan made then aggregated max() over every
-- version of the stream (the planner expected one row per stream), so each
-- refused append read the whole stream: on a stream that writers race for,
-- a refusal cost more the longer the stream. ORDER BY ... DESC LIMIT 1 has
-- one plan whatever the statistics: the last entry of the range.

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
    SELECT coalesce((SELECT current.stream_version FROM events AS current
                     WHERE current.stream_id = append_refusal.stream_id
                     ORDER BY current.stream_version DESC LIMIT 1), 0)::bigint,
           EXISTS (SELECT 1 FROM events WHERE events.event_id = ANY (append_refusal.event_ids));
END;
$$;

-- CREATE OR REPLACE keeps the owner and the grants but replaces every SET
-- clause, the schema's search_path among them.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION %I.append_refusal(text, uuid[]) SET search_path = %I, pg_temp',
                   current_schema(), current_schema());
END;
$$;
