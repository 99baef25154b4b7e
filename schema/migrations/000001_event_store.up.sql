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
    -- "account-42" is in category "account"; an ID without "-" in none
    -- (NULL). Set by the appender: a generated column would cost an
    -- expression evaluation on every insert and on every sequencer update.
    category text,
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
