// Package examples holds runnable programs that show mire end to end. Each
// lives in its own directory as package main with a Run function that its
// test calls against a real PostgreSQL server, so the examples cannot rot:
//
//	go run ./examples/bank
//
// They find PostgreSQL like the tests do (see package pgenv): DATABASE_URL,
// else localhost:5432, else a dockertest container.
package examples
