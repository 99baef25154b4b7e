package main

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mire-go/mire/cmd/mire/internal/dbsqlc"
	"github.com/mire-go/mire/store"
)

// This file is the typed layer between the commands and the code sqlc
// generates from queries/cli: only here are generated parameters built.
// Statements run through the store's SchemaExecutor, which fills in its
// schema and checks its migration version; errors come back as the store's
// *core.DatabaseError.

type db struct {
	store *store.EventStore
	q     *dbsqlc.Queries
}

func newDB(es *store.EventStore) *db { return &db{store: es, q: dbsqlc.New()} }

func (d *db) pool() dbsqlc.DBTX { return d.store.SchemaExecutor(d.store.Pool()) }

func (d *db) fail(op string, err error) error { return d.store.DatabaseError(op, err) }

// backlog is what the sequencer has yet to number.
type backlog struct {
	events int64
	oldest time.Time // recorded_at of the oldest; zero when events is 0
	now    time.Time // the database's clock
}

func (d *db) backlog(ctx context.Context) (backlog, error) {
	row, err := d.q.SequencerBacklog(ctx, d.pool())
	if err != nil {
		return backlog{}, d.fail("read the sequencer's backlog", err)
	}
	b := backlog{events: row.Events, now: row.Now.UTC()}
	if row.Events > 0 {
		b.oldest = row.OldestRecordedAt.UTC()
	}
	return b, nil
}

// streamRow is one stream of a listing.
type streamRow struct {
	StreamID        string    `json:"stream_id"`
	Version         int64     `json:"version"`
	Events          int64     `json:"events"`
	FirstRecordedAt time.Time `json:"first_recorded_at"`
	LastRecordedAt  time.Time `json:"last_recorded_at"`
}

// streams lists up to limit streams after afterID, of category unless it
// is empty.
func (d *db) streams(ctx context.Context, category, afterID string, limit int) ([]streamRow, error) {
	var out []streamRow
	if category == "" {
		rows, err := d.q.StreamList(ctx, d.pool(), &dbsqlc.StreamListParams{AfterStreamID: afterID, MaxStreams: int32(limit)})
		if err != nil {
			return nil, d.fail("list streams", err)
		}
		for _, r := range rows {
			out = append(out, streamRow{r.StreamID, r.Version, r.Events, r.FirstRecordedAt.UTC(), r.LastRecordedAt.UTC()})
		}
		return out, nil
	}
	rows, err := d.q.StreamListByCategory(ctx, d.pool(), &dbsqlc.StreamListByCategoryParams{
		AfterStreamID: afterID, Category: category, MaxStreams: int32(limit)})
	if err != nil {
		return nil, d.fail("list streams of "+category, err)
	}
	for _, r := range rows {
		out = append(out, streamRow{r.StreamID, r.Version, r.Events, r.FirstRecordedAt.UTC(), r.LastRecordedAt.UTC()})
	}
	return out, nil
}

func (d *db) verifyStreamPage(ctx context.Context, afterID string, maxStreams int, maxAge time.Duration) ([]*dbsqlc.VerifyStreamPageRow, error) {
	rows, err := d.q.VerifyStreamPage(ctx, d.pool(), &dbsqlc.VerifyStreamPageParams{
		AfterStreamID: afterID, MaxStreams: int32(maxStreams), MaxAgeMs: maxAge.Milliseconds()})
	return rows, d.fail("verify streams", err)
}

func (d *db) verifyStreamEvents(ctx context.Context, streamID string, maxRows int, maxAge time.Duration) ([]*dbsqlc.VerifyStreamEventsRow, error) {
	rows, err := d.q.VerifyStreamEvents(ctx, d.pool(), &dbsqlc.VerifyStreamEventsParams{
		StreamID: streamID, MaxRows: int32(maxRows), MaxAgeMs: maxAge.Milliseconds()})
	return rows, d.fail("verify stream "+streamID, err)
}

func (d *db) verifyLogPage(ctx context.Context, after int64, maxRows int) ([]*dbsqlc.VerifyLogPageRow, error) {
	rows, err := d.q.VerifyLogPage(ctx, d.pool(), &dbsqlc.VerifyLogPageParams{AfterPosition: after, MaxRows: int32(maxRows)})
	return rows, d.fail("verify the log", err)
}

// listen makes conn LISTEN to the store's notification channel.
func (d *db) listen(ctx context.Context, conn *pgx.Conn) error {
	return d.fail("listen", d.q.Listen(ctx, d.store.SchemaExecutor(conn)))
}
