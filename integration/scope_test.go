package integration_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

func mustVersion(t *testing.T, es *store.EventStore, streamID string) int64 {
	t.Helper()
	v, err := es.StreamVersion(context.Background(), streamID)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func openAccount(t *testing.T, es *store.EventStore, id string, balance int64) {
	t.Helper()
	root := core.NewRoot(id, &Account{})
	root.RecordMany(Opened{Owner: id}, Deposited{Amount: balance})
	if _, err := store.Save(context.Background(), es, root); err != nil {
		t.Fatal(err)
	}
}

func TestScopeCommitsAtomically(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	openAccount(t, es, "a", 100)
	openAccount(t, es, "b", 0)

	scope, err := es.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer scope.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	from, err := store.LoadForUpdate[Account](ctx, scope, "a")
	if err != nil {
		t.Fatal(err)
	}
	to, err := store.LoadForUpdate[Account](ctx, scope, "b")
	if err != nil {
		t.Fatal(err)
	}
	from.Record(Withdrawn{Amount: 40})
	to.Record(Deposited{Amount: 40})
	for _, save := range []func() error{
		func() error { _, err := store.Save(ctx, scope, from); return err },
		func() error { _, err := store.Save(ctx, scope, to); return err },
	} {
		if err := save(); err != nil {
			t.Fatal(err)
		}
	}
	// The scope sees its writes; nobody else does yet.
	inScope, err := store.Load[Account](ctx, scope, "b")
	if err != nil || inScope.State().Balance != 40 {
		t.Fatalf("load in scope: balance %v err %v, want 40", inScope, err)
	}
	if v := mustVersion(t, es, "account-a"); v != 2 {
		t.Fatalf("uncommitted scope visible outside: account-a at version %d", v)
	}
	if err := scope.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	a, _ := store.Load[Account](ctx, es, "a")
	b, _ := store.Load[Account](ctx, es, "b")
	if a.State().Balance != 60 || b.State().Balance != 40 {
		t.Fatalf("after commit: a=%d b=%d, want 60 and 40", a.State().Balance, b.State().Balance)
	}
}

func TestScopeRollbackWritesNothingAndReleasesLocks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	openAccount(t, es, "a", 100)

	cases := map[string]func(t *testing.T) error{
		"explicit rollback": func(t *testing.T) error {
			scope, err := es.Begin(ctx)
			if err != nil {
				return err
			}
			root, err := store.LoadForUpdate[Account](ctx, scope, "a")
			if err != nil {
				return err
			}
			root.Record(Withdrawn{Amount: 1})
			if _, err := store.Save(ctx, scope, root); err != nil {
				return err
			}
			return scope.Rollback(ctx)
		},
		"InScope returning an error": func(t *testing.T) error {
			boom := errors.New("boom")
			err := es.InScope(ctx, func(scope *store.Scope) error {
				if _, err := scope.Append(ctx, "account-a", core.Exact(2), core.NewEvent(Withdrawn{Amount: 1})); err != nil {
					return err
				}
				return boom
			})
			if !errors.Is(err, boom) {
				return err
			}
			return nil
		},
		"InScope panicking": func(t *testing.T) (err error) {
			defer func() {
				if recover() == nil {
					err = errors.New("the panic did not propagate")
				}
			}()
			return es.InScope(ctx, func(scope *store.Scope) error {
				if _, err := scope.Append(ctx, "account-a", core.Exact(2), core.NewEvent(Withdrawn{Amount: 1})); err != nil {
					return err
				}
				panic("boom")
			})
		},
	}
	for name, abandon := range cases {
		if err := abandon(t); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if v := mustVersion(t, es, "account-a"); v != 2 {
			t.Fatalf("%s: stream at version %d, want 2: the scope's write survived", name, v)
		}
		// The lock is gone: a writer that refuses to wait gets through.
		err := es.InScope(ctx, func(scope *store.Scope) error {
			if err := scope.SetLockTimeout(ctx, 50*time.Millisecond); err != nil {
				return err
			}
			_, err := store.LoadForUpdate[Account](ctx, scope, "a")
			return err
		})
		if err != nil {
			t.Fatalf("%s: stream still locked after the scope ended: %v", name, err)
		}
	}
}

func TestScopeLoadForUpdateLocks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, pgenv.NewPool(t, 4), &store.Config{Registry: bankRegistry()})
	openAccount(t, es, "a", 100)

	holder, err := es.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx) //nolint:errcheck // releases the lock if the test fails first
	if _, err := store.LoadForUpdate[Account](ctx, holder, "a"); err != nil {
		t.Fatal(err)
	}

	// A writer with a lock timeout fails fast, with a classified error.
	err = es.InScope(ctx, func(scope *store.Scope) error {
		if err := scope.SetLockTimeout(ctx, 50*time.Millisecond); err != nil {
			return err
		}
		_, err := scope.Append(ctx, "account-a", core.Exact(2), core.NewEvent(Deposited{Amount: 1}))
		return err
	})
	if kind, _ := core.DBKind(err); kind != core.DBLockNotAvailable {
		t.Fatalf("append to a locked stream: err = %v, want DBLockNotAvailable", err)
	}

	// A plain writer waits, and goes through once the holder commits.
	done := make(chan error, 1)
	go func() {
		_, err := es.Append(ctx, "account-a", core.Any, core.NewEvent(Deposited{Amount: 1}))
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("append did not wait for the lock: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	root, err := store.Load[Account](ctx, holder, "a")
	if err != nil {
		t.Fatal(err)
	}
	root.Record(Withdrawn{Amount: 10})
	if _, err := store.Save(ctx, holder, root); err != nil {
		t.Fatal(err)
	}
	if err := holder.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("waiting append: %v", err)
	}
	events, err := es.ReadEvents(ctx, core.ReadStream("account-a"))
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 4 || events[2].EventType != "account.withdrawn" || events[3].EventType != "account.deposited" {
		t.Fatalf("stream order after the wait is wrong: %d events", len(events))
	}

	// A missing stream takes no lock and is not found.
	err = es.InScope(ctx, func(scope *store.Scope) error {
		_, err := store.LoadForUpdate[Account](ctx, scope, "nobody")
		return err
	})
	if !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("LoadForUpdate of a missing stream: err = %v, want ErrStreamNotFound", err)
	}
}

func TestScopeUsedAfterCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	scope, err := es.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := scope.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	root := core.NewRoot("a", &Account{})
	root.Record(Opened{Owner: "a"})
	checks := map[string]error{
		"append": func() error {
			_, err := scope.Append(ctx, "account-a", core.Any, core.NewEvent(Deposited{Amount: 1}))
			return err
		}(),
		"load":   func() error { _, err := store.Load[Account](ctx, scope, "a"); return err }(),
		"save":   func() error { _, err := store.Save(ctx, scope, root); return err }(),
		"commit": scope.Commit(ctx),
		"read": func() error {
			for _, err := range scope.Read(ctx, core.ReadAll()) {
				return err
			}
			return nil
		}(),
	}
	for op, err := range checks {
		if !errors.Is(err, core.ErrScopeClosed) {
			t.Errorf("%s after commit: err = %v, want ErrScopeClosed", op, err)
		}
	}
	if err := scope.Rollback(ctx); err != nil {
		t.Errorf("rollback after commit: %v, want nil (deferrable)", err)
	}
	if v := mustVersion(t, es, "account-a"); v != 0 {
		t.Errorf("something was written after commit: version %d", v)
	}
}

func TestScopeContextCancelled(t *testing.T) {
	t.Parallel()
	es := pgenv.NewStore(t, pgenv.NewPool(t, 3), &store.Config{Registry: bankRegistry()})
	openAccount(t, es, "a", 100)

	ctx, cancel := context.WithCancel(context.Background())
	scope, err := es.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer scope.Rollback(context.Background()) //nolint:errcheck // a no-op after Commit
	if _, err := scope.Append(ctx, "account-a", core.Exact(2), core.NewEvent(Withdrawn{Amount: 5})); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err = scope.Append(ctx, "account-a", core.Exact(3), core.NewEvent(Withdrawn{Amount: 5}))
	if kind, _ := core.DBKind(err); kind != core.DBTimeout || !errors.Is(err, context.Canceled) {
		t.Fatalf("append after cancel: err = %v, want DBTimeout wrapping context.Canceled", err)
	}
	if err := scope.Commit(ctx); err == nil {
		t.Fatal("commit after cancel succeeded")
	}
	if v := mustVersion(t, es, "account-a"); v != 2 {
		t.Fatalf("stream at version %d, want 2: a cancelled scope wrote", v)
	}
	// Its lock is gone.
	bg := context.Background()
	err = es.InScope(bg, func(s *store.Scope) error {
		if err := s.SetLockTimeout(bg, 50*time.Millisecond); err != nil {
			return err
		}
		_, err := s.Append(bg, "account-a", core.Exact(2), core.NewEvent(Deposited{Amount: 1}))
		return err
	})
	if err != nil {
		t.Fatalf("append after the cancelled scope: %v", err)
	}
}

// A scope over the caller's transaction commits the service's own rows and
// the events together, or neither.
func TestScopeWithCallerTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	table := pgx.Identifier{es.Schema(), "outbox"}.Sanitize()
	if _, err := es.Pool().Exec(ctx, "CREATE TABLE "+table+" (note text)"); err != nil {
		t.Fatal(err)
	}
	for _, commit := range []bool{false, true} {
		tx, err := es.Pool().Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES ('sent')"); err != nil {
			t.Fatal(err)
		}
		root, err := store.LoadOrNew[Account](ctx, es.WithTx(tx), "a")
		if err != nil {
			t.Fatal(err)
		}
		root.Record(Deposited{Amount: 1})
		if _, err := store.Save(ctx, es.WithTx(tx), root); err != nil {
			t.Fatal(err)
		}
		if commit {
			err = tx.Commit(ctx)
		} else {
			err = tx.Rollback(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		var rows int
		if err := es.Pool().QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		version := mustVersion(t, es, "account-a")
		if commit && (rows != 1 || version != 1) || !commit && (rows != 0 || version != 0) {
			t.Fatalf("commit=%v: %d outbox rows, stream at version %d", commit, rows, version)
		}
	}
}
