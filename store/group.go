package store

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"

	"github.com/mire-go/mire/core"
)

// appendGroups writes concurrent single-event appends on the pool together
// (group commit).
//
// An append runs alone, as it would without grouping, while no group is
// being written and fewer than the configured number of appends run alone.
// Otherwise it queues, and a drainer takes everything queued (up to
// maxGroupSize) into one statement and one transaction: under load N
// commits, WAL flushes and round trips become one, and the more appends
// arrive while a group runs, the larger the next. Once groups form, new
// appends join them rather than run alone, which keeps groups large (the
// README's Performance section has the figures). Nothing waits for a
// timer, and an append under light load pays nothing extra.
//
// A grouped statement stores or skips each append on its own and never
// waits for another transaction (see EventAppendGroup), so appends blocked
// on a stream lock never hold up the queue. Skipped appends (expectation
// not met, versions or event id taken, stream locked) and every append of a
// statement that failed go back to their callers, who run them alone: that
// path explains conflicts, resolves retries and waits for locks, none of
// which a group may do on another caller's behalf.
//
// Drainers are started on demand and end when the queue is empty;
// EventStore.Close stops grouping and waits for them.
type appendGroups struct {
	store     *EventStore
	soloLimit int

	mu       sync.Mutex
	solo     int              // appends running alone
	draining int              // drainers running
	queue    []*groupedAppend // appends waiting for a group
	closed   bool             // close was called: no new groups
	drained  chan struct{}    // closed when draining drops to 0; made by close
}

// groupedAppend is one caller's append waiting for, or in, a group.
type groupedAppend struct {
	ctx     context.Context
	request *appendRequest
	done    chan struct{} // closed when result is set

	result appendResult // not stored: run the append alone
}

func newAppendGroups(store *EventStore, soloLimit int) *appendGroups {
	return &appendGroups{store: store, soloLimit: soloLimit}
}

// admission says where a single-event append runs.
type admission uint8

const (
	grouped  admission = iota // queued for a group
	soloSlot                  // alone, in a solo slot: call doneAlone after
)

// admit says where an append to a stream that is not hot (see
// hotStreams: those run alone) runs now: alone when no group is being
// written and a solo slot is free (or grouping is closed); else in a group.
func (g *appendGroups) admit() admission {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.solo < g.soloLimit && g.draining == 0 {
		g.solo++
		return soloSlot
	}
	return grouped
}

func (g *appendGroups) doneAlone() {
	g.mu.Lock()
	g.solo--
	g.mu.Unlock()
}

// append queues a single-event append for the next group and waits for its
// outcome. A result not stored means the caller must run the append alone;
// an error comes only when ctx ended first: the outcome is then unknown.
func (g *appendGroups) append(ctx context.Context, r *appendRequest) (appendResult, error) {
	request := &groupedAppend{ctx: ctx, request: r, done: make(chan struct{})}
	g.mu.Lock()
	if g.closed {
		// Closed since admit said grouped: no drainer may start now.
		g.mu.Unlock()
		return appendResult{}, nil
	}
	g.queue = append(g.queue, request)
	if g.draining < maxDrainers {
		g.draining++
		go g.drain()
	}
	g.mu.Unlock()

	select {
	case <-request.done:
		return request.result, nil
	case <-ctx.Done():
		return appendResult{}, context.Cause(ctx)
	}
}

// close stops forming groups: from now on every append runs alone. It waits
// until the drainers have run what was queued and returned, or until ctx
// ends.
func (g *appendGroups) close(ctx context.Context) error {
	g.mu.Lock()
	g.closed = true
	if g.draining == 0 {
		g.mu.Unlock()
		return nil
	}
	if g.drained == nil {
		g.drained = make(chan struct{})
	}
	drained := g.drained
	g.mu.Unlock()
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// drain runs groups of queued appends until the queue is empty.
func (g *appendGroups) drain() {
	for g.runQueued() {
	}
}

// runQueued runs one group of what is queued and reports whether there was
// anything to run.
func (g *appendGroups) runQueued() bool {
	g.mu.Lock()
	n := min(len(g.queue), maxGroupSize)
	group := make([]*groupedAppend, 0, n)
	for _, request := range g.queue[:n] {
		if request.ctx.Err() != nil {
			// Its caller has left: nothing was written, nobody is waiting.
			close(request.done)
			continue
		}
		group = append(group, request)
	}
	clear(g.queue[:n])
	g.queue = g.queue[n:]
	if n == 0 {
		// Decided under the lock: an append queued after this sees the
		// drainer gone and starts one.
		g.draining--
		if g.draining == 0 && g.drained != nil {
			close(g.drained)
			g.drained = nil
		}
		g.mu.Unlock()
		return false
	}
	g.mu.Unlock()

	if len(group) > 0 {
		g.run(group)
	}
	return true
}

// run writes group in one statement and hands every caller its outcome.
func (g *appendGroups) run(group []*groupedAppend) {
	defer func() {
		for _, request := range group {
			close(request.done)
		}
	}()

	// Event ids map results back to requests, so two requests with one id
	// (a retry racing its original) cannot share a statement: the later
	// ones run alone.
	seen := make(map[uuid.UUID]bool, len(group))
	requests := make([]*appendRequest, 0, len(group))
	for _, request := range group {
		if id := request.request.events[0].id; !seen[id] {
			seen[id] = true
			requests = append(requests, request.request)
		}
	}

	// The statement serves many callers: no one caller's cancellation may
	// abort it, but once all of them have gone nobody waits for it, and a
	// statement stuck on a dead connection must not hold its drainer. The
	// first request's context still carries its values.
	ctx, cancel := context.WithCancel(context.WithoutCancel(group[0].ctx))
	defer cancel()
	var waiting atomic.Int64
	waiting.Store(int64(len(group)))
	stops := make([]func() bool, len(group))
	for i, request := range group {
		stops[i] = context.AfterFunc(request.ctx, func() {
			if waiting.Add(-1) == 0 {
				cancel()
			}
		})
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	var op operation
	if g.store.instr != nil {
		ctx, op = g.store.start(ctx, core.Operation{Kind: core.OpAppendGroup, Events: len(requests)})
	}
	results, err := g.store.insertGroup(ctx, requests)
	op.done(core.Outcome{Err: err, Events: len(results)})
	if err != nil {
		// A lock timeout, a lost connection, anything: every caller runs
		// its append alone, which reports the error if it persists and
		// resolves a commit whose acknowledgement was lost as a retry.
		g.store.logger.DebugContext(ctx, "store: a group of appends failed; appending them one by one",
			"appends", len(requests), "error", err)
		return
	}
	heads := map[string]int64{} // the highest version the group stored, by stream
	for _, request := range group {
		id := request.request.events[0].id
		if result, ok := results[id]; ok {
			result.group = int16(len(requests)) // at most maxGroupSize
			request.result = result
			delete(results, id) // the first request with the id was in the statement; a later one runs alone
			heads[request.request.streamID] = max(heads[request.request.streamID], result.from)
		}
	}
	// Writers of one stream often meet in one group, where only one can
	// take a version. A request the statement skipped while it stored a
	// later version of the same stream lost to it: alone it would only be
	// refused again, and asked why. Its conflict is certain unless it is a
	// retry of stored events, which only caller-chosen event ids can be.
	for _, request := range group {
		r := request.request
		head, moved := heads[r.streamID]
		if request.result.stored || !moved || !r.newIDs {
			continue
		}
		exact, isExact := r.expected.ExactVersion()
		if (isExact && head > exact) || r.expected.IsNoStream() {
			request.result = appendResult{lost: true, current: head}
			g.store.hot.lost(r.streamID, head)
		}
	}
}
