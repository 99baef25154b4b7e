-- Every statement that finds a stream's events, its head, its runs in the
-- log or its snapshot runs with a plan that does not depend on statistics.
-- Runs with search_path set to the store's schema.
--
-- These were plain statements, prepared once per connection; after a few
-- runs PostgreSQL keeps a generic plan for each, made from the statistics of
-- the moment. Made while the tables were a page or two (autovacuum's first
-- ANALYZE, or one by hand, then autovacuum off), the generic plans scanned
-- the whole table: the planner saw a sequential scan of a page as cheaper
-- than an index descent. Nothing makes such a plan again until the
-- statistics change, so with autovacuum off an append, a load or a stream
-- read on a connection opened early read every event of the log or of the
-- stream (a read of a one-event stream: 0.4 ms with 100 events, 40 ms with
-- 100,000). As the log and category reads (migrations 5 and 12), these
-- functions pin the plan with their settings, which hold only while they
-- run, and PL/pgSQL prepares each statement once per connection. The
-- statements are the ones the store sent, unchanged. Invoker's rights: a
-- role reads what it may read; executable by the roles grant_runtime names.

-- A stream's head: its last version, 0 for a stream without events, read
-- from the end of the version index (a max() was planned as an aggregate
-- over the whole stream, see migration 10). Every append checks its
-- expectation against it, so it costs as little as a pinned plan can: two
-- settings only (a head read has no join or sort to pin), and the table
-- named with its schema rather than a search_path setting, which costs
-- every call more than the other two together (about 2 of the 5 us a call
-- adds to an append). Invoker's rights, so an unusual search_path of the
-- caller's only affects the caller.
--
-- stream_heads: the heads of streams, in the order given (one per element,
-- repeated streams included), so that a group of appends reads its
-- streams' heads in one call.
DO $do$
BEGIN
    EXECUTE format($f$
        CREATE FUNCTION %1$I.stream_head(stream text) RETURNS bigint
            LANGUAGE plpgsql
            STABLE
            SET enable_seqscan = off
            SET enable_bitmapscan = off
        AS $$
        BEGIN
            RETURN coalesce((SELECT current.stream_version FROM %1$I.events AS current
                             WHERE current.stream_id = stream
                             ORDER BY current.stream_version DESC
                             LIMIT 1), 0);
        END;
        $$;

        CREATE FUNCTION %1$I.stream_heads(streams text[]) RETURNS SETOF bigint
            LANGUAGE plpgsql
            STABLE
            SET enable_seqscan = off
            SET enable_bitmapscan = off
        AS $$
        BEGIN
            RETURN QUERY
                SELECT coalesce((SELECT current.stream_version FROM %1$I.events AS current
                                 WHERE current.stream_id = wanted.stream
                                 ORDER BY current.stream_version DESC
                                 LIMIT 1), 0)
                FROM unnest(streams) WITH ORDINALITY AS wanted(stream, n)
                ORDER BY wanted.n;
        END;
        $$;
    $f$, current_schema());
END;
$do$;

-- The position of the log's last event, 0 for an empty log.
CREATE FUNCTION log_head() RETURNS bigint
    LANGUAGE plpgsql
    STABLE
    SET enable_seqscan = off
    SET enable_bitmapscan = off
    SET jit = off
    SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN coalesce((SELECT last.global_position + last.event_count - 1 FROM event_log AS last
                     ORDER BY last.global_position DESC
                     LIMIT 1), 0);
END;
$$;

-- A stream's snapshot, if it has one.
CREATE FUNCTION stream_snapshot(stream text)
    RETURNS TABLE (stream_version bigint, schema_version integer, state jsonb)
    LANGUAGE plpgsql
    STABLE
    SET enable_seqscan = off
    SET enable_bitmapscan = off
    SET jit = off
    SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        SELECT taken.stream_version, taken.schema_version, taken.state
        FROM snapshots AS taken
        WHERE taken.stream_id = stream;
END;
$$;

-- The stored events among event_ids, with their positions (0 for none yet),
-- for telling a retried append from a conflict. Planned as a join of the
-- ids to events, it scanned every event when made on a young table.
CREATE FUNCTION stored_events(event_ids uuid[])
    RETURNS SETOF positioned_events
    LANGUAGE plpgsql
    STABLE
    SET enable_seqscan = off
    SET enable_bitmapscan = off
    SET enable_hashjoin = off
    SET enable_mergejoin = off
    SET max_parallel_workers_per_gather = 0
    SET jit = off
    SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
        SELECT coalesce((
                   -- The run holding the event starts at its batch's first
                   -- version (an event appended alone starts its own run).
                   SELECT run.global_position + (stored.stream_version - run.first_version)
                   FROM event_log AS run
                   WHERE run.stream_id = stored.stream_id
                     AND run.first_version = coalesce(stored.run_start, stored.stream_version)
                     AND stored.stream_version < run.first_version + run.event_count
                   LIMIT 1), 0)::bigint,
               stored.seq, stored.stream_id, stored.stream_version, stored.category, stored.event_id,
               stored.event_type, stored.data, stored.headers, stored.correlation_id, stored.causation_id,
               stored.recorded_at, stored.xid
        FROM events AS stored
        WHERE stored.event_id = ANY (event_ids);
END;
$$;

-- One page of a stream for loading an aggregate: what replaying needs, and
-- the stream's head as of this statement, so that a load can bound itself
-- and detect a corrupt stream.
CREATE FUNCTION load_stream(stream text, from_version bigint, to_version bigint, max_events integer)
    RETURNS TABLE (stream_head bigint, stream_version bigint, event_type text, data jsonb)
    LANGUAGE plpgsql
    STABLE
    SET enable_seqscan = off
    SET enable_bitmapscan = off
    SET enable_hashjoin = off
    SET enable_mergejoin = off
    SET enable_sort = off
    SET max_parallel_workers_per_gather = 0
    SET jit = off
    SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        SELECT coalesce((
                   SELECT current.stream_version FROM events AS current
                   WHERE current.stream_id = stream
                   ORDER BY current.stream_version DESC LIMIT 1
               ), 0)::bigint AS stream_head,
               events.stream_version,
               events.event_type,
               events.data
        FROM events
        WHERE events.stream_id = stream
          AND events.stream_version >= from_version
          AND events.stream_version <= to_version
        ORDER BY events.stream_version
        LIMIT max_events;
END;
$$;

-- One page of a stream, oldest first, from from_version, of the types in
-- stored_types (all types when empty): the page's events and the log's runs
-- that hold them, as rows of their own (run_events > 0). See the store's
-- EventReadStreamForward.
CREATE FUNCTION read_stream_forward(stream text, from_version bigint, max_events integer, stored_types text[])
    RETURNS TABLE (global_position bigint, stream_version bigint, run_events integer, event_id uuid,
                   event_type text, data jsonb, headers jsonb, correlation_id uuid, causation_id uuid,
                   recorded_at timestamptz)
    LANGUAGE plpgsql
    STABLE
    SET enable_seqscan = off
    SET enable_bitmapscan = off
    SET enable_hashjoin = off
    SET enable_mergejoin = off
    SET enable_sort = off
    SET max_parallel_workers_per_gather = 0
    SET jit = off
    SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        (SELECT CASE WHEN events.past_range THEN coalesce((
                        -- The run holding the event starts at its batch's first
                        -- version (an event appended alone starts its own run). The
                        -- limit keeps the subquery from being flattened into a
                        -- join, which the planner made a hash join over the whole
                        -- log when the log had no statistics.
                        SELECT run.global_position + (events.stream_version - run.first_version)
                        FROM event_log AS run
                        WHERE run.stream_id = stream
                          AND run.first_version = coalesce(events.run_start, events.stream_version)
                          AND events.stream_version < run.first_version + run.event_count
                        LIMIT 1), 0)
                    ELSE 0 END::bigint AS global_position,
                events.stream_version,
                0 AS run_events,
                events.event_id, events.event_type, events.data, events.headers,
                coalesce(events.correlation_id, '00000000-0000-0000-0000-000000000000'::uuid)::uuid AS correlation_id,
                coalesce(events.causation_id, '00000000-0000-0000-0000-000000000000'::uuid)::uuid AS causation_id,
                events.recorded_at
         -- The page is cut first, as the range of versions it can hold (versions
         -- are gapless): a bounded range keeps the statement to one page of rows
         -- whatever plan PostgreSQL picks. With statistics that predate the stream
         -- it sorted every later version of the stream for each page, a read
         -- quadratic in the stream's length. Only when the range holds fewer events
         -- than the page (the stream ends in it, a type filter, or a version
         -- missing) does the second part read on past it, for what the page still
         -- lacks; without a type filter it reads its first event and no more while
         -- the range lasts. With one, its first match could lie anywhere past the
         -- range, so it first counts the range's matches: a one-time filter,
         -- decided before that part scans anything.
         FROM ((SELECT false AS past_range, page.stream_version, page.event_id, page.event_type, page.data, page.headers,
                       page.correlation_id, page.causation_id, page.recorded_at, page.run_start
                FROM events AS page
                WHERE page.stream_id = stream
                  AND page.stream_version >= from_version AND page.stream_version <= least(from_version, 9223372036854775807 - max_events) + (max_events - 1)
                  AND (coalesce(cardinality(stored_types), 0) = 0 OR page.event_type = ANY(stored_types))
                ORDER BY page.stream_version)
               UNION ALL
               (SELECT true, page.stream_version, page.event_id, page.event_type, page.data, page.headers,
                       page.correlation_id, page.causation_id, page.recorded_at, page.run_start
                FROM events AS page
                WHERE page.stream_id = stream AND page.stream_version > least(from_version, 9223372036854775807 - max_events) + (max_events - 1)
                  AND (coalesce(cardinality(stored_types), 0) = 0 OR page.event_type = ANY(stored_types))
                  AND (coalesce(cardinality(stored_types), 0) = 0 OR (SELECT count(*) FROM events AS counted
                       WHERE counted.stream_id = stream
                         AND counted.stream_version >= from_version AND counted.stream_version <= least(from_version, 9223372036854775807 - max_events) + (max_events - 1)
                         AND counted.event_type = ANY(stored_types)) < max_events)
                ORDER BY page.stream_version
                LIMIT max_events)) AS events
         ORDER BY events.stream_version
         LIMIT max_events)
        UNION ALL
        SELECT run.global_position, run.first_version, run.event_count,
               '00000000-0000-0000-0000-000000000000'::uuid, '', 'null'::jsonb, NULL, '00000000-0000-0000-0000-000000000000'::uuid, '00000000-0000-0000-0000-000000000000'::uuid, 'epoch'::timestamptz
        FROM event_log AS run
        WHERE run.stream_id = stream
          AND run.first_version <= least(from_version, 9223372036854775807 - max_events) + (max_events - 1)
          -- From the run that holds the first version of the range, if any.
          AND run.first_version >= coalesce((
              SELECT earlier.first_version FROM event_log AS earlier
              WHERE earlier.stream_id = stream AND earlier.first_version <= from_version
              ORDER BY earlier.first_version DESC
              LIMIT 1), from_version);
END;
$$;

-- read_stream_forward without a type filter: the range of versions the
-- page can hold, its runs, and the stream's last version (run_events -1).
CREATE FUNCTION read_stream_range_forward(stream text, from_version bigint, max_events integer)
    RETURNS TABLE (global_position bigint, stream_version bigint, run_events integer, event_id uuid,
                   event_type text, data jsonb, headers jsonb, correlation_id uuid, causation_id uuid,
                   recorded_at timestamptz)
    LANGUAGE plpgsql
    STABLE
    SET enable_seqscan = off
    SET enable_bitmapscan = off
    SET enable_hashjoin = off
    SET enable_mergejoin = off
    SET enable_sort = off
    SET max_parallel_workers_per_gather = 0
    SET jit = off
    SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        (SELECT 0::bigint AS global_position, page.stream_version, 0 AS run_events,
                page.event_id, page.event_type, page.data, page.headers,
                coalesce(page.correlation_id, '00000000-0000-0000-0000-000000000000'::uuid)::uuid AS correlation_id,
                coalesce(page.causation_id, '00000000-0000-0000-0000-000000000000'::uuid)::uuid AS causation_id,
                page.recorded_at
         FROM events AS page
         WHERE page.stream_id = stream
           AND page.stream_version >= from_version AND page.stream_version <= least(from_version, 9223372036854775807 - max_events) + (max_events - 1)
         ORDER BY page.stream_version)
        UNION ALL
        SELECT run.global_position, run.first_version, run.event_count,
               '00000000-0000-0000-0000-000000000000'::uuid, '', 'null'::jsonb, NULL, '00000000-0000-0000-0000-000000000000'::uuid, '00000000-0000-0000-0000-000000000000'::uuid, 'epoch'::timestamptz
        FROM event_log AS run
        WHERE run.stream_id = stream
          AND run.first_version <= least(from_version, 9223372036854775807 - max_events) + (max_events - 1)
          AND run.first_version >= coalesce((
              SELECT earlier.first_version FROM event_log AS earlier
              WHERE earlier.stream_id = stream AND earlier.first_version <= from_version
              ORDER BY earlier.first_version DESC
              LIMIT 1), from_version)
        UNION ALL
        SELECT 0, coalesce((SELECT last.stream_version FROM events AS last
                            WHERE last.stream_id = stream
                            ORDER BY last.stream_version DESC LIMIT 1), 0),
               -1, '00000000-0000-0000-0000-000000000000'::uuid, '', 'null'::jsonb, NULL, '00000000-0000-0000-0000-000000000000'::uuid, '00000000-0000-0000-0000-000000000000'::uuid, 'epoch'::timestamptz;
END;
$$;

-- read_stream_forward, newest first, from from_version down.
CREATE FUNCTION read_stream_backward(stream text, from_version bigint, max_events integer, stored_types text[])
    RETURNS TABLE (global_position bigint, stream_version bigint, run_events integer, event_id uuid,
                   event_type text, data jsonb, headers jsonb, correlation_id uuid, causation_id uuid,
                   recorded_at timestamptz)
    LANGUAGE plpgsql
    STABLE
    SET enable_seqscan = off
    SET enable_bitmapscan = off
    SET enable_hashjoin = off
    SET enable_mergejoin = off
    SET enable_sort = off
    SET max_parallel_workers_per_gather = 0
    SET jit = off
    SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        WITH top AS MATERIALIZED (
            SELECT least(from_version, coalesce((
                SELECT last.stream_version FROM events AS last
                WHERE last.stream_id = stream
                ORDER BY last.stream_version DESC
                LIMIT 1), 0)) AS version
        )
        (SELECT CASE WHEN events.past_range THEN coalesce((
                        -- As in EventReadStreamForward.
                        SELECT run.global_position + (events.stream_version - run.first_version)
                        FROM event_log AS run
                        WHERE run.stream_id = stream
                          AND run.first_version = coalesce(events.run_start, events.stream_version)
                          AND events.stream_version < run.first_version + run.event_count
                        LIMIT 1), 0)
                    ELSE 0 END::bigint AS global_position,
                events.stream_version,
                0 AS run_events,
                events.event_id, events.event_type, events.data, events.headers,
                coalesce(events.correlation_id, '00000000-0000-0000-0000-000000000000'::uuid)::uuid AS correlation_id,
                coalesce(events.causation_id, '00000000-0000-0000-0000-000000000000'::uuid)::uuid AS causation_id,
                events.recorded_at
         -- The page is cut first, as the range of versions it can hold, reading on
         -- below it only for what the range lacks, as in EventReadStreamForward.
         FROM ((SELECT false AS past_range, page.stream_version, page.event_id, page.event_type, page.data, page.headers,
                       page.correlation_id, page.causation_id, page.recorded_at, page.run_start
                FROM events AS page
                WHERE page.stream_id = stream
                  AND page.stream_version <= (SELECT version FROM top)
                  AND page.stream_version >= (SELECT version FROM top) - (max_events - 1)
                  AND (coalesce(cardinality(stored_types), 0) = 0 OR page.event_type = ANY(stored_types))
                ORDER BY page.stream_version DESC)
               UNION ALL
               (SELECT true, page.stream_version, page.event_id, page.event_type, page.data, page.headers,
                       page.correlation_id, page.causation_id, page.recorded_at, page.run_start
                FROM events AS page
                WHERE page.stream_id = stream
                  AND page.stream_version < (SELECT version FROM top) - (max_events - 1)
                  AND (coalesce(cardinality(stored_types), 0) = 0 OR page.event_type = ANY(stored_types))
                  AND (coalesce(cardinality(stored_types), 0) = 0 OR (SELECT count(*) FROM events AS counted
                       WHERE counted.stream_id = stream
                         AND counted.stream_version <= (SELECT version FROM top)
                         AND counted.stream_version >= (SELECT version FROM top) - (max_events - 1)
                         AND counted.event_type = ANY(stored_types)) < max_events)
                ORDER BY page.stream_version DESC
                LIMIT max_events)) AS events
         ORDER BY events.stream_version DESC
         LIMIT max_events)
        UNION ALL
        SELECT run.global_position, run.first_version, run.event_count,
               '00000000-0000-0000-0000-000000000000'::uuid, '', 'null'::jsonb, NULL, '00000000-0000-0000-0000-000000000000'::uuid, '00000000-0000-0000-0000-000000000000'::uuid, 'epoch'::timestamptz
        FROM event_log AS run
        WHERE run.stream_id = stream
          AND run.first_version <= (SELECT version FROM top)
          AND run.first_version >= coalesce((
              SELECT earlier.first_version FROM event_log AS earlier
              WHERE earlier.stream_id = stream
                AND earlier.first_version <= (SELECT version FROM top) - (max_events - 1)
              ORDER BY earlier.first_version DESC
              LIMIT 1), (SELECT version FROM top) - (max_events - 1));
END;
$$;

-- read_stream_range_forward, newest first, from from_version down.
CREATE FUNCTION read_stream_range_backward(stream text, from_version bigint, max_events integer)
    RETURNS TABLE (global_position bigint, stream_version bigint, run_events integer, event_id uuid,
                   event_type text, data jsonb, headers jsonb, correlation_id uuid, causation_id uuid,
                   recorded_at timestamptz)
    LANGUAGE plpgsql
    STABLE
    SET enable_seqscan = off
    SET enable_bitmapscan = off
    SET enable_hashjoin = off
    SET enable_mergejoin = off
    SET enable_sort = off
    SET max_parallel_workers_per_gather = 0
    SET jit = off
    SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        WITH head AS MATERIALIZED (
            SELECT coalesce((SELECT last.stream_version FROM events AS last
                             WHERE last.stream_id = stream
                             ORDER BY last.stream_version DESC LIMIT 1), 0) AS version
        )
        (SELECT 0::bigint AS global_position, page.stream_version, 0 AS run_events,
                page.event_id, page.event_type, page.data, page.headers,
                coalesce(page.correlation_id, '00000000-0000-0000-0000-000000000000'::uuid)::uuid AS correlation_id,
                coalesce(page.causation_id, '00000000-0000-0000-0000-000000000000'::uuid)::uuid AS causation_id,
                page.recorded_at
         FROM events AS page
         WHERE page.stream_id = stream
           AND page.stream_version <= least(from_version, (SELECT version FROM head))
           AND page.stream_version >= least(from_version, (SELECT version FROM head)) - (max_events - 1)
         ORDER BY page.stream_version DESC)
        UNION ALL
        SELECT run.global_position, run.first_version, run.event_count,
               '00000000-0000-0000-0000-000000000000'::uuid, '', 'null'::jsonb, NULL, '00000000-0000-0000-0000-000000000000'::uuid, '00000000-0000-0000-0000-000000000000'::uuid, 'epoch'::timestamptz
        FROM event_log AS run
        WHERE run.stream_id = stream
          AND run.first_version <= least(from_version, (SELECT version FROM head))
          AND run.first_version >= coalesce((
              SELECT earlier.first_version FROM event_log AS earlier
              WHERE earlier.stream_id = stream
                AND earlier.first_version <= least(from_version, (SELECT version FROM head)) - (max_events - 1)
              ORDER BY earlier.first_version DESC
              LIMIT 1), least(from_version, (SELECT version FROM head)) - (max_events - 1))
        UNION ALL
        SELECT 0, head.version, -1, '00000000-0000-0000-0000-000000000000'::uuid, '', 'null'::jsonb, NULL, '00000000-0000-0000-0000-000000000000'::uuid, '00000000-0000-0000-0000-000000000000'::uuid, 'epoch'::timestamptz
        FROM head;
END;
$$;

REVOKE EXECUTE ON FUNCTION stream_head(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION stream_heads(text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION log_head() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION stream_snapshot(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION stored_events(uuid[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION load_stream(text, bigint, bigint, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION read_stream_forward(text, bigint, integer, text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION read_stream_range_forward(text, bigint, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION read_stream_backward(text, bigint, integer, text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION read_stream_range_backward(text, bigint, integer) FROM PUBLIC;

-- grant_runtime and revoke_runtime cover the new functions.
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
    EXECUTE format('GRANT EXECUTE ON FUNCTION %I.stream_head(text), %I.stream_heads(text[]), %I.log_head(), %I.stream_snapshot(text), %I.stored_events(uuid[]),'
                   ' %I.load_stream(text, bigint, bigint, integer),'
                   ' %I.read_stream_forward(text, bigint, integer, text[]), %I.read_stream_range_forward(text, bigint, integer),'
                   ' %I.read_stream_backward(text, bigint, integer, text[]), %I.read_stream_range_backward(text, bigint, integer) TO %s',
                   schema_name, schema_name, schema_name, schema_name, schema_name, schema_name, schema_name, schema_name, schema_name, schema_name, runtime);
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
    EXECUTE format('REVOKE ALL ON FUNCTION %I.stream_head(text), %I.stream_heads(text[]), %I.log_head(), %I.stream_snapshot(text), %I.stored_events(uuid[]),'
                   ' %I.load_stream(text, bigint, bigint, integer),'
                   ' %I.read_stream_forward(text, bigint, integer, text[]), %I.read_stream_range_forward(text, bigint, integer),'
                   ' %I.read_stream_backward(text, bigint, integer, text[]), %I.read_stream_range_backward(text, bigint, integer) FROM %s',
                   schema_name, schema_name, schema_name, schema_name, schema_name, schema_name, schema_name, schema_name, schema_name, schema_name, runtime);
    EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM %s', schema_name, runtime);
    DELETE FROM runtime_roles WHERE role_name = runtime::text::name;
END;
$$;

-- search_path = this schema, then pg_temp (see migration 4), for the new
-- functions but the two head functions, which name their table, and for
-- the two CREATE OR REPLACE dropped it from.
DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY['grant_runtime(regrole)', 'revoke_runtime(regrole)',
                              'log_head()',
                              'stream_snapshot(text)',
                              'stored_events(uuid[])',
                              'load_stream(text, bigint, bigint, integer)',
                              'read_stream_forward(text, bigint, integer, text[])',
                              'read_stream_range_forward(text, bigint, integer)',
                              'read_stream_backward(text, bigint, integer, text[])',
                              'read_stream_range_backward(text, bigint, integer)'] LOOP
        EXECUTE format('ALTER FUNCTION %I.%s SET search_path = %I, pg_temp', current_schema(), fn, current_schema());
    END LOOP;
END;
$$;

-- Roles with runtime rights get the new functions (roles dropped since are
-- skipped).
SELECT grant_runtime(to_regrole(role_name))
FROM runtime_roles
WHERE to_regrole(role_name) IS NOT NULL;
