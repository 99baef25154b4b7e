package store

import (
	"context"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mire-go/mire/core"
)

// Session is where aggregates are loaded and saved: an [*EventStore], where
// every call runs in its own transaction (concurrent single-event appends
// may share one, each with its own outcome: see [Config.SoloAppends]), or a
// [*Scope], where calls share one. Load, Save and the snapshot variants take either.
type Session interface {
	session() (*EventStore, executor, error)
}

func (s *EventStore) session() (*EventStore, executor, error) { return s, s.pool, nil }

// Scope is a transaction scope: loads, saves and appends that commit or roll
// back as one unit. It is the read-before-write escape hatch for
// cross-aggregate invariants, recovery tooling and migrations; commands
// should normally read projections and write one aggregate. A long-lived
// scope on a hot stream blocks that stream's other writers.
//
// Everything written in a scope keeps the store's ordering guarantees. A
// Scope is not safe for concurrent use, like the pgx.Tx under it.
type Scope struct {
	store *EventStore
	tx    pgx.Tx

	mu     sync.Mutex
	closed bool
}

// Begin starts a scope in a new transaction (READ COMMITTED). Always end it:
//
//	scope, err := es.Begin(ctx)
//	if err != nil { ... }
//	defer scope.Rollback(ctx) // a no-op after Commit
//	...
//	return scope.Commit(ctx)
//
// or use [EventStore.InScope], which does that for you.
func (s *EventStore) Begin(ctx context.Context) (*Scope, error) {
	return s.BeginTx(ctx, pgx.TxOptions{})
}

// BeginTx is [EventStore.Begin] with transaction options. An empty IsoLevel
// means READ COMMITTED, whatever the pool's default: LoadForUpdate reads a
// stream's version after taking its lock, which needs a snapshot taken then.
// Under REPEATABLE READ or SERIALIZABLE a write that races another
// transaction fails with a serialization failure
// ([core.DBSerializationFailure]): retry the whole scope.
func (s *EventStore) BeginTx(ctx context.Context, opts pgx.TxOptions) (*Scope, error) {
	if opts.IsoLevel == "" {
		opts.IsoLevel = pgx.ReadCommitted
	}
	tx, err := s.pool.BeginTx(ctx, opts)
	if err != nil {
		return nil, s.interpretError("begin scope", err)
	}
	return &Scope{store: s, tx: tx}, nil
}

// WithTx returns a scope over the caller's transaction, so that Load, Save
// and the other Session functions run inside it. Commit and Rollback on the
// scope commit or roll back tx; the caller may end tx directly instead.
func (s *EventStore) WithTx(tx pgx.Tx) *Scope {
	return &Scope{store: s, tx: tx}
}

// InScope runs fn in a new scope and commits it if fn returns nil; if fn
// returns an error or panics, the scope is rolled back and nothing fn wrote
// is kept.
func (s *EventStore) InScope(ctx context.Context, fn func(*Scope) error) error {
	scope, err := s.Begin(ctx)
	if err != nil {
		return err
	}
	// A no-op after Commit; otherwise its own failure matters less than the
	// error or panic that got us here.
	defer scope.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit; the error or panic that got here matters more
	if err := fn(scope); err != nil {
		return err
	}
	return scope.Commit(ctx)
}

func (sc *Scope) session() (*EventStore, executor, error) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.closed {
		return nil, nil, core.ErrScopeClosed
	}
	return sc.store, sc.tx, nil
}

// Tx returns the scope's transaction, for the service's own statements.
func (sc *Scope) Tx() pgx.Tx { return sc.tx }

// Append is [EventStore.Append] inside the scope. A version conflict does
// not abort the scope.
func (sc *Scope) Append(ctx context.Context, streamID string, expected core.ExpectedVersion, events ...core.Event) (*core.CommittedEvents, error) {
	s, tx, err := sc.session()
	if err != nil {
		return nil, err
	}
	return s.append(ctx, tx, streamID, expected, events)
}

// Read is [EventStore.ReadTx] inside the scope.
func (sc *Scope) Read(ctx context.Context, q core.StreamQuery) iter.Seq2[*core.RecordedEvent, error] {
	s, tx, err := sc.session()
	if err != nil {
		return func(yield func(*core.RecordedEvent, error) bool) { yield(nil, err) }
	}
	return s.read(ctx, tx, q, false)
}

// SetLockTimeout bounds how long the rest of the scope waits for a stream
// lock ([LoadForUpdate], or an append to a stream another transaction
// holds). Past it the operation fails with [core.DBLockNotAvailable] and the
// scope must be rolled back.
func (sc *Scope) SetLockTimeout(ctx context.Context, timeout time.Duration) error {
	s, tx, err := sc.session()
	if err != nil {
		return err
	}
	if timeout < time.Millisecond {
		return &core.InvalidInputError{Field: "lock timeout", Reason: fmt.Sprintf("%v is under a millisecond", timeout)}
	}
	err = s.setLockTimeout(ctx, tx, timeout)
	return s.interpretError("set lock timeout", err)
}

// Commit commits everything written in the scope. Using the scope afterwards
// fails with [core.ErrScopeClosed].
func (sc *Scope) Commit(ctx context.Context) error {
	if err := sc.close(); err != nil {
		return err
	}
	return sc.store.interpretError("commit scope", sc.tx.Commit(ctx))
}

// Rollback discards everything written in the scope and releases its locks.
// After Commit or Rollback it does nothing, so it can be deferred.
func (sc *Scope) Rollback(ctx context.Context) error {
	if sc.close() != nil {
		return nil
	}
	return sc.store.interpretError("roll back scope", sc.tx.Rollback(ctx))
}

func (sc *Scope) close() error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.closed {
		return core.ErrScopeClosed
	}
	sc.closed = true
	return nil
}
