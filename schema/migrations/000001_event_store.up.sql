-- The event log. Runs with search_path set to the store's schema.

-- One row per stream: its current version. Appends lock this row, which
-- serializes writers of one stream (and only of that stream) and makes the
-- expected-version check exact.
CREATE TABLE streams (
    stream_id text PRIMARY KEY,
    version bigint NOT NULL CHECK (version >= 1),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Events. seq is handed out at insert time and so respects each stream's
-- version order; global_position is assigned after commit by
-- sequence_events() below, in seq order, gapless. Readers of the whole log
-- only ever see a committed prefix of positions, so no event is skipped.
CREATE TABLE events (
    seq bigserial NOT NULL,
    global_position bigint,
    stream_id text NOT NULL,
    stream_version bigint NOT NULL CHECK (stream_version >= 1),
    -- "account-42" is in category "account"; an ID without "-" in none.
    category text GENERATED ALWAYS AS (
        CASE WHEN strpos(stream_id, '-') > 0 THEN split_part(stream_id, '-', 1) END
    ) STORED,
    event_id uuid NOT NULL,
    event_type text NOT NULL,
    data jsonb NOT NULL,
    headers jsonb,
    correlation_id uuid,
    causation_id uuid,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);

-- The event id identifies a row for logical replication, without the cost of
-- another index on every insert.
ALTER TABLE events REPLICA IDENTITY USING INDEX events_event_id_key;

-- Partial indexes: an append touches neither of these two, the sequencer
-- adds the entries when it assigns a position.
CREATE UNIQUE INDEX events_global_position_key ON events (global_position)
    WHERE global_position IS NOT NULL;
CREATE INDEX events_category_position_idx ON events (category, global_position)
    WHERE global_position IS NOT NULL;

-- The sequencer's work queue: only events still waiting for a position.
CREATE INDEX events_unsequenced_idx ON events (seq)
    WHERE global_position IS NULL;

-- sequence_events assigns global positions to committed events that have
-- none, in seq order, and returns how many it assigned. Sweeps are
-- serialized by an advisory lock (one per events table) and each statement
-- below takes a fresh snapshot, so every sweep numbers exactly the events
-- committed before it, after all earlier sweeps: positions are gapless and
-- become visible as a prefix. It never waits for appending transactions.
-- After assigning positions it notifies the '<schema>.events' channel with
-- the new head, outside any append transaction.
CREATE FUNCTION sequence_events(max_events integer) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
AS $$
DECLARE
    head bigint;
    assigned bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM events WHERE global_position IS NULL) THEN
        RETURN 0;
    END IF;

    -- 1296385 is 'mire' in base 36: the lock class of the sequencer.
    PERFORM pg_advisory_xact_lock(1296385, 'events'::regclass::oid::integer);

    SELECT coalesce(max(global_position), 0) INTO head
    FROM events
    WHERE global_position IS NOT NULL;

    WITH pending AS (
        SELECT seq, head + row_number() OVER (ORDER BY seq) AS position
        FROM (
            SELECT seq FROM events
            WHERE global_position IS NULL
            ORDER BY seq
            LIMIT max_events
        ) next_events
    )
    UPDATE events
    SET global_position = pending.position
    FROM pending
    WHERE events.seq = pending.seq
      AND events.global_position IS NULL;

    GET DIAGNOSTICS assigned = ROW_COUNT;
    IF assigned > 0 THEN
        PERFORM pg_notify(current_schema() || '.events', (head + assigned)::text);
    END IF;
    RETURN assigned;
END;
$$;

-- append_events appends a batch of events to one stream in one statement:
-- it checks the expected version against the stream row (locking it, so
-- writers of one stream queue up and each sees the previous commit), bumps
-- the version and inserts the events. When the expectation fails, or one of
-- the event ids is already stored (a retried append), it writes nothing and
-- returns appended = 0 with the stream's current version and whether the ids
-- exist: a lost race is a result, not an exception, so a caller's transaction
-- stays usable.
--
-- p_expected_kind is 'any', 'no_stream', 'stream_exists' or 'exact'.
CREATE FUNCTION append_events(
    p_stream_id text,
    p_expected_kind text,
    p_expected_version bigint,
    p_event_ids uuid[],
    p_event_types text[],
    p_data jsonb[],
    p_headers jsonb[],
    p_correlation_ids uuid[],
    p_causation_ids uuid[]
) RETURNS TABLE (
    appended bigint,
    to_version bigint,
    committed_at timestamptz,
    current_version bigint,
    duplicate_ids boolean
)
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
AS $$
DECLARE
    n bigint := cardinality(p_event_ids);
    no_id constant uuid := '00000000-0000-0000-0000-000000000000';
BEGIN
    WITH bumped AS (
        UPDATE streams
        SET version = streams.version + n, updated_at = now()
        WHERE streams.stream_id = p_stream_id
          AND p_expected_kind IN ('exact', 'stream_exists')
          AND (p_expected_kind = 'stream_exists' OR streams.version = p_expected_version)
          AND NOT EXISTS (SELECT 1 FROM events WHERE events.event_id = ANY(p_event_ids))
        RETURNING streams.version
    ),
    created AS (
        INSERT INTO streams AS existing (stream_id, version)
        SELECT p_stream_id, n
        WHERE p_expected_kind IN ('any', 'no_stream')
          AND NOT EXISTS (SELECT 1 FROM events WHERE events.event_id = ANY(p_event_ids))
        ON CONFLICT (stream_id) DO UPDATE
        SET version = existing.version + excluded.version, updated_at = now()
        WHERE p_expected_kind = 'any'
        RETURNING existing.version
    ),
    new_head AS (
        SELECT bumped.version FROM bumped
        UNION ALL
        SELECT created.version FROM created
    ),
    inserted AS (
        INSERT INTO events
            (stream_id, stream_version, event_id, event_type, data, headers, correlation_id, causation_id)
        SELECT p_stream_id,
               new_head.version - n + batch.i,
               p_event_ids[batch.i],
               p_event_types[batch.i],
               p_data[batch.i],
               p_headers[batch.i],
               nullif(p_correlation_ids[batch.i], no_id),
               nullif(p_causation_ids[batch.i], no_id)
        FROM new_head, generate_series(1, n) AS batch(i)
        RETURNING events.stream_version, events.recorded_at
    )
    SELECT count(*), coalesce(max(inserted.stream_version), 0), coalesce(min(inserted.recorded_at), now())
    INTO appended, to_version, committed_at
    FROM inserted;

    IF appended > 0 THEN
        current_version := to_version;
        duplicate_ids := false;
    ELSE
        -- A new statement, so a new snapshot: the version that beat us.
        current_version := coalesce((SELECT streams.version FROM streams WHERE streams.stream_id = p_stream_id), 0);
        duplicate_ids := EXISTS (SELECT 1 FROM events WHERE events.event_id = ANY(p_event_ids));
    END IF;
    RETURN NEXT;
END;
$$;
