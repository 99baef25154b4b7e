package store

// Executor runs statements: a *pgxpool.Pool, a *pgx.Conn or a pgx.Tx. It
// is the interface sqlc's generated code takes.
type Executor = executor

// SchemaExecutor returns exec with the store's schema filled into every
// statement, and the schema's migration version checked before the first
// one (a *core.SchemaVersionError if it is not the code's).
//
// It is for mire's other modules (runner, saga): their generated queries
// name the schema's objects as "/* TEMPLATE: schema */name", and LISTEN on
// "/* TEMPLATE: channel */events" (the store's [EventStore.NotificationChannel])
// or "/* TEMPLATE: channel */leases" (see [EventStore.LeaseChannel]), so that
// one set of queries serves every schema. Statements on a pool whose
// connections default to another isolation level run at READ COMMITTED,
// as the store's own do.
func (s *EventStore) SchemaExecutor(exec Executor) Executor { return s.db(exec) }

// DatabaseError turns an error from a statement run on a [SchemaExecutor]
// into what the store returns for its own: a *core.DatabaseError with its
// DBErrorKind and op, what was being done. mire's own errors and nil pass
// through unchanged.
func (s *EventStore) DatabaseError(op string, err error) error { return s.interpretError(op, err) }

// LeaseChannel is the channel on which mire's runner announces a lease it
// released, so that a standby takes it over at once. Like
// [EventStore.NotificationChannel], a notification is only a hint.
func (s *EventStore) LeaseChannel() string { return s.schema + ".leases" }
