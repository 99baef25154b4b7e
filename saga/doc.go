// Package saga coordinates work across aggregates with durable steps: a
// saga is a Go function (Define) that sends requests (Send), awaits typed
// replies (Await, AwaitResponse) with deadlines, runs side effects (Step)
// and transactional steps (StepTx), sleeps (Sleep), and registers
// compensations (Context.Compensate) that undo its steps, in reverse, when
// it fails.
//
// # Durability
//
// A saga's state is its journal, a stream of its own ("saga.<name>-<id>"):
// its start and input, each step's result, each reply that reached it,
// timers, compensations and its outcome. An executor (Engine) replays the
// function on the journal, each journaled step returning its journaled
// result, and runs the first step not journaled. A saga waiting for a reply
// or a timer holds no goroutine: it is woken when one arrives. Replies are
// routed into journals by a runner subscription (InboxSubscription), in its
// checkpoint transaction, each once.
//
// # Guarantees
//
//   - Exactly once: journal entries; Send (the request and its journal entry
//     commit together); StepTx (its writes and its journal entry commit
//     together); the routing of a reply into a journal.
//   - At least once: Step's side effect (a crash before its result is
//     journaled runs it again, with the same StepInfo.IdempotencyKey).
//   - One executor at a time: a saga is claimed, and the journal's stream
//     version fences a stale executor, whose appends conflict and roll back.
//   - Timers use the database clock, survive restarts, and a timeout and a
//     reply that race have one journaled outcome.
//
// Code between steps runs again on every replay, so it must be
// deterministic: take time and ids from c.Now and c.UUID, and do I/O in
// steps. A journal that no longer matches the code (a step of another kind
// or name at the same place), or a saga of a version this engine does not
// define, blocks the saga with the reason (Info.LastError) instead of
// corrupting it; Engine.Retry runs it again once fixed.
package saga
