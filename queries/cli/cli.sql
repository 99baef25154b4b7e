-- The mire command's statements (cmd/mire), for what the store and the
-- runner do not offer: the sequencer's backlog, stream listings and the
-- checks of `mire verify`. Object names carry the schema template, which
-- the store fills in (store.EventStore.SchemaExecutor). "now" is the
-- database's clock unless a caller passes one.

-- name: SequencerBacklog :one
-- Events committed but not yet numbered: those whose writers the last
-- sweep's snapshot did not see (found as sequence_events finds them) and
-- that no run of the log holds; how many, and when the oldest was recorded (now,
-- the database's clock, when there are none). Reads sequencer_sweeps, which
-- only the owner may.
WITH last_sweep AS (
    SELECT pg_snapshot_xmax(s.snapshot) AS xmax, ARRAY(SELECT pg_snapshot_xip(s.snapshot)) AS xip
    FROM /* TEMPLATE: schema */sequencer_sweeps AS s
    ORDER BY s.sweep DESC
    LIMIT 1
), fresh AS (
    SELECT e.stream_id, e.stream_version, e.recorded_at
    FROM /* TEMPLATE: schema */events AS e, last_sweep
    WHERE e.xid >= last_sweep.xmax
    UNION ALL
    SELECT e.stream_id, e.stream_version, e.recorded_at
    FROM /* TEMPLATE: schema */events AS e, last_sweep
    WHERE e.xid = ANY (last_sweep.xip)
)
SELECT count(*)::bigint AS events,
       coalesce(min(fresh.recorded_at), now())::timestamptz AS oldest_recorded_at,
       now()::timestamptz AS now
FROM fresh
-- No run of the log holds it: its stream's last run starting at or before
-- its version ends before it.
WHERE coalesce((SELECT l.first_version + l.event_count FROM /* TEMPLATE: schema */event_log AS l
                      WHERE l.stream_id = fresh.stream_id AND l.first_version <= fresh.stream_version
                      ORDER BY l.first_version DESC
                      LIMIT 1), 0) <= fresh.stream_version;

-- name: StreamList :many
-- Up to max_streams streams after after_stream_id, in stream id order,
-- with their version, event count and first and last append.
SELECT e.stream_id, max(e.stream_version)::bigint AS version, count(*)::bigint AS events,
       min(e.recorded_at)::timestamptz AS first_recorded_at, max(e.recorded_at)::timestamptz AS last_recorded_at
FROM /* TEMPLATE: schema */events AS e
WHERE e.stream_id > @after_stream_id::text
GROUP BY e.stream_id
ORDER BY e.stream_id
LIMIT @max_streams;

-- name: StreamListByCategory :many
-- StreamList for the streams of one category. A category's stream ids
-- all start with the category and "-" (the category is the part before
-- the first "-"), so they are one range of the (stream_id, stream_version)
-- index, compared byte by byte ("." follows "-").
SELECT e.stream_id, max(e.stream_version)::bigint AS version, count(*)::bigint AS events,
       min(e.recorded_at)::timestamptz AS first_recorded_at, max(e.recorded_at)::timestamptz AS last_recorded_at
FROM /* TEMPLATE: schema */events AS e
WHERE e.stream_id > @after_stream_id::text
  AND e.stream_id > @category::text || '-' AND e.stream_id < @category::text || '.'
  AND e.category = @category::text
GROUP BY e.stream_id
ORDER BY e.stream_id
LIMIT @max_streams;

-- name: VerifyStreamPage :many
-- One page of `mire verify`'s stream check: up to max_streams streams after
-- after_stream_id, in stream id order, each with its event count, lowest,
-- highest and distinct versions (versions run 1..n exactly when the count,
-- the highest and the distinct count are n and the lowest is 1), and how
-- many of its events recorded more than max_age_ms ago have no position.
-- The index on (stream_id, stream_version) feeds the aggregate in order, so
-- a page reads only its own streams' events.
SELECT s.stream_id, count(*)::bigint AS events,
       min(s.stream_version)::bigint AS min_version, max(s.stream_version)::bigint AS max_version,
       count(DISTINCT s.stream_version)::bigint AS distinct_versions,
       count(*) FILTER (WHERE s.unsequenced)::bigint AS unsequenced
FROM (
    SELECT e.stream_id, e.stream_version,
           (e.recorded_at < coalesce(sqlc.narg('now')::timestamptz, now()) - sqlc.arg(max_age_ms)::bigint * interval '1 millisecond'
            AND coalesce((SELECT l.first_version + l.event_count FROM /* TEMPLATE: schema */event_log AS l
                          WHERE l.stream_id = e.stream_id AND l.first_version <= e.stream_version
                          ORDER BY l.first_version DESC
                          LIMIT 1), 0) <= e.stream_version) AS unsequenced
    FROM /* TEMPLATE: schema */events AS e
    WHERE e.stream_id > @after_stream_id::text
) AS s
GROUP BY s.stream_id
ORDER BY s.stream_id
LIMIT @max_streams;

-- name: VerifyStreamEvents :many
-- The events of one stream that VerifyStreamPage found wrong, in version
-- order: each whose version does not follow the one before it
-- (previous_version, 0 for the first), and each recorded more than
-- max_age_ms ago without a position. At most max_rows.
SELECT s.stream_version, s.previous_version, s.seq, s.recorded_at, s.unsequenced
FROM (
    SELECT e.stream_version,
           lag(e.stream_version, 1, 0::bigint) OVER (ORDER BY e.stream_version, e.seq)::bigint AS previous_version,
           e.seq, e.recorded_at,
           (e.recorded_at < coalesce(sqlc.narg('now')::timestamptz, now()) - sqlc.arg(max_age_ms)::bigint * interval '1 millisecond'
            AND coalesce((SELECT l.first_version + l.event_count FROM /* TEMPLATE: schema */event_log AS l
                          WHERE l.stream_id = e.stream_id AND l.first_version <= e.stream_version
                          ORDER BY l.first_version DESC
                          LIMIT 1), 0) <= e.stream_version)::boolean AS unsequenced
    FROM /* TEMPLATE: schema */events AS e
    WHERE e.stream_id = @stream_id::text
) AS s
WHERE s.stream_version <> s.previous_version + 1 OR s.unsequenced
ORDER BY s.stream_version, s.seq
LIMIT @max_rows;

-- name: VerifyLogPage :many
-- One page of `mire verify`'s log check: up to max_rows runs of the log
-- after after_position, in position order, each checked against its events.
-- Returns the runs that break a rule (a run that does not start right after
-- the one before, whose last position is previous_position, after_position
-- for the first; a run whose stream lacks some of its versions, events being
-- how many it has; another category than its events' or another bucket than
-- its stream id's; a run that numbers events an earlier run of its stream
-- numbers too, first_position being where that run numbers the first of
-- them), and always the page's last run, where the next page starts. The
-- lateral joins keep each run to index probes and one range of its events.
WITH page AS (
    SELECT l.global_position, l.event_count, l.stream_id, l.first_version, l.category, l.bucket
    FROM /* TEMPLATE: schema */event_log AS l
    WHERE l.global_position > @after_position::bigint
    ORDER BY l.global_position
    LIMIT @max_rows
), checked AS (
    SELECT p.global_position, p.event_count::bigint AS event_count,
           lag(p.global_position + p.event_count - 1, 1, @after_position::bigint)
               OVER (ORDER BY p.global_position)::bigint AS previous_position,
           coalesce(first_event.seq, 0)::bigint AS seq, p.category AS log_category, p.bucket AS log_bucket,
           p.stream_id, p.first_version, first_event.category AS event_category,
           stored.events,
           /* TEMPLATE: schema */stream_bucket(p.stream_id) AS event_bucket,
           coalesce(earlier.global_position + (p.first_version - earlier.first_version), 0)::bigint AS first_position
    FROM page AS p
    CROSS JOIN LATERAL (
        SELECT count(*)::bigint AS events
        FROM /* TEMPLATE: schema */events AS ev
        WHERE ev.stream_id = p.stream_id
          AND ev.stream_version >= p.first_version AND ev.stream_version < p.first_version + p.event_count
    ) AS stored
    LEFT JOIN LATERAL (
        SELECT ev.seq, ev.category
        FROM /* TEMPLATE: schema */events AS ev
        WHERE ev.stream_id = p.stream_id AND ev.stream_version >= p.first_version
        ORDER BY ev.stream_version
        LIMIT 1
    ) AS first_event ON true
    -- The stream's run before this one, if it reaches into this one.
    LEFT JOIN LATERAL (
        SELECT o.global_position, o.first_version, o.event_count
        FROM /* TEMPLATE: schema */event_log AS o
        WHERE o.stream_id = p.stream_id AND o.first_version < p.first_version
        ORDER BY o.first_version DESC
        LIMIT 1
    ) AS earlier ON earlier.first_version + earlier.event_count > p.first_version
)
SELECT c.global_position, c.event_count, c.previous_position, c.seq, c.log_category, c.log_bucket,
       c.stream_id, c.first_version, c.event_category, c.events, c.event_bucket, c.first_position
FROM checked AS c
WHERE c.global_position <> c.previous_position + 1
   OR c.events <> c.event_count
   OR c.event_category IS DISTINCT FROM c.log_category
   OR c.event_bucket <> c.log_bucket
   OR c.first_position <> 0
   OR c.global_position = (SELECT max(p.global_position) FROM page AS p)
ORDER BY c.global_position;

-- name: Listen :exec
LISTEN /* TEMPLATE: channel */events;
