package saga

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/mire-go/mire/saga/internal/dbsqlc"
	"github.com/mire-go/mire/store"
)

// This file is the typed layer between the saga module's logic and the
// code sqlc generates from queries/saga. Statements run through the store's
// SchemaExecutor; errors come back as the store's *core.DatabaseError.

type db struct {
	store *store.EventStore
	q     *dbsqlc.Queries
}

func (d *db) on(exec store.Executor) dbsqlc.DBTX { return d.store.SchemaExecutor(exec) }

func (d *db) pool() dbsqlc.DBTX { return d.on(d.store.Pool()) }

func (d *db) fail(op string, err error) error { return d.store.DatabaseError(op, err) }

// claimed is a saga an executor claimed.
type claimed struct {
	name, id, streamID string
	correlationID      uuid.UUID
	version            int
	attempts           int
	dbNow              time.Time
}

func (d *db) create(ctx context.Context, exec store.Executor, c claimed) error {
	_, err := d.q.SagaCreate(ctx, d.on(exec), &dbsqlc.SagaCreateParams{Name: c.name, ID: c.id, StreamID: c.streamID,
		CorrelationID: c.correlationID, DefinitionVersion: int32(c.version)})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	return d.fail("index saga", err)
}

func (d *db) claim(ctx context.Context, worker string, claim time.Duration, maxSagas int, names []string) ([]claimed, error) {
	rows, err := d.q.SagaClaim(ctx, d.pool(), &dbsqlc.SagaClaimParams{Worker: worker, ClaimMs: claim.Milliseconds(),
		Names: names, MaxSagas: int32(maxSagas)})
	if err != nil {
		return nil, d.fail("claim sagas", err)
	}
	out := make([]claimed, len(rows))
	for i, r := range rows {
		out[i] = claimed{name: r.Name, id: r.ID, streamID: r.StreamID, correlationID: r.CorrelationID,
			version: int(r.DefinitionVersion), attempts: int(r.Attempts), dbNow: r.DbNow}
	}
	return out, nil
}

// nextWake returns how long until the next saga falls due; ok is false when
// none waits for a time.
func (d *db) nextWake(ctx context.Context, names []string) (time.Duration, bool, error) {
	row, err := d.q.SagaNextWake(ctx, d.pool(), names)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, d.fail("next saga due", err)
	}
	return row.NextWake.Sub(row.DbNow), true, nil
}

func (d *db) now(ctx context.Context) (time.Time, error) {
	now, err := d.q.DatabaseNow(ctx, d.pool())
	return now, d.fail("read the clock", err)
}

// release ends a claim in tx, after locking the saga's row; ok is false
// when the claim is no longer this worker's.
type release struct {
	status      Status
	seenVersion int64
	wakeAt      *time.Time
	attempts    int
	lastError   string
	result      []byte
}

func (d *db) lock(ctx context.Context, tx store.Executor, c claimed, worker string) (bool, error) {
	_, err := d.q.SagaLock(ctx, d.on(tx), &dbsqlc.SagaLockParams{Name: c.name, ID: c.id, Worker: worker})
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, d.fail("lock saga", err)
}

func (d *db) release(ctx context.Context, tx store.Executor, c claimed, r release) error {
	var lastError *string
	if r.lastError != "" {
		lastError = &r.lastError
	}
	err := d.q.SagaRelease(ctx, d.on(tx), &dbsqlc.SagaReleaseParams{Status: string(r.status), SeenVersion: r.seenVersion,
		WakeAt: r.wakeAt, Attempts: int32(r.attempts), LastError: lastError, Result: r.result,
		Name: c.name, ID: c.id})
	return d.fail("release saga", err)
}

// routeTo returns the live saga correlationID belongs to, made due; ok is
// false when there is none.
func (d *db) routeTo(ctx context.Context, tx store.Executor, correlationID uuid.UUID) (name, id, stream string, ok bool, err error) {
	row, err := d.q.SagaRouteTo(ctx, d.on(tx), correlationID)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", "", false, nil
	}
	if err != nil {
		return "", "", "", false, d.fail("route reply", err)
	}
	return row.Name, row.ID, row.StreamID, true, nil
}

// renewClaim extends a claim; false when it is no longer this worker's.
func (d *db) renewClaim(ctx context.Context, c claimed, worker string, claim time.Duration) (bool, error) {
	n, err := d.q.SagaRenewClaim(ctx, d.pool(), &dbsqlc.SagaRenewClaimParams{ClaimMs: claim.Milliseconds(), Name: c.name, ID: c.id, Worker: worker})
	return n > 0, d.fail("renew claim", err)
}

func (d *db) wake(ctx context.Context, exec store.Executor, name, id string, retry bool) (string, bool, error) {
	stream, err := d.q.SagaWake(ctx, d.on(exec), &dbsqlc.SagaWakeParams{Retry: retry, Name: name, ID: id})
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	return stream, err == nil, d.fail("wake saga", err)
}

func (d *db) get(ctx context.Context, name, id string) (Info, bool, error) {
	row, err := d.q.SagaGet(ctx, d.pool(), &dbsqlc.SagaGetParams{Name: name, ID: id})
	if errors.Is(err, pgx.ErrNoRows) {
		return Info{}, false, nil
	}
	if err != nil {
		return Info{}, false, d.fail("read saga", err)
	}
	return infoOf(row), true, nil
}

func (d *db) list(ctx context.Context, opts ListOpts) ([]Info, error) {
	var status, name *string
	if opts.Status != "" {
		s := string(opts.Status)
		status = &s
	}
	if opts.Name != "" {
		name = &opts.Name
	}
	rows, err := d.q.SagaList(ctx, d.pool(), &dbsqlc.SagaListParams{Status: status, Name: name, MaxSagas: int32(min(max(opts.Limit, 1), 10_000))})
	if err != nil {
		return nil, d.fail("list sagas", err)
	}
	out := make([]Info, len(rows))
	for i, r := range rows {
		out[i] = infoOf(r)
	}
	return out, nil
}

func (d *db) counts(ctx context.Context) (map[Status]int64, error) {
	rows, err := d.q.SagaCounts(ctx, d.pool())
	if err != nil {
		return nil, d.fail("count sagas", err)
	}
	out := make(map[Status]int64, len(rows))
	for _, r := range rows {
		out[Status(r.Status)] = r.Sagas
	}
	return out, nil
}

func infoOf(r *dbsqlc.SagaInstance) Info {
	info := Info{Name: r.Name, ID: r.ID, StreamID: r.StreamID, CorrelationID: r.CorrelationID, Version: int(r.DefinitionVersion),
		Status: Status(r.Status), Attempts: int(r.Attempts), Result: r.Result, CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
	if r.WakeAt != nil {
		t := r.WakeAt.UTC()
		info.WakeAt = &t
	}
	if r.ClaimedBy != nil {
		info.ClaimedBy = *r.ClaimedBy
	}
	if r.LastError != nil {
		info.LastError = *r.LastError
	}
	return info
}
