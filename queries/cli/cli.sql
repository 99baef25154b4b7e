-- The mire command's statements (cmd/mire), for what the store and the
-- runner do not offer: the sequencer's backlog, stream listings and the
-- checks of `mire verify`. Object names carry the schema template, which
-- the store fills in (store.EventStore.SchemaExecutor). "now" is the
-- database's clock unless a caller passes one.

-- name: SequencerBacklog :one
-- Events committed but not yet numbered: those whose writers the last
-- sweep's snapshot did not see (found as sequence_events finds them) and
-- that have no log row; how many, and when the oldest was recorded (now,
-- the database's clock, when there are none). Reads sequencer_sweeps, which
-- only the owner may.
WITH last_sweep AS (
    SELECT pg_snapshot_xmax(s.snapshot) AS xmax, ARRAY(SELECT pg_snapshot_xip(s.snapshot)) AS xip
    FROM /* TEMPLATE: schema */sequencer_sweeps AS s
    ORDER BY s.sweep DESC
    LIMIT 1
), fresh AS (
    SELECT e.seq, e.recorded_at
    FROM /* TEMPLATE: schema */events AS e, last_sweep
    WHERE e.xid >= last_sweep.xmax
    UNION ALL
    SELECT e.seq, e.recorded_at
    FROM /* TEMPLATE: schema */events AS e, last_sweep
    WHERE e.xid = ANY (last_sweep.xip)
)
SELECT count(*)::bigint AS events,
       coalesce(min(fresh.recorded_at), now())::timestamptz AS oldest_recorded_at,
       now()::timestamptz AS now
FROM fresh
WHERE (SELECT l.seq FROM /* TEMPLATE: schema */event_log AS l WHERE l.seq = fresh.seq) IS NULL;

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
            AND (SELECT l.seq FROM /* TEMPLATE: schema */event_log AS l WHERE l.seq = e.seq) IS NULL) AS unsequenced
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
            AND (SELECT l.seq FROM /* TEMPLATE: schema */event_log AS l WHERE l.seq = e.seq) IS NULL)::boolean AS unsequenced
    FROM /* TEMPLATE: schema */events AS e
    WHERE e.stream_id = @stream_id::text
) AS s
WHERE s.stream_version <> s.previous_version + 1 OR s.unsequenced
ORDER BY s.stream_version, s.seq
LIMIT @max_rows;

-- name: VerifyLogPage :many
-- One page of `mire verify`'s log check: up to max_rows log rows after
-- after_position, in position order, each joined to its event as reads
-- join them (on xid and seq). Returns the rows that break a rule (a
-- position that does not follow the one before, previous_position being
-- after_position for the first; no event; another category or bucket than
-- the event's; an event numbered by more than one row, first_position being
-- the lowest of them), and always the page's last row, where the next page
-- starts. The lateral joins with a limit keep each row to index probes: a
-- hash join would scan all of events for every page.
WITH page AS (
    SELECT l.global_position, l.seq, l.xid, l.category, l.bucket
    FROM /* TEMPLATE: schema */event_log AS l
    WHERE l.global_position > @after_position::bigint
    ORDER BY l.global_position
    LIMIT @max_rows
), checked AS (
    SELECT p.global_position,
           lag(p.global_position, 1, @after_position::bigint) OVER (ORDER BY p.global_position)::bigint AS previous_position,
           p.seq, p.category AS log_category, p.bucket AS log_bucket,
           -- Empty and 0 without an event (has_event false).
           coalesce(e.stream_id, '')::text AS stream_id, coalesce(e.stream_version, 0)::bigint AS stream_version,
           e.category AS event_category,
           (e.stream_id IS NOT NULL)::boolean AS has_event,
           coalesce(/* TEMPLATE: schema */stream_bucket(e.stream_id), -1)::smallint AS event_bucket,
           d.log_rows, d.first_position
    FROM page AS p
    LEFT JOIN LATERAL (
        SELECT ev.stream_id, ev.stream_version, ev.category
        FROM /* TEMPLATE: schema */events AS ev
        WHERE ev.xid = p.xid AND ev.seq = p.seq
        LIMIT 1
    ) AS e ON true
    CROSS JOIN LATERAL (
        SELECT count(*)::bigint AS log_rows, min(o.global_position)::bigint AS first_position
        FROM /* TEMPLATE: schema */event_log AS o
        WHERE o.seq = p.seq
    ) AS d
)
SELECT c.global_position, c.previous_position, c.seq, c.log_category, c.log_bucket,
       c.stream_id, c.stream_version, c.event_category, c.has_event, c.event_bucket, c.log_rows, c.first_position
FROM checked AS c
WHERE c.global_position <> c.previous_position + 1
   OR NOT c.has_event
   OR c.event_category IS DISTINCT FROM c.log_category
   OR c.event_bucket <> c.log_bucket
   OR c.log_rows > 1
   OR c.global_position = (SELECT max(p.global_position) FROM page AS p)
ORDER BY c.global_position;

-- name: Listen :exec
LISTEN /* TEMPLATE: channel */events;
