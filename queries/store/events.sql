-- name: EventAppend :one
-- Appends a batch of events to one stream; see append_events in
-- schema/migrations for the concurrency rules.
SELECT result.appended::bigint AS appended,
       result.to_version::bigint AS to_version,
       result.committed_at::timestamptz AS committed_at,
       result.current_version::bigint AS current_version,
       result.duplicate_ids::boolean AS duplicate_ids
FROM /* TEMPLATE: schema */append_events(
    @stream_id::text,
    @expected_kind::text,
    @expected_version::bigint,
    @event_ids::uuid[],
    @event_types::text[],
    @data::jsonb[],
    @headers::jsonb[],
    @correlation_ids::uuid[],
    @causation_ids::uuid[]
) AS result;

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
