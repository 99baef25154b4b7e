-- name: SnapshotGet :one
SELECT stream_version, schema_version, state
FROM /* TEMPLATE: schema */snapshots
WHERE stream_id = @stream_id::text;

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
