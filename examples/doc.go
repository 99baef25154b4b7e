// Package examples holds runnable programs that show mire end to end. Each
// lives in its own directory as package main, a program to copy: main opens
// a pgx pool on DATABASE_URL (or a local server with a passwordless postgres
// user) and calls Run in a schema of the example's own.
//
//	go run ./examples/bank
//
// Each Run is tested against a real PostgreSQL server by main_test.go, which
// gets the server and a fresh schema from package pgenv (the test harness,
// which can also start a throwaway container), so the examples cannot rot.
package examples
