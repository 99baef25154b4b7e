-- name: SnapshotGet :one
SELECT taken.stream_version::bigint AS stream_version, taken.schema_version::integer AS schema_version,
       taken.state::jsonb AS state
FROM /* TEMPLATE: schema */stream_snapshot(@stream_id::text) AS taken(stream_version, schema_version, state);

-- name: SnapshotSave :exec
-- Keeps only the latest snapshot of a stream: an older one (a slow writer
-- finishing late) never replaces a newer one.
INSERT INTO /* TEMPLATE: schema */snapshots AS current (stream_id, stream_version, schema_version, state)
VALUES (@stream_id::text, @stream_version::bigint, @schema_version::integer, @state::jsonb)
ON CONFLICT (stream_id) DO UPDATE
SET stream_version = excluded.stream_version,
    schema_version = excluded.schema_version,
    state = excluded.state,
    taken_at = now()
WHERE current.stream_version < excluded.stream_version
   OR current.schema_version <> excluded.schema_version;
