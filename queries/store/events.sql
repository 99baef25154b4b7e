-- name: EventAppend :many
-- Appends a batch of events to one stream in one statement. The stream row
-- is the concurrency gate: the upsert creates it, or checks the expected
-- version against it and bumps it, and its row lock makes writers of one
-- stream queue up, each seeing the previous commit. When the expectation
-- fails nothing is written and no row returns: a lost race is a result, not
-- an exception, so a caller's transaction stays usable.
--
-- A retried append is caught by the version check for Exact and NoStream
-- (the stream has moved on), and by the unique index on event_id for Any
-- and StreamExists; either way the store then looks for the original.
WITH head AS (
    INSERT INTO /* TEMPLATE: schema */streams AS stream (stream_id, version)
    SELECT @stream_id::text, @event_count::bigint
    WHERE @expected_kind::text IN ('any', 'no_stream')
       OR EXISTS (SELECT 1 FROM /* TEMPLATE: schema */streams AS existing
                  WHERE existing.stream_id = @stream_id::text)
    ON CONFLICT (stream_id) DO UPDATE
    SET version = stream.version + excluded.version,
        updated_at = now()
    WHERE @expected_kind::text IN ('any', 'stream_exists')
       OR (@expected_kind::text = 'exact' AND stream.version = @expected_version::bigint)
    RETURNING stream.version - @event_count::bigint AS base_version
)
INSERT INTO /* TEMPLATE: schema */events
    (stream_id, stream_version, category, event_id, event_type, data, headers, correlation_id, causation_id)
SELECT @stream_id::text,
       h.base_version + batch.n,
       sqlc.narg(category)::text,
       batch.event_id,
       (@event_types::text[])[batch.n],
       (@data::jsonb[])[batch.n],
       (@headers::jsonb[])[batch.n],
       nullif((@correlation_ids::uuid[])[batch.n], '00000000-0000-0000-0000-000000000000'::uuid),
       nullif((@causation_ids::uuid[])[batch.n], '00000000-0000-0000-0000-000000000000'::uuid)
FROM head AS h
CROSS JOIN unnest(@event_ids::uuid[]) WITH ORDINALITY AS batch(event_id, n)
RETURNING stream_version, recorded_at;

-- name: EventAppendOne :one
-- EventAppend for a single event, with scalar parameters: the common case,
-- without the cost of encoding, decoding and subscripting arrays.
WITH head AS (
    INSERT INTO /* TEMPLATE: schema */streams AS stream (stream_id, version)
    SELECT @stream_id::text, 1
    WHERE @expected_kind::text IN ('any', 'no_stream')
       OR EXISTS (SELECT 1 FROM /* TEMPLATE: schema */streams AS existing
                  WHERE existing.stream_id = @stream_id::text)
    ON CONFLICT (stream_id) DO UPDATE
    SET version = stream.version + 1,
        updated_at = now()
    WHERE @expected_kind::text IN ('any', 'stream_exists')
       OR (@expected_kind::text = 'exact' AND stream.version = @expected_version::bigint)
    RETURNING stream.version
)
INSERT INTO /* TEMPLATE: schema */events
    (stream_id, stream_version, category, event_id, event_type, data, headers, correlation_id, causation_id)
SELECT @stream_id::text,
       h.version,
       sqlc.narg(category)::text,
       @event_id::uuid,
       @event_type::text,
       @data::jsonb,
       sqlc.narg(headers)::jsonb,
       sqlc.narg(correlation_id)::uuid,
       sqlc.narg(causation_id)::uuid
FROM head AS h
RETURNING stream_version, recorded_at;

-- name: EventAppendRefused :one
-- Why an append wrote nothing: the stream's version now (a new statement,
-- so a new snapshot: the version that won) and whether any of the event ids
-- is stored (a retried append).
SELECT coalesce((
           SELECT version FROM /* TEMPLATE: schema */streams WHERE stream_id = @stream_id::text
       ), 0)::bigint AS current_version,
       EXISTS (
           SELECT 1 FROM /* TEMPLATE: schema */events WHERE event_id = ANY(@event_ids::uuid[])
       )::boolean AS duplicate_ids;

-- name: EventFindByIDs :many
-- The stored events among a batch of event ids, with whether each matches
-- the content being appended. Used after a refused append to tell a retried
-- append (same ids, same content) from a conflict or a reused id.
SELECT sqlc.embed(stored),
       (stored.event_type = (@event_types::text[])[batch.n]
        AND stored.data = (@data::jsonb[])[batch.n]
        AND stored.headers IS NOT DISTINCT FROM (@headers::jsonb[])[batch.n]
        AND stored.correlation_id IS NOT DISTINCT FROM
            nullif((@correlation_ids::uuid[])[batch.n], '00000000-0000-0000-0000-000000000000'::uuid)
        AND stored.causation_id IS NOT DISTINCT FROM
            nullif((@causation_ids::uuid[])[batch.n], '00000000-0000-0000-0000-000000000000'::uuid)
       )::boolean AS same_content
FROM generate_series(1, cardinality(@event_ids::uuid[])) AS batch(n)
JOIN /* TEMPLATE: schema */events AS stored ON stored.event_id = (@event_ids::uuid[])[batch.n]
ORDER BY batch.n;

-- name: StreamVersion :one
SELECT coalesce((
    SELECT version FROM /* TEMPLATE: schema */streams WHERE stream_id = @stream_id::text
), 0)::bigint AS version;

-- name: StreamVersionForUpdate :one
SELECT version FROM /* TEMPLATE: schema */streams
WHERE stream_id = @stream_id::text
FOR UPDATE;

-- name: EventReadStreamForward :many
-- One page of a stream, oldest first, with the stream's recorded version so
-- that a load can bound itself and detect a corrupt stream.
SELECT coalesce((
           SELECT version FROM /* TEMPLATE: schema */streams WHERE stream_id = @stream_id::text
       ), 0)::bigint AS stream_head,
       sqlc.embed(events)
FROM /* TEMPLATE: schema */events
WHERE stream_id = @stream_id::text
  AND stream_version >= @from_version::bigint
  AND stream_version <= @to_version::bigint
  AND (coalesce(cardinality(@event_types::text[]), 0) = 0 OR event_type = ANY(@event_types::text[]))
ORDER BY stream_version
LIMIT @max_events::integer;

-- name: EventReadStreamBackward :many
SELECT sqlc.embed(events)
FROM /* TEMPLATE: schema */events
WHERE stream_id = @stream_id::text
  AND stream_version <= @from_version::bigint
  AND (coalesce(cardinality(@event_types::text[]), 0) = 0 OR event_type = ANY(@event_types::text[]))
ORDER BY stream_version DESC
LIMIT @max_events::integer;

-- name: EventReadAllForward :many
SELECT sqlc.embed(events)
FROM /* TEMPLATE: schema */events
WHERE global_position >= @from_position::bigint
  AND (coalesce(cardinality(@event_types::text[]), 0) = 0 OR event_type = ANY(@event_types::text[]))
ORDER BY global_position
LIMIT @max_events::integer;

-- name: EventReadAllBackward :many
SELECT sqlc.embed(events)
FROM /* TEMPLATE: schema */events
WHERE global_position <= @from_position::bigint
  AND (coalesce(cardinality(@event_types::text[]), 0) = 0 OR event_type = ANY(@event_types::text[]))
ORDER BY global_position DESC
LIMIT @max_events::integer;

-- name: EventReadCategoryForward :many
SELECT sqlc.embed(events)
FROM /* TEMPLATE: schema */events
WHERE category = @category::text
  AND global_position >= @from_position::bigint
  AND (coalesce(cardinality(@event_types::text[]), 0) = 0 OR event_type = ANY(@event_types::text[]))
ORDER BY global_position
LIMIT @max_events::integer;

-- name: EventReadCategoryBackward :many
SELECT sqlc.embed(events)
FROM /* TEMPLATE: schema */events
WHERE category = @category::text
  AND global_position <= @from_position::bigint
  AND (coalesce(cardinality(@event_types::text[]), 0) = 0 OR event_type = ANY(@event_types::text[]))
ORDER BY global_position DESC
LIMIT @max_events::integer;

-- name: EventSequence :one
-- Assigns global positions to committed, unsequenced events; see
-- sequence_events in schema/migrations.
SELECT /* TEMPLATE: schema */sequence_events(@max_events::integer)::bigint AS assigned;

-- name: EventHead :one
-- The highest assigned global position, 0 for an empty log.
SELECT coalesce(max(global_position), 0)::bigint AS head
FROM /* TEMPLATE: schema */events
WHERE global_position IS NOT NULL;
