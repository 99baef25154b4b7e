package runner

import (
	"context"
	"hash/fnv"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/mire-go/mire/core/lifecycle"
)

// coordinator keeps one subscription's leases for its runner: every
// RecheckInterval (or at once when a lease is announced free) it records
// the runner as a live candidate, renews the leases it holds, gives up
// those beyond its share of the partitions, and takes free or expired ones
// up to its share, so that leases spread over the live runners.
type coordinator struct {
	runner *Runner
	sub    *Subscription
	leases map[int]*lease // held, by partition
}

// lease is a partition this runner leads, and the worker dispatching it.
type lease struct {
	held
	// validUntil is when the lease may have expired, by the local clock:
	// the last successful renewal's start plus the TTL less a margin for
	// clock drift. Past it the worker dispatches nothing.
	validUntil atomic.Int64 // unix nanoseconds
	// state and parkedChanges as the last renewal read them; changed
	// wakes the worker when they move.
	state         atomic.Value // State
	parkedChanges atomic.Int64
	changed       *signal

	cancel context.CancelFunc
	done   chan struct{}
}

func (l *lease) valid() bool { return time.Now().UnixNano() < l.validUntil.Load() }

func (c *coordinator) run(ctx context.Context) {
	r := c.runner
	name := c.sub.Name
	timer := time.NewTimer(0)
	defer timer.Stop()
	wake := r.leaseSignal(name).wait()
	for {
		select {
		case <-ctx.Done():
			c.releaseAll(ctx)
			return
		case <-timer.C:
		case <-wake:
		}
		// Taken before the step: an announcement during it wakes the next.
		wake = r.leaseSignal(name).wait()
		c.step(ctx)
		timer.Reset(r.config.RecheckInterval)
	}
}

func (c *coordinator) step(ctx context.Context) {
	r := c.runner
	cfg := r.config
	name, partitions := c.sub.Name, c.sub.partitions()

	others, err := r.db.heartbeat(ctx, name, cfg.WorkerID, cfg.LeaseTTL)
	if err != nil && ctx.Err() == nil {
		cfg.Logger.WarnContext(ctx, "runner: heartbeat failed", "subscription", name, "error", err)
	}
	// Ceiling: with 4 partitions and 3 runners, each takes at most 2.
	share := (partitions + others) / (others + 1)

	for _, p := range slices.Sorted(maps.Keys(c.leases)) {
		c.renew(ctx, c.leases[p])
	}
	// Beyond its share (a runner joined): give up the highest partitions.
	for len(c.leases) > share {
		p := slices.Max(slices.Collect(maps.Keys(c.leases)))
		c.release(ctx, c.leases[p])
	}
	if len(c.leases) >= share || ctx.Err() != nil {
		return
	}
	live, err := r.db.liveHolders(ctx, name)
	if err != nil {
		if ctx.Err() == nil {
			cfg.Logger.WarnContext(ctx, "runner: reading leases failed", "subscription", name, "error", err)
		}
		return
	}
	// Runners start looking at different partitions, so that they do not
	// all race for the same one.
	offset := int(workerHash(cfg.WorkerID) % uint32(partitions))
	for i := range partitions {
		if len(c.leases) >= share {
			return
		}
		p := (offset + i) % partitions
		if live[p] || c.leases[p] != nil {
			continue
		}
		c.acquire(ctx, p)
	}
}

func (c *coordinator) acquire(ctx context.Context, partition int) {
	r := c.runner
	cfg := r.config
	key := partitionKey{name: c.sub.Name, partition: partition}
	started := time.Now()
	state, ok, err := r.db.acquire(ctx, key, cfg.WorkerID, cfg.LeaseTTL)
	if err != nil {
		if ctx.Err() == nil {
			cfg.Logger.WarnContext(ctx, "runner: acquiring a lease failed", "subscription", key.name, "partition", partition, "error", err)
		}
		return
	}
	if !ok {
		return
	}
	l := &lease{held: held{partitionKey: key, worker: cfg.WorkerID, fence: state.fence}, changed: newSignal(), done: make(chan struct{})}
	l.validUntil.Store(c.validUntil(started))
	l.state.Store(State(state.state))
	l.parkedChanges.Store(state.parkedChanges)
	c.leases[partition] = l
	cfg.Logger.InfoContext(ctx, "runner: lease acquired", "subscription", key.name, "partition", partition, "fence", state.fence,
		"checkpoint", state.checkpoint)
	cfg.Metrics.LeaseChanged(key.name, partition, true, state.fence)

	workerCtx, cancel := context.WithCancel(ctx)
	l.cancel = cancel
	w := &worker{runner: r, sub: c.sub, lease: l, checkpoint: state.checkpoint}
	if state.attempts > 0 {
		// A batch was dispatched and not checkpointed: it failed, or its
		// process died. Find the event at fault one at a time.
		w.isolateThrough = state.attemptTo
	}
	go func() {
		defer close(l.done)
		w.run(workerCtx)
	}()
}

// validUntil is when a lease renewed at started may have expired: less a
// tenth of the TTL for the drift of the local clock against the
// database's.
func (c *coordinator) validUntil(started time.Time) int64 {
	ttl := c.runner.config.LeaseTTL
	return started.Add(ttl - ttl/10).UnixNano()
}

func (c *coordinator) renew(ctx context.Context, l *lease) {
	r := c.runner
	cfg := r.config
	started := time.Now()
	state, ok, err := r.db.renew(ctx, l.held, cfg.LeaseTTL)
	switch {
	case err != nil:
		if ctx.Err() != nil {
			return
		}
		if !l.valid() {
			cfg.Logger.WarnContext(ctx, "runner: lease may have expired: stopped dispatching", "subscription", l.name,
				"partition", l.partition, "error", err)
			c.drop(l)
			return
		}
		cfg.Logger.WarnContext(ctx, "runner: renewing a lease failed", "subscription", l.name, "partition", l.partition, "error", err)
	case !ok:
		cfg.Logger.WarnContext(ctx, "runner: fenced: the lease was taken over or the subscription reset", "subscription", l.name,
			"partition", l.partition, "fence", l.fence)
		c.drop(l)
	default:
		l.validUntil.Store(c.validUntil(started))
		previous := l.state.Swap(State(state.state))
		if previous != State(state.state) || l.parkedChanges.Swap(state.parkedChanges) != state.parkedChanges {
			l.changed.notify()
		}
		if head, err := r.store.Head(ctx); err == nil {
			cfg.Metrics.Lag(l.name, l.partition, max(head-state.checkpoint, 0))
		}
	}
}

// drop stops the worker of a lease this runner no longer holds, at once.
func (c *coordinator) drop(l *lease) {
	l.cancel()
	<-l.done
	delete(c.leases, l.partition)
	c.runner.config.Metrics.LeaseChanged(l.name, l.partition, false, l.fence)
}

// release stops a lease's worker (its batch in flight finishes or rolls
// back) and gives the lease up, announcing it.
func (c *coordinator) release(ctx context.Context, l *lease) {
	c.drop(l)
	cleanup, cancel := lifecycle.CleanupContext(ctx, c.runner.config.LeaseTTL/3)
	defer cancel()
	if err := c.runner.db.release(cleanup, l.held); err != nil {
		c.runner.config.Logger.WarnContext(ctx, "runner: releasing a lease failed; it expires on its own", "subscription", l.name,
			"partition", l.partition, "error", err)
		return
	}
	c.runner.config.Logger.InfoContext(ctx, "runner: lease released", "subscription", l.name, "partition", l.partition, "fence", l.fence)
}

// releaseAll gives up every lease at shutdown. The runner stops counting
// as a candidate first: a standby woken by a release then takes the whole
// share the runner leaves, not its share with the runner still counted.
func (c *coordinator) releaseAll(ctx context.Context) {
	cleanup, cancel := lifecycle.CleanupContext(ctx, c.runner.config.LeaseTTL/3)
	defer cancel()
	_ = c.runner.db.forgetWorker(cleanup, c.sub.Name, c.runner.config.WorkerID) // it expires on its own otherwise
	for _, p := range slices.Sorted(maps.Keys(c.leases)) {
		c.release(ctx, c.leases[p])
	}
}

func workerHash(id string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(id))
	return h.Sum32()
}
