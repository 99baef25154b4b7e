-- The projection runner's statements (runner module). Object names carry
-- the schema template, which the store fills in
-- (store.EventStore.SchemaExecutor). The lease TTL is passed in
-- milliseconds; "now" is the database's clock.

-- name: SubscriptionCreate :exec
-- Creates the rows of a subscription's partitions, starting at checkpoint;
-- rows that exist keep theirs.
INSERT INTO /* TEMPLATE: schema */subscriptions (name, partition, partitions, checkpoint)
SELECT @name::text, p.partition, @partitions::integer, @checkpoint::bigint
FROM generate_series(0, @last_partition::integer) AS p (partition)
ON CONFLICT (name, partition) DO NOTHING;

-- name: SubscriptionShape :one
-- How many partitions the stored rows of a subscription say it has.
SELECT count(*)::integer AS partition_rows, coalesce(min(partitions), 0)::integer AS min_partitions,
       coalesce(max(partitions), 0)::integer AS max_partitions
FROM /* TEMPLATE: schema */subscriptions
WHERE name = @name;

-- name: WorkerHeartbeat :one
-- Records worker as a live candidate for leading name's partitions, forgets
-- candidates gone quiet, and returns how many other live candidates there
-- are. A worker that joins announces it, so that leaders give up what is
-- now beyond their share without waiting for their next recheck.
WITH beat AS (
    INSERT INTO /* TEMPLATE: schema */subscription_workers (name, worker, expires_at)
    VALUES (@name, @worker, now() + sqlc.arg(ttl_ms)::bigint * interval '1 millisecond')
    ON CONFLICT (name, worker) DO UPDATE SET expires_at = excluded.expires_at
    RETURNING (xmax = 0) AS joined
), gone AS (
    DELETE FROM /* TEMPLATE: schema */subscription_workers AS w
    WHERE w.name = @name AND w.expires_at < now() - interval '1 minute'
), announced AS (
    SELECT pg_notify(@channel::text, @name::text) FROM beat WHERE beat.joined
)
SELECT (SELECT count(*) FROM /* TEMPLATE: schema */subscription_workers AS w
        WHERE w.name = @name AND w.worker <> @worker AND w.expires_at >= now())::integer AS others,
       (SELECT count(*) FROM announced)::integer AS announced;

-- name: WorkerForget :exec
DELETE FROM /* TEMPLATE: schema */subscription_workers
WHERE name = @name AND worker = @worker;

-- name: LeaseAcquire :one
-- Takes a partition's lease if it is free or expired, with a new fence.
-- No row: another worker holds it.
UPDATE /* TEMPLATE: schema */subscriptions
SET worker = sqlc.arg(worker)::text, fence = fence + 1,
    lease_expires_at = now() + sqlc.arg(ttl_ms)::bigint * interval '1 millisecond', updated_at = now()
WHERE name = @name AND partition = @partition
  AND (worker IS NULL OR lease_expires_at < now())
RETURNING fence, checkpoint, state, attempts, attempt_from, attempt_to, parked_changes;

-- name: LeaseRenew :one
-- Extends the lease held under fence. No row: fenced, the lease is
-- another's now.
UPDATE /* TEMPLATE: schema */subscriptions
SET lease_expires_at = now() + sqlc.arg(ttl_ms)::bigint * interval '1 millisecond'
WHERE name = sqlc.arg(name)::text AND partition = sqlc.arg(partition)::integer
  AND worker = sqlc.arg(worker)::text AND fence = sqlc.arg(fence)::bigint
RETURNING checkpoint, state, parked_changes;

-- name: LeaseRelease :exec
-- Gives up the lease held under fence and announces it, so that a standby
-- takes it over at once.
WITH released AS (
    UPDATE /* TEMPLATE: schema */subscriptions
    SET worker = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE name = @name AND partition = @partition AND worker = @worker::text AND fence = @fence
    RETURNING name
)
SELECT pg_notify(@channel::text, released.name) FROM released;

-- name: LeaseHolders :many
-- Who holds each partition of name, for spreading leases over workers.
SELECT partition, worker, (worker IS NOT NULL AND lease_expires_at >= now())::boolean AS live
FROM /* TEMPLATE: schema */subscriptions
WHERE name = @name
ORDER BY partition;

-- name: AttemptRecord :one
-- Counts an attempt to move past the checkpoint, before the batch is
-- dispatched: attempt_from is the checkpoint + 1, so every attempt from
-- one checkpoint counts against the same events, and attempt_to keeps the
-- end of the largest batch tried from there. No row: fenced.
UPDATE /* TEMPLATE: schema */subscriptions
SET attempts = CASE WHEN attempt_from = @attempt_from::bigint THEN attempts + 1 ELSE 1 END,
    attempt_to = CASE WHEN attempt_from = @attempt_from::bigint THEN greatest(attempt_to, @attempt_to::bigint) ELSE @attempt_to::bigint END,
    attempt_from = @attempt_from::bigint
WHERE name = @name AND partition = @partition AND worker = @worker::text AND fence = @fence
RETURNING attempts, attempt_to, last_error;

-- name: AttemptUndo :exec
-- Takes back an attempt that did not fail because of its events: the
-- database failed it (a lost connection), or the worker was stopped.
UPDATE /* TEMPLATE: schema */subscriptions
SET attempts = greatest(attempts - 1, 0)
WHERE name = @name AND partition = @partition AND worker = @worker::text AND fence = @fence
  AND attempt_from = @attempt_from::bigint;

-- name: AttemptFailed :exec
-- Records why the last attempt failed.
UPDATE /* TEMPLATE: schema */subscriptions
SET last_error = @last_error::text, error_position = @error_position::bigint, updated_at = now()
WHERE name = @name AND partition = @partition AND worker = @worker::text AND fence = @fence;

-- name: CheckpointSave :one
-- Moves the checkpoint, in the transaction that handled the events up to
-- it. With next_attempt it also counts the first attempt at the batch
-- after it, which the worker dispatches at once (it is catching up): one
-- statement fewer per batch. No row: fenced (roll back), the checkpoint
-- was reset meanwhile, or the partition is no longer running: a batch that
-- began before a Pause (its leader learns of it only at its next renewal)
-- must not commit after Pause returned. LeaseState tells which.
UPDATE /* TEMPLATE: schema */subscriptions
SET checkpoint = sqlc.arg(checkpoint)::bigint,
    attempts = CASE WHEN sqlc.arg(next_attempt)::boolean THEN 1 ELSE 0 END,
    attempt_from = CASE WHEN sqlc.arg(next_attempt)::boolean THEN sqlc.arg(checkpoint)::bigint + 1 END,
    attempt_to = NULL, updated_at = now()
WHERE name = sqlc.arg(name)::text AND partition = sqlc.arg(partition)::integer
  AND worker = sqlc.arg(worker)::text AND fence = sqlc.arg(fence)::bigint
  AND checkpoint = sqlc.arg(previous)::bigint
  AND state = 'running'
RETURNING checkpoint;

-- name: LeaseState :one
-- The partition's state, if worker still holds it with fence.
SELECT state FROM /* TEMPLATE: schema */subscriptions
WHERE name = @name::text AND partition = @partition::integer AND worker = @worker::text AND fence = @fence::bigint;

-- name: SubscriptionFail :one
-- Stops a partition after an event failed past the retry limit: the state
-- is durable, so no other worker takes over and fails in turn.
UPDATE /* TEMPLATE: schema */subscriptions
SET state = 'failed', last_error = @last_error::text, error_position = @error_position::bigint, updated_at = now()
WHERE name = @name AND partition = @partition AND worker = @worker::text AND fence = @fence
RETURNING state;

-- name: TxTimeout :exec
-- Bounds how long the checkpoint transaction may sit idle: a worker paused
-- past its lease (a stopped process, a long GC) loses its session and so
-- its locks, instead of holding up the worker that took over.
SELECT set_config('idle_in_transaction_session_timeout', @timeout::text, true);

-- name: SubscriptionSetState :many
-- Pauses or resumes partitions (all when partition is null), and tells
-- their leaders. Resuming a failed partition retries its failed event
-- with a fresh count of attempts.
WITH changed AS (
    UPDATE /* TEMPLATE: schema */subscriptions AS s
    SET state = @state::text, updated_at = now(),
        attempts = CASE WHEN @state::text = 'running' THEN 0 ELSE s.attempts END
    WHERE s.name = @name::text AND (sqlc.narg('partition')::integer IS NULL OR s.partition = sqlc.narg('partition')::integer)
    RETURNING s.partition
)
SELECT changed.partition FROM changed, pg_notify(@channel::text, @name::text);

-- name: SubscriptionReset :many
-- Moves partitions' checkpoints (all when partition is null), whoever
-- holds their leases: the fence moves too and the lease is freed, so a
-- leader's batch in flight rolls back instead of committing past the
-- reset, and the leader acquires the partition again from the new
-- checkpoint. A failed partition runs again; parked streams are released,
-- since the replay reaches their events again.
WITH changed AS (
    UPDATE /* TEMPLATE: schema */subscriptions AS s
    SET checkpoint = @checkpoint::bigint, fence = s.fence + 1, worker = NULL, lease_expires_at = NULL,
        attempts = 0, attempt_from = NULL, attempt_to = NULL, last_error = NULL, error_position = NULL,
        state = CASE WHEN s.state = 'failed' THEN 'running' ELSE s.state END, updated_at = now()
    WHERE s.name = @name::text AND (sqlc.narg('partition')::integer IS NULL OR s.partition = sqlc.narg('partition')::integer)
    RETURNING s.partition
), unparked AS (
    DELETE FROM /* TEMPLATE: schema */parked_streams AS p
    USING changed
    WHERE p.name = @name::text AND p.partition = changed.partition
)
SELECT changed.partition FROM changed, pg_notify(@channel::text, @name::text);

-- name: SubscriptionLock :many
-- Locks a subscription's rows for a reset, so that its hook runs while no
-- batch can commit.
SELECT partition FROM /* TEMPLATE: schema */subscriptions
WHERE name = @name
ORDER BY partition
FOR UPDATE;

-- name: SubscriptionStatus :many
SELECT name, partition, partitions, checkpoint, state, worker, fence, lease_expires_at,
       (worker IS NOT NULL AND lease_expires_at >= now())::boolean AS live,
       attempts, last_error, error_position, updated_at,
       (SELECT count(*) FROM /* TEMPLATE: schema */parked_streams AS p
        WHERE p.name = s.name AND p.partition = s.partition)::integer AS parked
FROM /* TEMPLATE: schema */subscriptions AS s
WHERE sqlc.narg('name')::text IS NULL OR name = sqlc.narg('name')::text
ORDER BY name, partition;

-- name: CheckpointOf :one
-- A partition's progress, for WaitFor: its checkpoint, whether it failed,
-- and the first version of stream_id it holds parked, if any.
SELECT s.checkpoint, s.state, s.error_position, s.last_error,
       coalesce((SELECT p.stream_version FROM /* TEMPLATE: schema */parked_streams AS p
                 WHERE p.name = s.name AND p.partition = s.partition AND p.stream_id = @stream_id::text), 0)::bigint AS parked_version
FROM /* TEMPLATE: schema */subscriptions AS s
WHERE s.name = @name::text AND s.partition = @partition::integer;

-- name: SubscriptionDrop :execrows
-- Deletes a subscription: its checkpoints, leases, workers and parked
-- streams (the skip record stays). The schema owner's statement.
WITH workers AS (
    DELETE FROM /* TEMPLATE: schema */subscription_workers AS w WHERE w.name = @name::text
)
DELETE FROM /* TEMPLATE: schema */subscriptions AS s WHERE s.name = @name::text;

-- name: StreamPark :exec
-- Parks a stream at its failed event, in the transaction that moves the
-- checkpoint past it.
WITH parked AS (
    INSERT INTO /* TEMPLATE: schema */parked_streams (name, partition, stream_id, stream_version, global_position, error)
    VALUES (@name, @partition, @stream_id, @stream_version, @global_position, @error)
    ON CONFLICT (name, partition, stream_id) DO NOTHING
)
UPDATE /* TEMPLATE: schema */subscriptions AS s
SET parked_changes = s.parked_changes + 1
WHERE s.name = @name AND s.partition = @partition;

-- name: ParkedList :many
SELECT name, partition, stream_id, stream_version, global_position, error, parked_at,
       retry_requested_at, skip_reason
FROM /* TEMPLATE: schema */parked_streams
WHERE name = @name AND (sqlc.narg('partition')::integer IS NULL OR partition = sqlc.narg('partition')::integer)
ORDER BY partition, global_position;

-- name: ParkedRequestRetry :one
-- Asks the leader to handle a parked stream's held events again, skipping
-- the failed one first when skip_reason is set.
WITH asked AS (
    UPDATE /* TEMPLATE: schema */parked_streams AS p
    SET retry_requested_at = now(), skip_reason = sqlc.narg('skip_reason')::text
    WHERE p.name = @name AND p.stream_id = @stream_id
    RETURNING p.partition
), bumped AS (
    UPDATE /* TEMPLATE: schema */subscriptions AS s
    SET parked_changes = s.parked_changes + 1
    FROM asked
    WHERE s.name = @name AND s.partition = asked.partition
)
SELECT count(*)::integer FROM asked, pg_notify(@channel::text, @name::text);

-- name: ParkedMove :exec
-- After a retry handled a parked stream's events up to stream_version - 1,
-- holds it at stream_version, with the new error.
UPDATE /* TEMPLATE: schema */parked_streams
SET stream_version = @stream_version, global_position = @global_position, error = @error,
    retry_requested_at = NULL, skip_reason = NULL, parked_at = now()
WHERE name = @name AND partition = @partition AND stream_id = @stream_id;

-- name: ParkedRelease :exec
DELETE FROM /* TEMPLATE: schema */parked_streams
WHERE name = @name AND partition = @partition AND stream_id = @stream_id;

-- name: EventSkip :exec
INSERT INTO /* TEMPLATE: schema */skipped_events (name, partition, global_position, stream_id, stream_version, reason, error)
VALUES (@name, @partition, @global_position, @stream_id, @stream_version, @reason, sqlc.narg('error'))
ON CONFLICT DO NOTHING;

-- name: SkippedList :many
SELECT name, partition, global_position, stream_id, stream_version, reason, error, skipped_at
FROM /* TEMPLATE: schema */skipped_events
WHERE name = @name
ORDER BY global_position;

-- name: Listen :exec
LISTEN /* TEMPLATE: channel */events;

-- name: ListenLeases :exec
LISTEN /* TEMPLATE: channel */leases;
