// Package core holds mire's database-free building blocks: events and their
// envelopes, expected versions, stream queries, the event type registry,
// aggregates and the error types every other mire module returns.
//
// Nothing here talks to PostgreSQL; package store does. Keeping core free of
// drivers lets domain code (aggregates, events, command handlers) depend on
// mire without pulling pgx into its build.
//
// # Events
//
// A domain event is any Go type implementing [EventData]. Its EventType
// string is stored beside the event and is wire format: renaming it orphans
// history, so treat it like a column name. A [Registry] maps stored event
// types back to Go types when events are read.
//
// # Aggregates
//
// An [Aggregate] folds events into state with a deterministic, side-effect
// free Apply. A [Root] wraps the state with its identity, the version it was
// loaded at and the events recorded since, which a store saves with
// optimistic concurrency.
package core
