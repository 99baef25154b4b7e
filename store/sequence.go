package store

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Sequence assigns global positions to every event committed so far that
// has none, and returns how many it assigned. Events committed together in
// one run are numbered in insertion order, which agrees with each stream's
// version order. It runs in one short transaction of its own, serialized
// with every other sequencer of the schema, and never waits for appending
// transactions.
//
// Category and whole-log reads call it first (see Config.NoSequenceOnRead);
// call it yourself to learn the positions of events you just appended, or
// run a [Sequencer] to keep positions current in the background.
func (s *EventStore) Sequence(ctx context.Context) (int64, error) {
	assigned, err := s.sequence(ctx)
	return assigned, s.interpretError("sequence", err)
}

// Head returns the highest assigned global position, 0 for an empty log.
func (s *EventStore) Head(ctx context.Context) (int64, error) {
	head, err := s.head(ctx)
	return head, s.interpretError("head", err)
}

// StreamVersion returns a stream's current version, 0 if it has no events.
func (s *EventStore) StreamVersion(ctx context.Context, streamID string) (int64, error) {
	version, err := s.streamVersion(ctx, s.pool, streamID)
	return version, s.interpretError("stream version", err)
}

// SequencerIntervalDefault is how often a [Sequencer] sequences by default.
const SequencerIntervalDefault = 20 * time.Millisecond

// SequencerConfig configures a [Sequencer]. The zero value is usable.
type SequencerConfig struct {
	// Interval is the time between sequencing runs. Defaults to
	// SequencerIntervalDefault (20ms).
	Interval time.Duration
}

// Sequencer assigns global positions in the background, so that readers of
// the log find new events without sequencing themselves. Any number may run
// against one schema, in any number of processes: their runs are serialized
// in PostgreSQL.
type Sequencer struct {
	store    *EventStore
	interval time.Duration

	mu      sync.Mutex
	cancel  context.CancelFunc
	stopped chan struct{}
}

// NewSequencer returns a Sequencer for s. config may be nil.
func NewSequencer(s *EventStore, config *SequencerConfig) *Sequencer {
	interval := SequencerIntervalDefault
	if config != nil && config.Interval > 0 {
		interval = config.Interval
	}
	stopped := make(chan struct{})
	close(stopped)
	return &Sequencer{store: s, interval: interval, stopped: stopped}
}

// Start begins sequencing in a goroutine and returns at once. It runs until
// ctx is cancelled or Stop is called. Starting a running Sequencer is a
// no-op.
func (q *Sequencer) Start(ctx context.Context) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.cancel != nil {
		return
	}
	ctx, q.cancel = context.WithCancel(ctx)
	q.stopped = make(chan struct{})
	go q.run(ctx, q.stopped)
}

func (q *Sequencer) run(ctx context.Context, stopped chan struct{}) {
	defer close(stopped)
	ticker := time.NewTicker(q.interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if _, err := q.store.Sequence(ctx); err != nil && !errors.Is(err, context.Canceled) {
			q.store.logger.WarnContext(ctx, "store.Sequencer: sequencing failed", "error", err)
		}
	}
}

// Stop stops the Sequencer and waits until its goroutine has returned, or
// ctx ends. It is idempotent.
func (q *Sequencer) Stop(ctx context.Context) error {
	q.mu.Lock()
	cancel, stopped := q.cancel, q.stopped
	q.cancel = nil
	q.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	select {
	case <-stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stopped returns a channel closed once the Sequencer is not running.
func (q *Sequencer) Stopped() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.stopped
}
