-- Appends. The gate is the unique (stream_id, stream_version) index: an
-- append inserts the versions its expectation implies, after checking in the
-- same statement that the stream is where the expectation says (its previous
-- version exists). Two writers of the same version meet in the index: the
-- second waits for the first and, once it commits, inserts nothing. ON
-- CONFLICT DO NOTHING makes a lost race (and a retried event id) a result,
-- not an exception, so a caller's transaction stays usable; the store then
-- asks EventAppendRefused why.
--
-- Appends to an existing stream take its stream lock in shared mode, so that
-- LoadForUpdate (exclusive) holds them off; appends never block each other
-- on it. Each statement is its own prepared statement with no parameter the
-- planner could fold, so PostgreSQL settles on one generic plan instead of
-- planning every call.

-- name: EventAppendNew :one
-- One event opening a stream (NoStream): version 1, refused if it exists.
INSERT INTO /* TEMPLATE: schema */events
    (stream_id, stream_version, category, event_id, event_type, data, headers, correlation_id, causation_id)
VALUES (@stream_id::text, 1, sqlc.narg(category)::text, @event_id::uuid, @event_type::text, @data::jsonb,
        sqlc.narg(headers)::jsonb, sqlc.narg(correlation_id)::uuid, sqlc.narg(causation_id)::uuid)
ON CONFLICT DO NOTHING
RETURNING stream_version, recorded_at;

-- name: EventAppendExact :one
-- One event at version expected+1 (next_version, which sqlc cannot compute
-- here) of a stream at version expected >= 1.
INSERT INTO /* TEMPLATE: schema */events
    (stream_id, stream_version, category, event_id, event_type, data, headers, correlation_id, causation_id)
SELECT @stream_id::text, @next_version::bigint, sqlc.narg(category)::text, @event_id::uuid,
       @event_type::text, @data::jsonb, sqlc.narg(headers)::jsonb, sqlc.narg(correlation_id)::uuid,
       sqlc.narg(causation_id)::uuid
FROM (SELECT pg_advisory_xact_lock_shared(
          hashtextextended(@stream_id::text, @lock_seed::bigint))) AS stream_lock
WHERE EXISTS (SELECT 1 FROM /* TEMPLATE: schema */events AS previous
              WHERE previous.stream_id = @stream_id::text
                AND previous.stream_version = @expected_version::bigint)
ON CONFLICT DO NOTHING
RETURNING stream_version, recorded_at;

-- name: EventAppendExactExplained :one
-- EventAppendExact for a hot stream, one that writers race for (see the
-- store's hotStreams), where most appends are refused. Always returns a
-- row. A refused append (stream_version NULL) comes with why, from
-- append_refusal, which runs only on refusal and in a new snapshot: the
-- stream's version now and whether the event id is stored. No second round
-- trip, even when the version went to an append that committed while this
-- one waited for it. The extra plan nodes cost a stored append about a
-- tenth more server time, so cold streams use EventAppendExact.
WITH appended AS (
INSERT INTO /* TEMPLATE: schema */events
    (stream_id, stream_version, category, event_id, event_type, data, headers, correlation_id, causation_id)
SELECT sqlc.arg(stream_id)::text, sqlc.arg(next_version)::bigint, sqlc.narg(category)::text, sqlc.arg(event_id)::uuid,
       sqlc.arg(event_type)::text, sqlc.arg(data)::jsonb, sqlc.narg(headers)::jsonb, sqlc.narg(correlation_id)::uuid,
       sqlc.narg(causation_id)::uuid
FROM (SELECT pg_advisory_xact_lock_shared(
          hashtextextended(sqlc.arg(stream_id)::text, sqlc.arg(lock_seed)::bigint))) AS stream_lock
WHERE EXISTS (SELECT 1 FROM /* TEMPLATE: schema */events AS previous
              WHERE previous.stream_id = sqlc.arg(stream_id)::text
                AND previous.stream_version = sqlc.arg(expected_version)::bigint)
ON CONFLICT DO NOTHING
RETURNING stream_version, recorded_at
), why AS (
    -- Only if nothing was appended (the filter runs first and once).
    SELECT refusal.current_version, refusal.duplicate_ids
    FROM /* TEMPLATE: schema */append_refusal(sqlc.arg(stream_id)::text, ARRAY[sqlc.arg(event_id)::uuid])
        AS refusal(current_version, duplicate_ids)
    WHERE NOT EXISTS (SELECT 1 FROM appended)
)
SELECT appended.stream_version, appended.recorded_at,
       coalesce(why.current_version, 0)::bigint AS current_version,
       coalesce(why.duplicate_ids, false)::boolean AS duplicate_ids
FROM (VALUES (true)) AS attempt(made)
LEFT JOIN appended ON true
LEFT JOIN why ON true;

-- name: EventAppendNext :one
-- One event after the stream's current version (Any), or only if the stream
-- has at least min_version events (StreamExists: 1).
INSERT INTO /* TEMPLATE: schema */events
    (stream_id, stream_version, category, event_id, event_type, data, headers, correlation_id, causation_id)
SELECT @stream_id::text, head.version + 1, sqlc.narg(category)::text, @event_id::uuid,
       @event_type::text, @data::jsonb, sqlc.narg(headers)::jsonb, sqlc.narg(correlation_id)::uuid,
       sqlc.narg(causation_id)::uuid
FROM (SELECT pg_advisory_xact_lock_shared(
          hashtextextended(@stream_id::text, @lock_seed::bigint))) AS stream_lock
CROSS JOIN (SELECT coalesce((SELECT current.stream_version FROM /* TEMPLATE: schema */events AS current
                              WHERE current.stream_id = @stream_id::text
                              ORDER BY current.stream_version DESC LIMIT 1), 0) AS version) AS head
WHERE head.version >= @min_version::bigint
ON CONFLICT DO NOTHING
RETURNING stream_version, recorded_at;

-- name: EventAppendNextExplained :one
-- EventAppendNext for a hot stream. Always returns a row; a refusal's
-- columns are EventAppendExactExplained's.
WITH appended AS (
INSERT INTO /* TEMPLATE: schema */events
    (stream_id, stream_version, category, event_id, event_type, data, headers, correlation_id, causation_id)
SELECT sqlc.arg(stream_id)::text, head.version + 1, sqlc.narg(category)::text, sqlc.arg(event_id)::uuid,
       sqlc.arg(event_type)::text, sqlc.arg(data)::jsonb, sqlc.narg(headers)::jsonb, sqlc.narg(correlation_id)::uuid,
       sqlc.narg(causation_id)::uuid
FROM (SELECT pg_advisory_xact_lock_shared(
          hashtextextended(sqlc.arg(stream_id)::text, sqlc.arg(lock_seed)::bigint))) AS stream_lock
CROSS JOIN (SELECT coalesce((SELECT current.stream_version FROM /* TEMPLATE: schema */events AS current
                              WHERE current.stream_id = sqlc.arg(stream_id)::text
                              ORDER BY current.stream_version DESC LIMIT 1), 0) AS version) AS head
WHERE head.version >= sqlc.arg(min_version)::bigint
ON CONFLICT DO NOTHING
RETURNING stream_version, recorded_at
), why AS (
    -- Only if nothing was appended (the filter runs first and once).
    SELECT refusal.current_version, refusal.duplicate_ids
    FROM /* TEMPLATE: schema */append_refusal(sqlc.arg(stream_id)::text, ARRAY[sqlc.arg(event_id)::uuid])
        AS refusal(current_version, duplicate_ids)
    WHERE NOT EXISTS (SELECT 1 FROM appended)
)
SELECT appended.stream_version, appended.recorded_at,
       coalesce(why.current_version, 0)::bigint AS current_version,
       coalesce(why.duplicate_ids, false)::boolean AS duplicate_ids
FROM (VALUES (true)) AS attempt(made)
LEFT JOIN appended ON true
LEFT JOIN why ON true;

-- name: EventAppend :many
-- A batch of events in one statement, for every kind of expectation: the
-- stream's current version must satisfy it, and the events take the
-- versions after it. ON CONFLICT DO NOTHING can store part of a batch when a
-- concurrent append took some of its versions; in a caller's transaction the
-- store runs it under a savepoint and rolls such a partial batch back, and
-- on the pool it uses EventAppendAtomic instead.
INSERT INTO /* TEMPLATE: schema */events
    (stream_id, stream_version, category, event_id, event_type, data, headers, correlation_id, causation_id, run_start)
SELECT @stream_id::text,
       head.version + batch.n,
       sqlc.narg(category)::text,
       batch.event_id,
       batch.event_type,
       batch.data,
       batch.headers,
       nullif(batch.correlation_id, '00000000-0000-0000-0000-000000000000'::uuid),
       nullif(batch.causation_id, '00000000-0000-0000-0000-000000000000'::uuid),
       -- The batch's first version, on each of its events: the log numbers
       -- the batch as one run starting there (see event_log).
       head.version + 1
FROM (SELECT pg_advisory_xact_lock_shared(
          hashtextextended(@stream_id::text, @lock_seed::bigint))) AS stream_lock
CROSS JOIN (SELECT coalesce((SELECT current.stream_version FROM /* TEMPLATE: schema */events AS current
                              WHERE current.stream_id = @stream_id::text
                              ORDER BY current.stream_version DESC LIMIT 1), 0) AS version) AS head
-- ROWS FROM walks each array once; subscripting arrays of variable-length
-- elements (batch.n) would walk them from the start for every event. The
-- subquery hides the arrays' length from the planner: a custom plan would
-- look cheaper than the generic one for any batch under 100 events, so
-- PostgreSQL would plan the statement again on every call.
CROSS JOIN ROWS FROM (unnest((SELECT @event_ids::uuid[])), unnest(@event_types::text[]), unnest(@data::jsonb[]),
                      unnest(@headers::jsonb[]), unnest(@correlation_ids::uuid[]), unnest(@causation_ids::uuid[]))
    WITH ORDINALITY AS batch(event_id, event_type, data, headers, correlation_id, causation_id, n)
WHERE CASE @expected_kind::text
          WHEN 'any' THEN true
          WHEN 'stream_exists' THEN head.version >= 1
          ELSE head.version = @expected_version::bigint
      END
ON CONFLICT DO NOTHING
RETURNING stream_version, recorded_at;

-- name: EventAppendAtomic :one
-- EventAppend without ON CONFLICT, for a batch appended in its own
-- transaction: a conflict fails the whole statement, so nothing of it stays.
-- Returns one row, not one per event: the first version and how many.
WITH appended AS (
INSERT INTO /* TEMPLATE: schema */events
    (stream_id, stream_version, category, event_id, event_type, data, headers, correlation_id, causation_id, run_start)
SELECT @stream_id::text,
       head.version + batch.n,
       sqlc.narg(category)::text,
       batch.event_id,
       batch.event_type,
       batch.data,
       batch.headers,
       nullif(batch.correlation_id, '00000000-0000-0000-0000-000000000000'::uuid),
       nullif(batch.causation_id, '00000000-0000-0000-0000-000000000000'::uuid),
       -- The batch's first version, on each of its events: the log numbers
       -- the batch as one run starting there (see event_log).
       head.version + 1
FROM (SELECT pg_advisory_xact_lock_shared(
          hashtextextended(@stream_id::text, @lock_seed::bigint))) AS stream_lock
CROSS JOIN (SELECT coalesce((SELECT current.stream_version FROM /* TEMPLATE: schema */events AS current
                              WHERE current.stream_id = @stream_id::text
                              ORDER BY current.stream_version DESC LIMIT 1), 0) AS version) AS head
CROSS JOIN ROWS FROM (unnest((SELECT @event_ids::uuid[])), unnest(@event_types::text[]), unnest(@data::jsonb[]),
                      unnest(@headers::jsonb[]), unnest(@correlation_ids::uuid[]), unnest(@causation_ids::uuid[]))
    WITH ORDINALITY AS batch(event_id, event_type, data, headers, correlation_id, causation_id, n)
WHERE CASE @expected_kind::text
          WHEN 'any' THEN true
          WHEN 'stream_exists' THEN head.version >= 1
          ELSE head.version = @expected_version::bigint
      END
RETURNING stream_version, recorded_at
)
SELECT coalesce(min(stream_version), 0)::bigint AS from_version, count(*)::bigint AS appended,
       coalesce(max(recorded_at), now())::timestamptz AS recorded_at
FROM appended;

-- name: EventAppendGroup :many
-- Single-event appends of different callers, grouped into one statement and
-- so one transaction: each is stored or skipped on its own (its expectation,
-- its versions and its event id), and the store runs every skipped one
-- again alone. A grouped statement must never wait on another transaction,
-- whose owner could be waiting on one of the grouped callers: stream locks
-- are only tried, and the lock timeout, set first (the uncorrelated
-- subquery is evaluated once, before any row can pass the filter), bounds
-- the wait for a concurrent insert of the same version or event id.
--
-- Every kind of expectation is checked against the stream's head, which the
-- planner always reads from the end of the version index: an EXISTS probe
-- for Exact could be planned, on a table without statistics, as a hash of
-- the whole table built on every call. The subquery around the first array
-- keeps the plan generic (see EventAppend). The category is computed as the
-- store's categoryOf does.
INSERT INTO /* TEMPLATE: schema */events
    (stream_id, stream_version, category, event_id, event_type, data, headers, correlation_id, causation_id)
SELECT appends.stream_id,
       CASE appends.kind
           WHEN 'no_stream' THEN 1
           WHEN 'exact' THEN appends.expected + 1
           ELSE head.version + 1
       END,
       CASE WHEN strpos(appends.stream_id, '-') > 0
            THEN left(appends.stream_id, strpos(appends.stream_id, '-') - 1) END,
       appends.event_id,
       appends.event_type,
       appends.data,
       appends.headers,
       nullif(appends.correlation_id, '00000000-0000-0000-0000-000000000000'::uuid),
       nullif(appends.causation_id, '00000000-0000-0000-0000-000000000000'::uuid)
FROM ROWS FROM (unnest((SELECT @stream_ids::text[])), unnest(@expected_kinds::text[]),
                unnest(@expected_versions::bigint[]), unnest(@event_ids::uuid[]),
                unnest(@event_types::text[]), unnest(@data::jsonb[]), unnest(@headers::jsonb[]),
                unnest(@correlation_ids::uuid[]), unnest(@causation_ids::uuid[]))
    AS appends(stream_id, kind, expected, event_id, event_type, data, headers, correlation_id, causation_id)
CROSS JOIN LATERAL (SELECT coalesce((SELECT current.stream_version FROM /* TEMPLATE: schema */events AS current
                                      WHERE current.stream_id = appends.stream_id
                                      ORDER BY current.stream_version DESC LIMIT 1), 0) AS version) AS head
WHERE (SELECT set_config('lock_timeout', @lock_timeout::text, true)) IS NOT NULL
  AND CASE appends.kind
          WHEN 'no_stream' THEN true
          ELSE pg_try_advisory_xact_lock_shared(hashtextextended(appends.stream_id, @lock_seed::bigint))
               AND CASE appends.kind
                       WHEN 'exact' THEN head.version = appends.expected
                       WHEN 'stream_exists' THEN head.version >= 1
                       ELSE true
                   END
      END
ON CONFLICT DO NOTHING
RETURNING event_id, stream_version, recorded_at;

-- name: EventAppendRefused :one
-- Why an append wrote nothing: the stream's version now and whether any of
-- the event ids is stored (a retried append), asked in a new statement. A
-- single-event append to a hot stream learns it in its own statement
-- (EventAppendExactExplained).
SELECT refusal.current_version::bigint AS current_version, refusal.duplicate_ids::boolean AS duplicate_ids
FROM /* TEMPLATE: schema */append_refusal(sqlc.arg(stream_id)::text, sqlc.arg(event_ids)::uuid[])
    AS refusal(current_version, duplicate_ids);

-- name: EventFindByIDs :many
-- The stored events among a batch of event ids, with their positions once
-- they have them, and whether each matches the content being appended. Used
-- after a refused append to tell a retried append (same ids, same content)
-- from a conflict or a reused id. The trace headers (@trace_headers:
-- traceparent, tracestate) say how an event was delivered, not what it is,
-- and are left out of the comparison: a retry under another trace is still
-- a retry.
SELECT sqlc.embed(positioned_events),
       (positioned_events.event_type = (@event_types::text[])[batch.n]
        AND positioned_events.data = (@data::jsonb[])[batch.n]
        AND nullif(positioned_events.headers - @trace_headers::text[], '{}'::jsonb) IS NOT DISTINCT FROM
            nullif((@headers::jsonb[])[batch.n] - @trace_headers::text[], '{}'::jsonb)
        AND positioned_events.correlation_id IS NOT DISTINCT FROM
            nullif((@correlation_ids::uuid[])[batch.n], '00000000-0000-0000-0000-000000000000'::uuid)
        AND positioned_events.causation_id IS NOT DISTINCT FROM
            nullif((@causation_ids::uuid[])[batch.n], '00000000-0000-0000-0000-000000000000'::uuid)
       )::boolean AS same_content
-- stored_events finds them (see schema/migrations), with a plan no
-- statistics can change; each is compared with the request's event of the
-- same id. The alias is the name of their row type, so that sqlc embeds it.
FROM /* TEMPLATE: schema */stored_events(@event_ids::uuid[]) AS positioned_events
CROSS JOIN LATERAL (SELECT array_position(@event_ids::uuid[], positioned_events.event_id) AS n) AS batch
ORDER BY batch.n;

-- name: StreamVersion :one
-- A stream's head is read as the last entry of its stream's range of the
-- version index, here and wherever a statement needs it, never as max():
-- a generic plan made while the table was empty or without statistics
-- aggregates max() over every version of the stream (the planner expects
-- one row per stream), a read that grows with the stream.
SELECT coalesce((
    SELECT stream_version FROM /* TEMPLATE: schema */events WHERE stream_id = @stream_id::text
    ORDER BY stream_version DESC LIMIT 1
), 0)::bigint AS version;

-- name: StreamLock :one
-- Locks a stream for the rest of the transaction, exclusively: appends to it
-- from other transactions (which take the lock shared) wait until this one
-- ends. Returns the stream's version once the lock is held, from a snapshot
-- taken after it: 0 for a stream without events.
SELECT coalesce((
    SELECT stream_version FROM /* TEMPLATE: schema */events
    WHERE stream_id = @stream_id::text
    ORDER BY stream_version DESC LIMIT 1
), 0)::bigint AS version
FROM (SELECT pg_advisory_xact_lock(
          hashtextextended(@stream_id::text, @lock_seed::bigint))) AS stream_lock;

-- Reads. Stream reads come straight from events (with the position, once
-- the event has one); category and whole-log reads walk event_log in
-- position order and so see only sequenced events, a gapless prefix.

-- name: EventReadStreamForward :many
-- One page of a stream, oldest first, with each event's position once it
-- has one (0 for none yet). Only the columns a RecordedEvent holds, none
-- of them NULL: the zero id stands for none, as appends store it, and each
-- row scans without allocating for nullable columns.
--
-- The page's events come with the log's runs that hold them, as rows of
-- their own (run_events > 0: a run's first version, position and event
-- count, every other column a placeholder), and the store places each
-- event in its run: a stream's runs never overlap, so an event's run is
-- the last one that starts at or before it, if the event is in it. The
-- runs are read in one short scan of the log's stream index, from the run
-- that holds the first version of the page's range to its last version,
-- whatever the number of events. Computing each event's position here
-- (a probe of the index per event, then a binary search in arrays of the
-- runs) cost the server as much as reading the event. Only an event read
-- past the range (the second part of the page below) comes with its
-- position, looked up alone.
(SELECT CASE WHEN events.past_range THEN coalesce((
                -- The run holding the event starts at its batch's first
                -- version (an event appended alone starts its own run). The
                -- limit keeps the subquery from being flattened into a
                -- join, which the planner made a hash join over the whole
                -- log when the log had no statistics.
                SELECT run.global_position + (events.stream_version - run.first_version)
                FROM /* TEMPLATE: schema */event_log AS run
                WHERE run.stream_id = sqlc.arg(stream_id)::text
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
        FROM /* TEMPLATE: schema */events AS page
        WHERE page.stream_id = sqlc.arg(stream_id)::text
          AND page.stream_version >= sqlc.arg(from_version)::bigint AND page.stream_version <= least(sqlc.arg(from_version)::bigint, 9223372036854775807 - sqlc.arg(max_events)::integer) + (sqlc.arg(max_events)::integer - 1)
          AND (coalesce(cardinality(sqlc.arg(event_types)::text[]), 0) = 0 OR page.event_type = ANY(sqlc.arg(event_types)::text[]))
        ORDER BY page.stream_version)
       UNION ALL
       (SELECT true, page.stream_version, page.event_id, page.event_type, page.data, page.headers,
               page.correlation_id, page.causation_id, page.recorded_at, page.run_start
        FROM /* TEMPLATE: schema */events AS page
        WHERE page.stream_id = sqlc.arg(stream_id)::text AND page.stream_version > least(sqlc.arg(from_version)::bigint, 9223372036854775807 - sqlc.arg(max_events)::integer) + (sqlc.arg(max_events)::integer - 1)
          AND (coalesce(cardinality(sqlc.arg(event_types)::text[]), 0) = 0 OR page.event_type = ANY(sqlc.arg(event_types)::text[]))
          AND (coalesce(cardinality(sqlc.arg(event_types)::text[]), 0) = 0 OR (SELECT count(*) FROM /* TEMPLATE: schema */events AS counted
               WHERE counted.stream_id = sqlc.arg(stream_id)::text
                 AND counted.stream_version >= sqlc.arg(from_version)::bigint AND counted.stream_version <= least(sqlc.arg(from_version)::bigint, 9223372036854775807 - sqlc.arg(max_events)::integer) + (sqlc.arg(max_events)::integer - 1)
                 AND counted.event_type = ANY(sqlc.arg(event_types)::text[])) < sqlc.arg(max_events)::integer)
        ORDER BY page.stream_version
        LIMIT sqlc.arg(max_events)::integer)) AS events
 ORDER BY events.stream_version
 LIMIT sqlc.arg(max_events)::integer)
UNION ALL
SELECT run.global_position, run.first_version, run.event_count,
       '00000000-0000-0000-0000-000000000000'::uuid, '', 'null'::jsonb, NULL, '00000000-0000-0000-0000-000000000000'::uuid, '00000000-0000-0000-0000-000000000000'::uuid, 'epoch'::timestamptz
FROM /* TEMPLATE: schema */event_log AS run
WHERE run.stream_id = sqlc.arg(stream_id)::text
  AND run.first_version <= least(sqlc.arg(from_version)::bigint, 9223372036854775807 - sqlc.arg(max_events)::integer) + (sqlc.arg(max_events)::integer - 1)
  -- From the run that holds the first version of the range, if any.
  AND run.first_version >= coalesce((
      SELECT earlier.first_version FROM /* TEMPLATE: schema */event_log AS earlier
      WHERE earlier.stream_id = sqlc.arg(stream_id)::text AND earlier.first_version <= sqlc.arg(from_version)::bigint
      ORDER BY earlier.first_version DESC
      LIMIT 1), sqlc.arg(from_version)::bigint);

-- name: EventReadStreamRangeForward :many
-- EventReadStreamForward without a type filter, a read's usual page: the
-- range of versions the page can hold and nothing past it, so no merge of
-- a second part, which cost the server about as much per event as reading
-- it. The runs that place the page's events come as in that statement, and
-- the stream's last version in a row of its own (run_events -1), from
-- which the store tells the stream's end from versions missing in the
-- range (which only a superuser could delete): then it reads the page
-- again with EventReadStreamForward, which reads on past them.
(SELECT 0::bigint AS global_position, page.stream_version, 0 AS run_events,
        page.event_id, page.event_type, page.data, page.headers,
        coalesce(page.correlation_id, '00000000-0000-0000-0000-000000000000'::uuid)::uuid AS correlation_id,
        coalesce(page.causation_id, '00000000-0000-0000-0000-000000000000'::uuid)::uuid AS causation_id,
        page.recorded_at
 FROM /* TEMPLATE: schema */events AS page
 WHERE page.stream_id = sqlc.arg(stream_id)::text
   AND page.stream_version >= sqlc.arg(from_version)::bigint AND page.stream_version <= least(sqlc.arg(from_version)::bigint, 9223372036854775807 - sqlc.arg(max_events)::integer) + (sqlc.arg(max_events)::integer - 1)
 ORDER BY page.stream_version)
UNION ALL
SELECT run.global_position, run.first_version, run.event_count,
       '00000000-0000-0000-0000-000000000000'::uuid, '', 'null'::jsonb, NULL, '00000000-0000-0000-0000-000000000000'::uuid, '00000000-0000-0000-0000-000000000000'::uuid, 'epoch'::timestamptz
FROM /* TEMPLATE: schema */event_log AS run
WHERE run.stream_id = sqlc.arg(stream_id)::text
  AND run.first_version <= least(sqlc.arg(from_version)::bigint, 9223372036854775807 - sqlc.arg(max_events)::integer) + (sqlc.arg(max_events)::integer - 1)
  AND run.first_version >= coalesce((
      SELECT earlier.first_version FROM /* TEMPLATE: schema */event_log AS earlier
      WHERE earlier.stream_id = sqlc.arg(stream_id)::text AND earlier.first_version <= sqlc.arg(from_version)::bigint
      ORDER BY earlier.first_version DESC
      LIMIT 1), sqlc.arg(from_version)::bigint)
UNION ALL
SELECT 0, coalesce((SELECT last.stream_version FROM /* TEMPLATE: schema */events AS last
                    WHERE last.stream_id = sqlc.arg(stream_id)::text
                    ORDER BY last.stream_version DESC LIMIT 1), 0),
       -1, '00000000-0000-0000-0000-000000000000'::uuid, '', 'null'::jsonb, NULL, '00000000-0000-0000-0000-000000000000'::uuid, '00000000-0000-0000-0000-000000000000'::uuid, 'epoch'::timestamptz;

-- name: EventLoadStream :many
-- One page of a stream for loading an aggregate: only what replaying needs
-- (upcasters and decoding see the type and data alone), no join for
-- positions, and the stream's version as of this statement so that a load
-- can bound itself and detect a corrupt stream.
SELECT coalesce((
           SELECT current.stream_version FROM /* TEMPLATE: schema */events AS current
           WHERE current.stream_id = @stream_id::text
           ORDER BY current.stream_version DESC LIMIT 1
       ), 0)::bigint AS stream_head,
       events.stream_version,
       events.event_type,
       events.data
FROM /* TEMPLATE: schema */events
WHERE events.stream_id = @stream_id::text
  AND events.stream_version >= @from_version::bigint
  AND events.stream_version <= @to_version::bigint
ORDER BY events.stream_version
LIMIT @max_events::integer;

-- name: EventReadStreamBackward :many
-- As EventReadStreamForward, newest first. A read from the end asks from
-- the largest version, so the range a page can hold ends at the stream's
-- last version at most (top); the runs that come with the page are the
-- range's.
WITH top AS MATERIALIZED (
    SELECT least(sqlc.arg(from_version)::bigint, coalesce((
        SELECT last.stream_version FROM /* TEMPLATE: schema */events AS last
        WHERE last.stream_id = sqlc.arg(stream_id)::text
        ORDER BY last.stream_version DESC
        LIMIT 1), 0)) AS version
)
(SELECT CASE WHEN events.past_range THEN coalesce((
                -- As in EventReadStreamForward.
                SELECT run.global_position + (events.stream_version - run.first_version)
                FROM /* TEMPLATE: schema */event_log AS run
                WHERE run.stream_id = sqlc.arg(stream_id)::text
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
        FROM /* TEMPLATE: schema */events AS page
        WHERE page.stream_id = sqlc.arg(stream_id)::text
          AND page.stream_version <= (SELECT version FROM top)
          AND page.stream_version >= (SELECT version FROM top) - (sqlc.arg(max_events)::integer - 1)
          AND (coalesce(cardinality(sqlc.arg(event_types)::text[]), 0) = 0 OR page.event_type = ANY(sqlc.arg(event_types)::text[]))
        ORDER BY page.stream_version DESC)
       UNION ALL
       (SELECT true, page.stream_version, page.event_id, page.event_type, page.data, page.headers,
               page.correlation_id, page.causation_id, page.recorded_at, page.run_start
        FROM /* TEMPLATE: schema */events AS page
        WHERE page.stream_id = sqlc.arg(stream_id)::text
          AND page.stream_version < (SELECT version FROM top) - (sqlc.arg(max_events)::integer - 1)
          AND (coalesce(cardinality(sqlc.arg(event_types)::text[]), 0) = 0 OR page.event_type = ANY(sqlc.arg(event_types)::text[]))
          AND (coalesce(cardinality(sqlc.arg(event_types)::text[]), 0) = 0 OR (SELECT count(*) FROM /* TEMPLATE: schema */events AS counted
               WHERE counted.stream_id = sqlc.arg(stream_id)::text
                 AND counted.stream_version <= (SELECT version FROM top)
                 AND counted.stream_version >= (SELECT version FROM top) - (sqlc.arg(max_events)::integer - 1)
                 AND counted.event_type = ANY(sqlc.arg(event_types)::text[])) < sqlc.arg(max_events)::integer)
        ORDER BY page.stream_version DESC
        LIMIT sqlc.arg(max_events)::integer)) AS events
 ORDER BY events.stream_version DESC
 LIMIT sqlc.arg(max_events)::integer)
UNION ALL
SELECT run.global_position, run.first_version, run.event_count,
       '00000000-0000-0000-0000-000000000000'::uuid, '', 'null'::jsonb, NULL, '00000000-0000-0000-0000-000000000000'::uuid, '00000000-0000-0000-0000-000000000000'::uuid, 'epoch'::timestamptz
FROM /* TEMPLATE: schema */event_log AS run
WHERE run.stream_id = sqlc.arg(stream_id)::text
  AND run.first_version <= (SELECT version FROM top)
  AND run.first_version >= coalesce((
      SELECT earlier.first_version FROM /* TEMPLATE: schema */event_log AS earlier
      WHERE earlier.stream_id = sqlc.arg(stream_id)::text
        AND earlier.first_version <= (SELECT version FROM top) - (sqlc.arg(max_events)::integer - 1)
      ORDER BY earlier.first_version DESC
      LIMIT 1), (SELECT version FROM top) - (sqlc.arg(max_events)::integer - 1));

-- name: EventReadStreamRangeBackward :many
-- EventReadStreamBackward without a type filter: the range of versions the
-- page can hold, below the stream's last version (head) or the version
-- asked from, as EventReadStreamRangeForward.
WITH head AS MATERIALIZED (
    SELECT coalesce((SELECT last.stream_version FROM /* TEMPLATE: schema */events AS last
                     WHERE last.stream_id = sqlc.arg(stream_id)::text
                     ORDER BY last.stream_version DESC LIMIT 1), 0) AS version
)
(SELECT 0::bigint AS global_position, page.stream_version, 0 AS run_events,
        page.event_id, page.event_type, page.data, page.headers,
        coalesce(page.correlation_id, '00000000-0000-0000-0000-000000000000'::uuid)::uuid AS correlation_id,
        coalesce(page.causation_id, '00000000-0000-0000-0000-000000000000'::uuid)::uuid AS causation_id,
        page.recorded_at
 FROM /* TEMPLATE: schema */events AS page
 WHERE page.stream_id = sqlc.arg(stream_id)::text
   AND page.stream_version <= least(sqlc.arg(from_version)::bigint, (SELECT version FROM head))
   AND page.stream_version >= least(sqlc.arg(from_version)::bigint, (SELECT version FROM head)) - (sqlc.arg(max_events)::integer - 1)
 ORDER BY page.stream_version DESC)
UNION ALL
SELECT run.global_position, run.first_version, run.event_count,
       '00000000-0000-0000-0000-000000000000'::uuid, '', 'null'::jsonb, NULL, '00000000-0000-0000-0000-000000000000'::uuid, '00000000-0000-0000-0000-000000000000'::uuid, 'epoch'::timestamptz
FROM /* TEMPLATE: schema */event_log AS run
WHERE run.stream_id = sqlc.arg(stream_id)::text
  AND run.first_version <= least(sqlc.arg(from_version)::bigint, (SELECT version FROM head))
  AND run.first_version >= coalesce((
      SELECT earlier.first_version FROM /* TEMPLATE: schema */event_log AS earlier
      WHERE earlier.stream_id = sqlc.arg(stream_id)::text
        AND earlier.first_version <= least(sqlc.arg(from_version)::bigint, (SELECT version FROM head)) - (sqlc.arg(max_events)::integer - 1)
      ORDER BY earlier.first_version DESC
      LIMIT 1), least(sqlc.arg(from_version)::bigint, (SELECT version FROM head)) - (sqlc.arg(max_events)::integer - 1))
UNION ALL
SELECT 0, head.version, -1, '00000000-0000-0000-0000-000000000000'::uuid, '', 'null'::jsonb, NULL, '00000000-0000-0000-0000-000000000000'::uuid, '00000000-0000-0000-0000-000000000000'::uuid, 'epoch'::timestamptz
FROM head;

-- name: EventReadAllForward :many
SELECT * FROM /* TEMPLATE: schema */read_log_forward(@from_position::bigint, @event_types::text[], @max_events::integer, @partition_count::integer, @partition_index::integer);

-- name: EventReadAllBackward :many
SELECT * FROM /* TEMPLATE: schema */read_log_backward(@from_position::bigint, @event_types::text[], @max_events::integer, @partition_count::integer, @partition_index::integer);

-- name: EventReadCategoryForward :many
SELECT * FROM /* TEMPLATE: schema */read_category_forward(@category::text, @from_position::bigint, @event_types::text[], @max_events::integer, @partition_count::integer, @partition_index::integer);

-- name: EventReadCategoryBackward :many
SELECT * FROM /* TEMPLATE: schema */read_category_backward(@category::text, @from_position::bigint, @event_types::text[], @max_events::integer, @partition_count::integer, @partition_index::integer);

-- name: EventSequence :one
-- Assigns global positions to the events committed since the last run (see
-- sequence_events in schema/migrations), and says whether the statistics
-- of the tables are due a refresh (StatisticsRefresh), which only a run
-- that numbered events asks. The subquery runs the sweep first.
SELECT swept.assigned,
       (swept.assigned > 0 AND /* TEMPLATE: schema */statistics_stale())::boolean AS refresh_due
FROM (SELECT /* TEMPLATE: schema */sequence_events()::bigint AS assigned OFFSET 0) AS swept;

-- name: StatisticsRefresh :one
-- Refreshes the statistics if they are still stale; see refresh_statistics
-- in schema/migrations.
SELECT /* TEMPLATE: schema */refresh_statistics()::boolean AS refreshed;

-- name: EventHead :one
-- The highest assigned global position, 0 for an empty log: where the log's
-- last run ends.
SELECT /* TEMPLATE: schema */log_head()::bigint AS head;
