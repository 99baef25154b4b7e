package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mire-go/mire/runner/internal/dbsqlc"
	"github.com/mire-go/mire/store"
)

// This file is the typed layer between the runner's logic and the code
// sqlc generates from queries/runner: only here are generated parameters
// built and rows read. Statements run through the store's SchemaExecutor,
// which fills in its schema; errors come back as the store's
// *core.DatabaseError.

// db runs the runner's statements against one store's schema.
type db struct {
	store *store.EventStore
	q     *dbsqlc.Queries
}

func newDB(es *store.EventStore) *db { return &db{store: es, q: dbsqlc.New()} }

// on is exec (the pool, or a checkpoint transaction) with the schema filled
// in.
func (d *db) on(exec store.Executor) dbsqlc.DBTX { return d.store.SchemaExecutor(exec) }

func (d *db) pool() dbsqlc.DBTX { return d.on(d.store.Pool()) }

func (d *db) fail(op string, err error) error { return d.store.DatabaseError(op, err) }

// partitionKey names one partition's row, and the lease on it held by
// worker under fence.
type partitionKey struct {
	name      string
	partition int
}

func (k partitionKey) String() string { return fmt.Sprintf("%s/%d", k.name, k.partition) }

type held struct {
	partitionKey
	worker string
	fence  int64
}

func (d *db) createSubscription(ctx context.Context, name string, partitions int, checkpoint int64) error {
	err := d.q.SubscriptionCreate(ctx, d.pool(), &dbsqlc.SubscriptionCreateParams{
		Name: name, Partitions: int32(partitions), Checkpoint: checkpoint, LastPartition: int32(partitions - 1)})
	return d.fail("create subscription "+name, err)
}

// storedPartitions returns how many partitions the rows of name say it has:
// 0 when it has none, -1 when they disagree.
func (d *db) storedPartitions(ctx context.Context, name string) (int, error) {
	row, err := d.q.SubscriptionShape(ctx, d.pool(), name)
	if err != nil {
		return 0, d.fail("read subscription "+name, err)
	}
	switch {
	case row.PartitionRows == 0:
		return 0, nil
	case row.MinPartitions != row.MaxPartitions || row.PartitionRows != row.MaxPartitions:
		return -1, nil
	}
	return int(row.MaxPartitions), nil
}

// heartbeat records worker as live for name and returns how many other
// workers are.
func (d *db) heartbeat(ctx context.Context, name, worker string, ttl time.Duration) (int, error) {
	row, err := d.q.WorkerHeartbeat(ctx, d.pool(), &dbsqlc.WorkerHeartbeatParams{
		Name: name, Worker: worker, TtlMs: ttl.Milliseconds(), Channel: d.store.LeaseChannel()})
	if err != nil {
		return 0, d.fail("heartbeat", err)
	}
	return int(row.Others), nil
}

func (d *db) forgetWorker(ctx context.Context, name, worker string) error {
	return d.fail("forget worker", d.q.WorkerForget(ctx, d.pool(), &dbsqlc.WorkerForgetParams{Name: name, Worker: worker}))
}

// partitionState is a partition's row as its leader sees it.
type partitionState struct {
	fence         int64
	checkpoint    int64
	state         string
	attempts      int
	attemptTo     int64 // the end of the unfinished batch when attempts > 0
	parkedChanges int64
}

// acquire takes the partition's lease if it is free or expired; ok is
// false when another worker holds it.
func (d *db) acquire(ctx context.Context, key partitionKey, worker string, ttl time.Duration) (partitionState, bool, error) {
	row, err := d.q.LeaseAcquire(ctx, d.pool(), &dbsqlc.LeaseAcquireParams{
		Worker: worker, TtlMs: ttl.Milliseconds(), Name: key.name, Partition: int32(key.partition)})
	if errors.Is(err, pgx.ErrNoRows) {
		return partitionState{}, false, nil
	}
	if err != nil {
		return partitionState{}, false, d.fail("acquire lease "+key.String(), err)
	}
	return partitionState{fence: row.Fence, checkpoint: row.Checkpoint, state: row.State, attempts: int(row.Attempts),
		attemptTo: deref(row.AttemptTo), parkedChanges: row.ParkedChanges}, true, nil
}

// renew extends the lease; ok is false when it is fenced.
func (d *db) renew(ctx context.Context, h held, ttl time.Duration) (partitionState, bool, error) {
	row, err := d.q.LeaseRenew(ctx, d.pool(), &dbsqlc.LeaseRenewParams{
		TtlMs: ttl.Milliseconds(), Name: h.name, Partition: int32(h.partition), Worker: h.worker, Fence: h.fence})
	if errors.Is(err, pgx.ErrNoRows) {
		return partitionState{}, false, nil
	}
	if err != nil {
		return partitionState{}, false, d.fail("renew lease "+h.String(), err)
	}
	return partitionState{fence: h.fence, checkpoint: row.Checkpoint, state: row.State, parkedChanges: row.ParkedChanges}, true, nil
}

func (d *db) release(ctx context.Context, h held) error {
	err := d.q.LeaseRelease(ctx, d.pool(), &dbsqlc.LeaseReleaseParams{
		Channel: d.store.LeaseChannel(), Name: h.name, Partition: int32(h.partition), Worker: h.worker, Fence: h.fence})
	return d.fail("release lease "+h.String(), err)
}

// liveHolders returns, per partition of name, whether a live lease holds it.
func (d *db) liveHolders(ctx context.Context, name string) (map[int]bool, error) {
	rows, err := d.q.LeaseHolders(ctx, d.pool(), name)
	if err != nil {
		return nil, d.fail("read leases", err)
	}
	live := make(map[int]bool, len(rows))
	for _, row := range rows {
		live[int(row.Partition)] = row.Live
	}
	return live, nil
}

// errFenced: the lease is another worker's now (or the partition was
// reset); the worker must stop dispatching at once.
var errFenced = errors.New("runner: fenced: the lease was taken over or the subscription reset")

// notRunning is a checkpoint refused because the partition's state changed
// (an operator paused it) after its batch began: the batch rolls back, and
// the worker waits in that state.
type notRunning struct{ state State }

func (e *notRunning) Error() string {
	return fmt.Sprintf("runner: the partition is %s: its batch was not committed", e.state)
}

// recordAttempt counts an attempt at the batch [from, to] before it is
// dispatched, and returns the attempts at from so far (this one included)
// and the end of the first batch attempted from there.
func (d *db) recordAttempt(ctx context.Context, h held, from, to int64) (attempts int, through int64, lastError string, err error) {
	row, err := d.q.AttemptRecord(ctx, d.pool(), &dbsqlc.AttemptRecordParams{
		AttemptFrom: from, AttemptTo: to, Name: h.name, Partition: int32(h.partition), Worker: h.worker, Fence: h.fence})
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, "", errFenced
	}
	if err != nil {
		return 0, 0, "", d.fail("record attempt", err)
	}
	return int(row.Attempts), deref(row.AttemptTo), deref(row.LastError), nil
}

func (d *db) undoAttempt(ctx context.Context, h held, from int64) error {
	err := d.q.AttemptUndo(ctx, d.pool(), &dbsqlc.AttemptUndoParams{
		Name: h.name, Partition: int32(h.partition), Worker: h.worker, Fence: h.fence, AttemptFrom: from})
	return d.fail("undo attempt", err)
}

func (d *db) attemptFailed(ctx context.Context, h held, position int64, cause error) error {
	err := d.q.AttemptFailed(ctx, d.pool(), &dbsqlc.AttemptFailedParams{
		LastError: truncateError(cause), ErrorPosition: position, Name: h.name, Partition: int32(h.partition), Worker: h.worker, Fence: h.fence})
	return d.fail("record failure", err)
}

// saveCheckpoint moves the checkpoint from previous to checkpoint on exec
// (the handlers' transaction, or the pool), counting the first attempt at
// the next batch with nextAttempt; errFenced if the lease moved.
func (d *db) saveCheckpoint(ctx context.Context, exec store.Executor, h held, previous, checkpoint int64, nextAttempt bool) error {
	_, err := d.q.CheckpointSave(ctx, d.on(exec), &dbsqlc.CheckpointSaveParams{
		Checkpoint: checkpoint, NextAttempt: nextAttempt, Name: h.name, Partition: int32(h.partition), Worker: h.worker,
		Fence: h.fence, Previous: previous})
	if errors.Is(err, pgx.ErrNoRows) {
		return d.whyNotSaved(ctx, exec, h)
	}
	return d.fail("save checkpoint", err)
}

// whyNotSaved tells why a checkpoint was not saved: a *notRunning when
// the partition was paused (or failed) since the batch began, else
// errFenced (the lease moved, or the checkpoint was reset). The caller's
// transaction, if any, is still usable: no statement failed.
func (d *db) whyNotSaved(ctx context.Context, exec store.Executor, h held) error {
	state, err := d.q.LeaseState(ctx, d.on(exec), &dbsqlc.LeaseStateParams{
		Name: h.name, Partition: int32(h.partition), Worker: h.worker, Fence: h.fence})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return errFenced
	case err != nil:
		return d.fail("read lease state", err)
	case State(state) != StateRunning:
		return &notRunning{state: State(state)}
	}
	return errFenced
}

func (d *db) markFailed(ctx context.Context, h held, position int64, cause error) error {
	_, err := d.q.SubscriptionFail(ctx, d.pool(), &dbsqlc.SubscriptionFailParams{
		LastError: truncateError(cause), ErrorPosition: position, Name: h.name, Partition: int32(h.partition), Worker: h.worker, Fence: h.fence})
	if errors.Is(err, pgx.ErrNoRows) {
		return errFenced
	}
	return d.fail("mark failed", err)
}

// boundIdleness makes the transaction on exec end if it sits idle for
// timeout: a worker paused mid-batch must not hold the locks its handlers
// took while another worker takes over.
func (d *db) boundIdleness(ctx context.Context, exec store.Executor, timeout time.Duration) error {
	return d.fail("set idle timeout", d.q.TxTimeout(ctx, d.on(exec), fmt.Sprintf("%dms", max(timeout.Milliseconds(), 1))))
}

// parked is a stream set aside by the Park policy.
type parked struct {
	streamID       string
	version        int64 // the first held event
	position       int64
	err            string
	retryRequested bool
	skipReason     string
}

func (d *db) park(ctx context.Context, exec store.Executor, h held, p parked) error {
	err := d.q.StreamPark(ctx, d.on(exec), &dbsqlc.StreamParkParams{
		Name: h.name, Partition: int32(h.partition), StreamID: p.streamID, StreamVersion: p.version,
		GlobalPosition: p.position, Error: p.err})
	return d.fail("park stream", err)
}

func (d *db) parkedStreams(ctx context.Context, name string, partition *int) ([]ParkedStream, error) {
	var p *int32
	if partition != nil {
		v := int32(*partition)
		p = &v
	}
	rows, err := d.q.ParkedList(ctx, d.pool(), &dbsqlc.ParkedListParams{Name: name, Partition: p})
	if err != nil {
		return nil, d.fail("list parked streams", err)
	}
	out := make([]ParkedStream, 0, len(rows))
	for _, r := range rows {
		ps := ParkedStream{Subscription: r.Name, Partition: int(r.Partition), StreamID: r.StreamID, StreamVersion: r.StreamVersion,
			GlobalPosition: r.GlobalPosition, Error: r.Error, ParkedAt: r.ParkedAt.UTC(), SkipReason: deref(r.SkipReason)}
		if r.RetryRequestedAt != nil {
			t := r.RetryRequestedAt.UTC()
			ps.RetryRequestedAt = &t
		}
		out = append(out, ps)
	}
	return out, nil
}

func (d *db) requestRetry(ctx context.Context, name, streamID string, skipReason *string) (bool, error) {
	n, err := d.q.ParkedRequestRetry(ctx, d.pool(), &dbsqlc.ParkedRequestRetryParams{
		Channel: d.store.LeaseChannel(), Name: name, StreamID: streamID, SkipReason: skipReason})
	return n > 0, d.fail("request retry", err)
}

func (d *db) moveParked(ctx context.Context, exec store.Executor, h held, p parked) error {
	err := d.q.ParkedMove(ctx, d.on(exec), &dbsqlc.ParkedMoveParams{
		StreamVersion: p.version, GlobalPosition: p.position, Error: p.err,
		Name: h.name, Partition: int32(h.partition), StreamID: p.streamID})
	return d.fail("move parked stream", err)
}

func (d *db) releaseParked(ctx context.Context, exec store.Executor, h held, streamID string) error {
	err := d.q.ParkedRelease(ctx, d.on(exec), &dbsqlc.ParkedReleaseParams{Name: h.name, Partition: int32(h.partition), StreamID: streamID})
	return d.fail("release parked stream", err)
}

func (d *db) recordSkip(ctx context.Context, exec store.Executor, h held, e SkippedEvent) error {
	var cause *string
	if e.Error != "" {
		cause = &e.Error
	}
	err := d.q.EventSkip(ctx, d.on(exec), &dbsqlc.EventSkipParams{
		Name: h.name, Partition: int32(h.partition), GlobalPosition: e.GlobalPosition, StreamID: e.StreamID,
		StreamVersion: e.StreamVersion, Reason: e.Reason, Error: cause})
	return d.fail("record skipped event", err)
}

func (d *db) skippedEvents(ctx context.Context, name string) ([]SkippedEvent, error) {
	rows, err := d.q.SkippedList(ctx, d.pool(), name)
	if err != nil {
		return nil, d.fail("list skipped events", err)
	}
	out := make([]SkippedEvent, 0, len(rows))
	for _, r := range rows {
		out = append(out, SkippedEvent{Subscription: r.Name, Partition: int(r.Partition), GlobalPosition: r.GlobalPosition,
			StreamID: r.StreamID, StreamVersion: r.StreamVersion, Reason: r.Reason, Error: deref(r.Error), SkippedAt: r.SkippedAt.UTC()})
	}
	return out, nil
}

func (d *db) setState(ctx context.Context, name string, partition *int, state string) ([]int, error) {
	rows, err := d.q.SubscriptionSetState(ctx, d.pool(), &dbsqlc.SubscriptionSetStateParams{
		Channel: d.store.LeaseChannel(), Name: name, State: state, Partition: int32Ptr(partition)})
	return ints(rows), d.fail("set state of "+name, err)
}

func (d *db) reset(ctx context.Context, exec store.Executor, name string, partition *int, checkpoint int64) ([]int, error) {
	rows, err := d.q.SubscriptionReset(ctx, d.on(exec), &dbsqlc.SubscriptionResetParams{
		Channel: d.store.LeaseChannel(), Checkpoint: checkpoint, Name: name, Partition: int32Ptr(partition)})
	return ints(rows), d.fail("reset "+name, err)
}

func (d *db) lock(ctx context.Context, exec store.Executor, name string) ([]int, error) {
	rows, err := d.q.SubscriptionLock(ctx, d.on(exec), name)
	return ints(rows), d.fail("lock "+name, err)
}

func (d *db) drop(ctx context.Context, name string) (bool, error) {
	n, err := d.q.SubscriptionDrop(ctx, d.pool(), name)
	return n > 0, d.fail("drop "+name, err)
}

func (d *db) status(ctx context.Context, name string) ([]LeaseStatus, error) {
	var filter *string
	if name != "" {
		filter = &name
	}
	rows, err := d.q.SubscriptionStatus(ctx, d.pool(), filter)
	if err != nil {
		return nil, d.fail("read status", err)
	}
	out := make([]LeaseStatus, 0, len(rows))
	for _, r := range rows {
		s := LeaseStatus{Subscription: r.Name, Partition: int(r.Partition), Partitions: int(r.Partitions),
			Checkpoint: r.Checkpoint, State: State(r.State), FenceToken: r.Fence, Attempts: int(r.Attempts),
			LastError: deref(r.LastError), ErrorPosition: deref(r.ErrorPosition), ParkedStreams: int(r.Parked),
			UpdatedAt: r.UpdatedAt.UTC()}
		if r.Live && r.Worker != nil {
			s.Worker = *r.Worker
			s.LeaseExpiresAt = r.LeaseExpiresAt.UTC()
		}
		out = append(out, s)
	}
	return out, nil
}

// progress is a partition's progress as WaitFor needs it.
type progress struct {
	checkpoint    int64
	failed        bool
	errorPosition int64
	lastError     string
	parkedVersion int64 // 0: the stream is not parked
}

func (d *db) progressOf(ctx context.Context, key partitionKey, streamID string) (progress, bool, error) {
	row, err := d.q.CheckpointOf(ctx, d.pool(), &dbsqlc.CheckpointOfParams{
		StreamID: streamID, Name: key.name, Partition: int32(key.partition)})
	if errors.Is(err, pgx.ErrNoRows) {
		return progress{}, false, nil
	}
	if err != nil {
		return progress{}, false, d.fail("read checkpoint", err)
	}
	return progress{checkpoint: row.Checkpoint, failed: row.State == string(StateFailed),
		errorPosition: deref(row.ErrorPosition), lastError: deref(row.LastError), parkedVersion: row.ParkedVersion}, true, nil
}

func (d *db) listen(ctx context.Context, conn *pgx.Conn) error {
	on := d.on(conn)
	if err := d.q.Listen(ctx, on); err != nil {
		return d.fail("listen", err)
	}
	return d.fail("listen", d.q.ListenLeases(ctx, on))
}

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

func int32Ptr(p *int) *int32 {
	if p == nil {
		return nil
	}
	v := int32(*p)
	return &v
}

func ints(in []int32) []int {
	out := make([]int, len(in))
	for i, v := range in {
		out[i] = int(v)
	}
	return out
}

// truncateError keeps a stored error message to a size worth reading.
func truncateError(err error) string {
	const limit = 4000
	msg := err.Error()
	if len(msg) > limit {
		msg = msg[:limit] + "…"
	}
	return msg
}
