// Package runner keeps read models current: a Runner follows the store's
// global log and hands each subscription's events to its handler, in order,
// under a fenced lease per subscription partition, so that any number of
// replicas run it with one leader per partition.
//
// # Guarantees
//
//   - Order: a partition's events arrive in global order, so each stream's
//     in version order. No event is skipped: positions are a gapless,
//     committed prefix of the log (the store's sequencer sees to it; the
//     runner runs one unless Config.NoSequencer).
//   - A TransactionalEventHandler writes in the transaction that moves the
//     checkpoint, so a read model kept in PostgreSQL counts each event once,
//     across crashes and failovers: a worker whose lease was taken over
//     (fenced) rolls back. An EventHandler is at-least-once.
//   - Leases live in the subscriptions table (no advisory locks), so they
//     work through transaction-pooling proxies; Config.PollOnly turns off
//     LISTEN for those. Fence tokens only grow, across restarts.
//   - Attempts are stored before each dispatch: a handler that crashes the
//     process is not redelivered forever. Past Config.MaxAttempts the
//     subscription stops (the default: a durable failed state) or parks the
//     stream (Subscription.OnFailure). A failed batch is retried one event
//     at a time, to find the one at fault.
//
// # Operations
//
// Control (Runner.Control, or NewControl in a process that runs no runner)
// reads LeaseStatus, pauses, resumes and resets subscriptions, lists,
// retries and skips parked streams, and waits for a subscription to handle
// what an append returned (WaitFor: read your writes).
package runner
