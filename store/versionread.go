package store

import (
	"context"
	"sync"
)

// versionReads shares reads of a hot stream's version (see hotStreams)
// between the callers that ask for it at once.
//
// After a conflict on a stream that writers race for, each loser reads the
// stream's version before trying again: with 64 writers on one stream,
// every append stored sent the others to read it, dozens of statements that
// all return the same number. A caller instead waits for the next read of
// the stream to start, and every caller waiting for that read gets its
// result. The read starts after each of them called, so the version is
// never older than one they could have read alone: a caller that saw an
// append commit reads that append's version or a later one.
type versionReads struct {
	mu      sync.Mutex
	streams map[string]*versionRead
}

// versionRead is a stream's read in flight and the one that starts when it
// ends, which callers arriving meanwhile join.
type versionRead struct {
	running, next *readRound
}

type readRound struct {
	start   chan struct{} // closed when the round may run
	done    chan struct{} // closed once version and err are set
	version int64
	err     error
}

// read returns stream's version from a read that starts after read is
// called, shared with other callers; query reads it.
func (v *versionReads) read(ctx context.Context, stream string, query func(context.Context) (int64, error)) (int64, error) {
	v.mu.Lock()
	if v.streams == nil {
		v.streams = make(map[string]*versionRead)
	}
	reads := v.streams[stream]
	if reads == nil {
		reads = &versionRead{}
		v.streams[stream] = reads
	}
	round, runs := reads.next, false
	switch {
	case reads.running == nil:
		round, runs = &readRound{start: make(chan struct{}), done: make(chan struct{})}, true
		close(round.start)
		reads.running = round
	case reads.next == nil:
		round, runs = &readRound{start: make(chan struct{}), done: make(chan struct{})}, true
		reads.next = round
	}
	v.mu.Unlock()
	if runs {
		// Not in this caller's context: others wait for the round, and
		// this caller may stop waiting.
		go v.run(context.WithoutCancel(ctx), stream, round, query)
	}
	select {
	case <-round.done:
		return round.version, round.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (v *versionReads) run(ctx context.Context, stream string, round *readRound, query func(context.Context) (int64, error)) {
	<-round.start
	round.version, round.err = query(ctx)
	v.mu.Lock()
	reads := v.streams[stream]
	reads.running, reads.next = reads.next, nil
	if reads.running != nil {
		close(reads.running.start)
	} else {
		delete(v.streams, stream)
	}
	v.mu.Unlock()
	close(round.done)
}
