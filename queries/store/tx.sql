-- name: TxSetLockTimeout :exec
-- Bounds how long the rest of the transaction waits for row locks.
SELECT set_config('lock_timeout', @timeout::text, true);
