// Package pgenv finds a PostgreSQL server for mire's tests (the examples'
// included) and benchmarks, and gives each test an isolated, migrated
// schema. It is test harness: the example programs themselves open their
// pool from DATABASE_URL like any application.
//
// The server is found in this order:
//
//  1. DATABASE_URL, or TEST_DATABASE_URL, if set;
//  2. a server answering on localhost:5432 (user postgres, database
//     postgres, no password);
//  3. a throwaway container started with dockertest, if Docker answers.
//
// When none is there, tests fail with a message saying what to do. Only
// MIRE_SKIP_DB=1 makes them skip instead, and says so loudly.
package pgenv
