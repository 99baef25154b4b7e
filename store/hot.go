package store

import (
	"cmp"
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mire-go/mire/core"
)

// hotStreams remembers the streams whose appends lately met a conflict,
// with the highest version this process saw committed on each.
//
// Writers racing for one stream mostly lose: each loser's append is a round
// trip that can only be refused, and the work it puts on the server slows
// the winners. A stream's version never goes down, so once a version is
// known committed, an append that expects an older one is certainly a
// conflict, and the store answers it without asking the server. Only
// appends whose event IDs the store generated are answered so: one with
// caller-chosen IDs may be a retry of stored events, which only the server
// can tell.
//
// Appends to a hot stream also run alone rather than in a group, where only
// one writer of a stream can win (see appendGroups), and one at a time in
// this process (the stream's turn): the next waits for the outcome of the
// one in flight, which it then mostly loses to, and learns that here
// rather than from a refused statement. Readers of a hot stream's version
// share reads (see versionReads). Every conflict renews
// a stream's place, so a stream stays hot while writers keep racing for it
// and is forgotten contendedFor after the last conflict. Versions come only
// from outcomes on the pool, which are committed: a caller's transaction
// can still roll back what it saw. (A database restored to an earlier point
// under a running process is the one way a version goes down; the store
// forgets a stream within contendedFor of its last conflict.)
type hotStreams struct {
	// count is len(streams): appends check it before taking the lock, so
	// while no stream is hot they pay one atomic load.
	count   atomic.Int32
	mu      sync.Mutex
	streams map[string]hotStream
	hold    time.Duration // how long a stream stays hot; 0: contendedFor
	// turnWait bounds the wait for a stream's turn; 0: turnWait.
	turnWait time.Duration
}

type hotStream struct {
	until time.Time
	head  int64         // the highest version seen committed
	turn  chan struct{} // held by the process's append to the stream in flight
}

// lost records a conflict on stream, which was then at version head.
func (h *hotStreams) lost(stream string, head int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.streams == nil || len(h.streams) >= maxContended {
		h.streams = make(map[string]hotStream)
	}
	hot, ok := h.streams[stream]
	if !ok {
		hot.turn = make(chan struct{}, 1)
	}
	hot.until, hot.head = time.Now().Add(cmp.Or(h.hold, contendedFor)), max(hot.head, head)
	h.streams[stream] = hot
	h.count.Store(int32(len(h.streams)))
}

// stored records that an append on the pool stored stream's version head.
// It only updates a hot stream: the others are not remembered.
func (h *hotStreams) stored(stream string, head int64) {
	if h.count.Load() == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if hot, ok := h.streams[stream]; ok && head > hot.head {
		hot.head = head
		h.streams[stream] = hot
	}
}

// lookup reports whether stream is hot and the highest version seen
// committed on it.
func (h *hotStreams) lookup(stream string) (head int64, hot bool) {
	head, _, hot = h.lookupTurn(stream)
	return head, hot
}

// lookupTurn is lookup, with the stream's turn.
func (h *hotStreams) lookupTurn(stream string) (head int64, turn chan struct{}, hot bool) {
	if h.count.Load() == 0 {
		return 0, nil, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.streams[stream]
	if !ok {
		return 0, nil, false
	}
	if time.Now().After(s.until) {
		delete(h.streams, stream)
		h.count.Store(int32(len(h.streams)))
		return 0, nil, false
	}
	return s.head, s.turn, true
}

// certainConflict returns the conflict an append certainly meets on a hot
// stream whose highest version seen committed is head, or nil: see
// hotStreams.
func certainConflict(r *appendRequest, head int64) *core.VersionConflictError {
	if !r.newIDs {
		return nil
	}
	exact, isExact := r.expected.ExactVersion()
	if (isExact && head > exact) || (r.expected.IsNoStream() && head > 0) {
		return &core.VersionConflictError{StreamID: r.streamID, Expected: r.expected, Actual: head}
	}
	return nil
}

// takeTurn waits until turn, a hot stream's turn (see route), is this
// append's, for at most turnWait; held reports whether it is (release it
// with <-turn).
func (h *hotStreams) takeTurn(ctx context.Context, turn chan struct{}) (held bool, err error) {
	select {
	case turn <- struct{}{}:
		return true, nil
	default:
	}
	wait := time.NewTimer(cmp.Or(h.turnWait, turnWait))
	defer wait.Stop()
	select {
	case turn <- struct{}{}:
		return true, nil
	case <-wait.C:
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}
