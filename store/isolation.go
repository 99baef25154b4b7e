package store

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// readCommitted is the isolation every statement of the store on the pool
// is written for: each sees what committed before it started. A sweep reads
// what the sweep it waited for wrote; an append that loses a race to a
// concurrent insert finds it with ON CONFLICT DO NOTHING, where REPEATABLE
// READ and SERIALIZABLE raise serialization failures (SERIALIZABLE, even on
// reads).
var readCommitted = pgx.TxOptions{IsoLevel: pgx.ReadCommitted}

// readCommittedDB runs each statement in a READ COMMITTED transaction of its
// own, for a pool whose connections default to another isolation level. It
// costs two more round trips a statement; pools at PostgreSQL's default pay
// nothing. The transaction commits once the statement's rows are read, and a
// failed commit is the statement's error.
type readCommittedDB struct{ pool *pgxpool.Pool }

func (d readCommittedDB) Exec(ctx context.Context, query string, args ...any) (tag pgconn.CommandTag, err error) {
	err = pgx.BeginTxFunc(ctx, d.pool, readCommitted, func(tx pgx.Tx) error {
		tag, err = tx.Exec(ctx, query, args...)
		return err
	})
	return tag, err
}

func (d readCommittedDB) Query(ctx context.Context, query string, args ...any) (pgx.Rows, error) {
	return d.query(ctx, query, args...)
}

func (d readCommittedDB) query(ctx context.Context, query string, args ...any) (*txRows, error) {
	tx, err := d.pool.BeginTx(ctx, readCommitted)
	if err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, query, args...)
	if err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, err
	}
	return &txRows{Rows: rows, tx: tx, ctx: ctx}, nil
}

func (d readCommittedDB) QueryRow(ctx context.Context, query string, args ...any) pgx.Row {
	rows, err := d.query(ctx, query, args...)
	if err != nil {
		return errRow{err}
	}
	return txRow{rows}
}

// txRows ends its transaction when the rows are exhausted or closed: it
// commits after the last row, so that Err (which callers check after the
// loop) reports a failed commit, and rolls back otherwise.
type txRows struct {
	pgx.Rows
	tx    pgx.Tx
	ctx   context.Context
	ended bool
	err   error
}

func (r *txRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.end()
	return false
}

func (r *txRows) Close() {
	r.Rows.Close()
	r.end()
}

func (r *txRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}

func (r *txRows) end() {
	if r.ended {
		return
	}
	r.ended = true
	ctx := context.WithoutCancel(r.ctx)
	if r.Rows.Err() != nil {
		_ = r.tx.Rollback(ctx)
		return
	}
	r.err = r.tx.Commit(ctx)
}

// txRow is pgx.Row over txRows, as pgx's own QueryRow: the first row, or
// pgx.ErrNoRows.
type txRow struct{ rows *txRows }

func (r txRow) Scan(dest ...any) error {
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	r.rows.Close()
	return r.rows.Err()
}
