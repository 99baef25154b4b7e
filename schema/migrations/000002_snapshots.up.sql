-- Aggregate snapshots: the latest only, one row per stream. Kept apart from
-- events so that no reader of the log ever sees them.
CREATE TABLE snapshots (
    stream_id text PRIMARY KEY,
    stream_version bigint NOT NULL CHECK (stream_version >= 1),
    schema_version integer NOT NULL,
    state jsonb NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT now()
);
