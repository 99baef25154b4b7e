-- Back to migration 11: the four read functions as migration 9 made them,
-- SQL functions planned on every call.

CREATE OR REPLACE FUNCTION read_log_forward(from_position bigint, stored_types text[], max_events integer,
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

CREATE OR REPLACE FUNCTION read_log_backward(from_position bigint, stored_types text[], max_events integer,
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

CREATE OR REPLACE FUNCTION read_category_forward(category_name text, from_position bigint, stored_types text[], max_events integer,
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

CREATE OR REPLACE FUNCTION read_category_backward(category_name text, from_position bigint, stored_types text[], max_events integer,
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

-- search_path = this schema, then pg_temp (see migration 4): CREATE OR
-- REPLACE dropped the four functions'.
DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY['read_log_forward(bigint, text[], integer, integer, integer)',
                              'read_log_backward(bigint, text[], integer, integer, integer)',
                              'read_category_forward(text, bigint, text[], integer, integer, integer)',
                              'read_category_backward(text, bigint, text[], integer, integer, integer)'] LOOP
        EXECUTE format('ALTER FUNCTION %I.%s SET search_path = %I, pg_temp', current_schema(), fn, current_schema());
    END LOOP;
END;
$$;
