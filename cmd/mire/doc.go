// Command mire operates a mire event store: migrations, status, reading
// the log, subscriptions and parked streams, sagas, checks and the
// sequencer.
//
//	go install github.com/mire-go/mire/cmd/mire@latest
//	export DATABASE_URL=postgres://owner@db/app
//	mire status
//	mire tail -f --category account
//	mire verify
//
// The connection comes from DATABASE_URL or --database-url, the schema from
// --schema (default "mire"). Output is for people: aligned tables and
// relative times. Every read command takes --json for scripts, with field
// names that stay put; tail writes one JSON object per line.
//
// # Exit codes
//
//	0  success
//	1  error: the database refused or failed, or the command could not finish
//	2  usage: unknown command or flag, wrong arguments, a missing --yes
//	3  verify found problems (the report says which)
//	4  not found: the stream, subscription, parked stream or saga named does not exist
//
// Interrupting a command that runs until interrupted (tail -f, sequence)
// ends it with 0.
//
// Run `mire help` or `mire COMMAND --help` for the commands.
package main
