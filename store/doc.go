// Package store is mire's PostgreSQL event store.
//
// An [EventStore] appends events to streams with optimistic concurrency
// ([core.ExpectedVersion]), reads them back by stream, category or the whole
// log ([core.StreamQuery]), and loads and saves aggregates ([Load], [Save]).
// Every write has a ...Tx variant that runs inside the caller's pgx.Tx, so a
// service can commit its own rows and its events atomically.
//
// # Global order
//
// Appends store events without a global position. A sequencer
// ([EventStore.Sequence], run by readers of the log or by [Sequencer] in the
// background) then numbers the events whose
// writers committed since its previous run, in one short, serialized
// transaction that compares their transaction ids with the snapshot it
// stored last time. Positions are therefore gapless and become visible only
// as a committed prefix: a subscriber that reads "global_position >
// checkpoint" never skips an event, whatever mix of slow, rolled-back and
// concurrent appends happened, and an unrelated open transaction never
// delays it. Per-stream and causal order hold because events are numbered in
// insertion order, and an append to a stream can only insert after the
// previous append to it committed.
//
// # Concurrency
//
// The unique (stream_id, stream_version) index decides who appends a
// version: a writer that loses gets a [*core.VersionConflictError] with the
// version that won, and inside a caller's transaction the transaction stays
// usable. [LoadForUpdate] takes a stream lock that holds off other appends
// to the stream until its scope ends.
//
// A stream that met a conflict in the last 100 ms is hot: the store
// remembers the highest version it saw committed there and answers an
// append that expects an older one without a round trip, sends the
// process's appends to it one at a time (the next waits, briefly, for the
// outcome of the one in flight), and lets concurrent [EventStore.StreamVersion]
// callers share one read that starts after each of them asked. Writers that
// race for a stream and re-read its version after each conflict so cost
// about three statements per stored event, however many there are.
//
// # Schema
//
// All objects live in one PostgreSQL schema, "mire" unless [Config].Schema
// says otherwise; run [EventStore.Migrate] once per schema (it is idempotent
// and safe to call from several processes at once).
//
// # Background work
//
// [Sequencer] follows mire's lifecycle for background components
// (package github.com/mire-go/mire/core/lifecycle): Start returns at once,
// Stop waits for its goroutine and is idempotent. An EventStore owns no
// connections and needs no closing; [EventStore.Close] waits for the
// goroutines that write grouped appends, for a shutdown that leaves nothing
// running.
package store
