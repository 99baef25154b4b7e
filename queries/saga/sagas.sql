-- The saga module's statements. Object names carry the schema template,
-- which the store fills in (store.EventStore.SchemaExecutor).

-- name: SagaCreate :one
-- Indexes a new saga's journal, due at once. No row: it exists.
INSERT INTO /* TEMPLATE: schema */saga_instances (name, id, stream_id, correlation_id, definition_version, wake_at)
VALUES (@name, @id, @stream_id, @correlation_id, @definition_version, now())
ON CONFLICT DO NOTHING
RETURNING name;

-- name: SagaClaim :many
-- Claims up to max_sagas due sagas of the definitions the worker runs
-- (names) until the claim expires, the longest due first. Sagas another
-- executor holds are skipped.
WITH due AS (
    SELECT s.name, s.id
    FROM /* TEMPLATE: schema */saga_instances AS s
    WHERE s.wake_at <= now() AND (s.claimed_until IS NULL OR s.claimed_until < now())
      AND s.name = ANY (sqlc.arg(names)::text[])
    ORDER BY s.wake_at
    LIMIT sqlc.arg(max_sagas)::integer
    FOR UPDATE SKIP LOCKED
)
UPDATE /* TEMPLATE: schema */saga_instances AS s
SET claimed_by = sqlc.arg(worker)::text, claimed_until = now() + sqlc.arg(claim_ms)::bigint * interval '1 millisecond'
FROM due
WHERE s.name = due.name AND s.id = due.id
RETURNING s.name, s.id, s.stream_id, s.correlation_id, s.definition_version, s.attempts, now()::timestamptz AS db_now;

-- name: SagaNextWake :one
-- When the next saga of the definitions the worker runs falls due, by the
-- database clock, and the clock; no row: none is waiting for a time.
SELECT wake_at::timestamptz AS next_wake, now()::timestamptz AS db_now FROM /* TEMPLATE: schema */saga_instances
WHERE wake_at IS NOT NULL AND name = ANY (sqlc.arg(names)::text[])
ORDER BY wake_at
LIMIT 1;

-- name: SagaLock :one
-- Locks a claimed saga's row for the statement that ends the claim; no
-- row: the claim is another's now.
SELECT name FROM /* TEMPLATE: schema */saga_instances
WHERE name = @name AND id = @id AND claimed_by = sqlc.arg(worker)::text
FOR UPDATE;

-- name: SagaRelease :exec
-- Ends a claim. A saga that suspended until wake_at sleeps until then,
-- unless its journal grew past what the executor read (a reply arrived):
-- then it is due at once. Run after SagaLock in the same transaction, so
-- that the journal is read after any reply that locked the row first.
UPDATE /* TEMPLATE: schema */saga_instances AS s
SET status = sqlc.arg(status)::text,
    wake_at = CASE
        -- The journal's head from the end of its index range (not max(),
        -- which a generic plan made without statistics aggregates over the
        -- whole journal).
        WHEN (SELECT e.stream_version FROM /* TEMPLATE: schema */events AS e WHERE e.stream_id = s.stream_id
              ORDER BY e.stream_version DESC LIMIT 1)
             > sqlc.arg(seen_version)::bigint THEN now()
        ELSE sqlc.narg(wake_at)::timestamptz END,
    attempts = sqlc.arg(attempts)::integer,
    last_error = sqlc.narg(last_error)::text,
    result = sqlc.narg(result)::jsonb,
    claimed_by = NULL, claimed_until = NULL, updated_at = now()
WHERE s.name = sqlc.arg(name)::text AND s.id = sqlc.arg(id)::text;

-- name: SagaRouteTo :one
-- The saga a reply with correlation_id belongs to, made due at once unless
-- it waits for an operator (blocked, or failed in compensation: the reply
-- is kept for when it runs again). Locks its row first, so that an executor
-- ending its claim reads the journal after this transaction's append (see
-- SagaRelease). No row: no such saga, or it has ended.
UPDATE /* TEMPLATE: schema */saga_instances
SET wake_at = CASE WHEN status IN ('blocked', 'compensation_failed') THEN wake_at ELSE now() END,
    updated_at = now()
WHERE correlation_id = @correlation_id AND status NOT IN ('completed', 'failed', 'compensated')
RETURNING name, id, stream_id;

-- name: SagaRenewClaim :execrows
-- Extends a claim while its executor still runs the saga (a long step).
UPDATE /* TEMPLATE: schema */saga_instances
SET claimed_until = now() + sqlc.arg(claim_ms)::bigint * interval '1 millisecond'
WHERE name = sqlc.arg(name)::text AND id = sqlc.arg(id)::text AND claimed_by = sqlc.arg(worker)::text;

-- name: SagaWake :one
-- Makes a saga due at once; with retry, a blocked or failed-compensation
-- saga runs again. No row: no such saga (or nothing to retry).
UPDATE /* TEMPLATE: schema */saga_instances
SET wake_at = now(), updated_at = now(),
    status = CASE WHEN sqlc.arg(retry)::boolean THEN 'running' ELSE status END,
    attempts = CASE WHEN sqlc.arg(retry)::boolean THEN 0 ELSE attempts END
WHERE name = @name AND id = @id
  AND (NOT sqlc.arg(retry)::boolean OR status IN ('blocked', 'compensation_failed'))
  AND (sqlc.arg(retry)::boolean OR status IN ('running', 'waiting', 'compensating'))
RETURNING stream_id;

-- name: SagaGet :one
SELECT name, id, stream_id, correlation_id, definition_version, status, wake_at, claimed_by, claimed_until,
       attempts, last_error, result, created_at, updated_at
FROM /* TEMPLATE: schema */saga_instances
WHERE name = @name AND id = @id;

-- name: SagaList :many
-- Sagas by status and definition (either may be null: all), newest first.
SELECT name, id, stream_id, correlation_id, definition_version, status, wake_at, claimed_by, claimed_until,
       attempts, last_error, result, created_at, updated_at
FROM /* TEMPLATE: schema */saga_instances
WHERE (sqlc.narg(status)::text IS NULL OR status = sqlc.narg(status)::text)
  AND (sqlc.narg(name)::text IS NULL OR name = sqlc.narg(name)::text)
ORDER BY created_at DESC, name, id
LIMIT sqlc.arg(max_sagas)::integer;

-- name: SagaCounts :many
SELECT status, count(*)::bigint AS sagas FROM /* TEMPLATE: schema */saga_instances GROUP BY status ORDER BY status;

-- name: DatabaseNow :one
SELECT now()::timestamptz AS now;
