-- name: TxSetLockTimeout :exec
-- Bounds how long the rest of the transaction waits for a lock (a stream
-- lock, or a version another transaction is appending).
SELECT set_config('lock_timeout', @timeout::text, true);
