package store

import "time"

// The store's defaults and limits, in one place. Config and UpdateOpts
// fields name the default that applies when they are left zero.
const (
	// SchemaDefault is the PostgreSQL schema a store uses unless configured.
	SchemaDefault = "mire"

	// MaxEventBytesDefault is the default limit on one event's encoded data
	// plus headers.
	MaxEventBytesDefault = 1 << 20

	// MaxBatchBytesDefault is the default limit on one append's encoded data
	// plus headers, over all its events. An append is one statement, which
	// the client builds in memory several times over and PostgreSQL refuses
	// past 1 GB with a lost connection, an error callers retry; 64 MiB is
	// far above ordinary batches and keeps that memory modest.
	MaxBatchBytesDefault = 64 << 20

	// ReadPageSizeDefault is how many events a read fetches per round trip.
	// Each page costs a statement and a function call on the server and a
	// handoff on the client: pages of 1,000 read the whole log about 10%
	// faster than pages of 500 did, and a read holds at most five pages.
	ReadPageSizeDefault = 1000

	// MaxReadPageSize is the largest ReadPageSize accepted. A page is held
	// in memory whole, and beyond a few thousand events a round trip costs
	// little next to the events it brings, so larger pages only add memory;
	// it also keeps the page size far inside the int32 the queries take.
	MaxReadPageSize = 100_000

	// maxSchemaLength leaves room for the notification channel name
	// ("<schema>.events") within PostgreSQL's 63-byte identifier limit.
	maxSchemaLength = 48

	// SoloAppendsDefault is how many single-event appends on the pool run
	// alone at once, unless configured, before further ones are grouped.
	// Measured against grouping off at 1 to 64 writers (README,
	// Performance): with 2, four writers formed groups of two that each
	// waited for the group before theirs, slower than running alone, and
	// with 4 eight writers did; with 8, grouping is never slower, and
	// from 16 writers up it gives what it gave.
	SoloAppendsDefault = 8

	// maxGroupSize bounds the appends one grouped statement carries.
	maxGroupSize = 256

	// groupLockTimeout bounds how long a grouped statement waits for a
	// concurrent insert of one of its versions or event ids to commit or
	// roll back. Past it the statement fails and every append in it runs
	// on its own, where waiting is safe.
	groupLockTimeout = "100ms"

	// contendedFor is how long a stream stays hot after its last conflict
	// (see hotStreams); maxContended bounds the hot streams remembered.
	contendedFor = 100 * time.Millisecond
	// turnWait bounds how long an append to a hot stream waits for the
	// append in flight before it (see route). An append takes a few
	// milliseconds, or longer in a slow commit; past this it is sent anyway.
	turnWait     = 250 * time.Millisecond
	maxContended = 1024

	// maxDrainers bounds the groups in flight at once. While one group runs,
	// the next fills. One drainer made the largest groups on a 2-core machine;
	// two leave a larger server room to run groups side by side.
	maxDrainers = 2

	// UpdateMaxAttemptsDefault is how many times [Update] runs a command
	// before it gives up on a contended aggregate.
	UpdateMaxAttemptsDefault = 10

	// UpdateBackoffDefault is the wait before [Update]'s second attempt.
	UpdateBackoffDefault = 2 * time.Millisecond

	// UpdateMaxBackoffDefault caps the wait between [Update]'s attempts.
	UpdateMaxBackoffDefault = 500 * time.Millisecond

	// SequencerIntervalDefault is how often a [Sequencer] sequences by
	// default.
	SequencerIntervalDefault = 20 * time.Millisecond

	// SequencerRunTimeoutDefault bounds one sequencing run by default. A
	// sweep takes milliseconds; one that takes seconds waits for a lock or
	// a dead connection, and is better abandoned and retried.
	SequencerRunTimeoutDefault = 5 * time.Second

	// SequencerMaxBackoffDefault is the longest a [Sequencer] waits between
	// failing runs by default.
	SequencerMaxBackoffDefault = 5 * time.Second

	// sequencerMinBackoff is the least a Sequencer waits after a failure,
	// whatever its Interval, so that a tiny Interval does not hammer a
	// server that is down.
	sequencerMinBackoff = 10 * time.Millisecond

	// sequencerFailureLogInterval is how often a Sequencer whose runs keep
	// failing says so again, after it said so at the first failure.
	sequencerFailureLogInterval = time.Minute
)
