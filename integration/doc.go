// Package integration holds mire's tests against a real PostgreSQL server:
// the event store's behaviour, its concurrency and ordering guarantees, bad
// input, and migrations. Package pgenv finds the server and isolates tests.
package integration
