package store

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/core/lifecycle"
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
//
// After a run that numbered events it also refreshes the statistics of a
// table that has doubled since they were taken (the events table, which
// stands for the log's tables, or the saga table), so that no plan
// PostgreSQL cached while the tables were small outlives their growth,
// with autovacuum off too. That runs in a statement of its
// own: a refresh that fails is logged, never returned.
func (s *EventStore) Sequence(ctx context.Context) (int64, error) {
	if s.instr == nil {
		assigned, err := s.sequenceAndRefresh(ctx)
		return assigned, s.interpretError("sequence", err)
	}
	ctx, op := s.start(ctx, core.Operation{Kind: core.OpSequence})
	assigned, err := s.sequenceAndRefresh(ctx)
	err = s.interpretError("sequence", err)
	op.done(core.Outcome{Err: err, Events: int(assigned)})
	return assigned, err
}

// sequenceAndRefresh runs a sweep and, when its statement found the
// statistics stale (events or saga_instances doubled since they were
// taken; statistics_stale in schema/migrations), the
// refresh that takes them again (refresh_statistics in schema/migrations),
// which remakes every connection's plans of the tables. The refresh runs in
// a statement of its own so that a slow or failed one never fails the
// sweep; a failure is logged (at most once a minute) and the next sweep
// that numbers events tries again.
func (s *EventStore) sequenceAndRefresh(ctx context.Context) (int64, error) {
	swept, err := s.sequence(ctx)
	if err != nil {
		return 0, err
	}
	if !swept.RefreshDue {
		return swept.Assigned, nil
	}
	refreshed, refreshErr := s.refreshStatistics(ctx)
	switch {
	case refreshErr == nil:
		if refreshed {
			s.logger.DebugContext(ctx, "store: refreshed the statistics of a table that doubled since they were taken",
				"schema", s.schema)
		}
	case ctx.Err() == nil:
		now := time.Now().UnixNano()
		last := s.refreshFailureLogged.Load()
		if now-last >= int64(sequencerFailureLogInterval) && s.refreshFailureLogged.CompareAndSwap(last, now) {
			s.logger.WarnContext(ctx, "store: refreshing the statistics failed; the next sweep tries again",
				"schema", s.schema, "error", s.interpretError("refresh statistics", refreshErr))
		}
	}
	return swept.Assigned, nil
}

// Head returns the highest assigned global position, 0 for an empty log.
func (s *EventStore) Head(ctx context.Context) (int64, error) {
	head, err := s.head(ctx)
	return head, s.interpretError("head", err)
}

// StreamVersion returns a stream's current version, 0 if it has no events.
// Callers reading a stream that writers race for at the same moment share
// one read that starts after each of them asked.
func (s *EventStore) StreamVersion(ctx context.Context, streamID string) (int64, error) {
	var version int64
	var err error
	if _, hot := s.hot.lookup(streamID); hot {
		version, err = s.versionReads.read(ctx, streamID, func(ctx context.Context) (int64, error) {
			return s.streamVersion(ctx, s.pool, streamID)
		})
	} else {
		version, err = s.streamVersion(ctx, s.pool, streamID)
	}
	return version, s.interpretError("stream version", err)
}

// SequencerConfig configures a [Sequencer]. The zero value is usable.
type SequencerConfig struct {
	// Interval is the pause between sequencing runs while they succeed.
	// Defaults to SequencerIntervalDefault (20ms).
	Interval time.Duration

	// RunTimeout bounds one sequencing run, including the wait for a
	// connection and for the sequencer lock; a run that passes it counts
	// as a failure. Defaults to SequencerRunTimeoutDefault (5s).
	RunTimeout time.Duration

	// MaxBackoff caps the pause between failing runs: after consecutive
	// failures the pause doubles from Interval (at least 10ms) up to
	// MaxBackoff, with jitter. Defaults to SequencerMaxBackoffDefault (5s).
	MaxBackoff time.Duration
}

// Sequencer assigns global positions in the background, so that readers of
// the log find new events without sequencing themselves. Any number may run
// against one schema, in any number of processes: their runs are serialized
// in PostgreSQL.
//
// While the database is down or a run keeps failing, the Sequencer retries
// with a growing, jittered pause up to MaxBackoff rather than every
// Interval. It logs a warning at the first failure ("store.Sequencer:
// sequencing failed"), again at most once a minute while failures go on,
// and once when a run succeeds again ("store.Sequencer: sequencing
// recovered"). Events committed meanwhile wait for a position; the first
// run that succeeds numbers them all. Stop does not wait for a run to time
// out: it cancels it.
//
// Start, Stop, Started and Stopped follow [lifecycle.Service]: Start returns
// at once, Stop waits for the background goroutine and is idempotent, and a
// stopped Sequencer starts again.
type Sequencer struct {
	base lifecycle.Base // unexported: StartFunc is not for callers

	store      *EventStore
	interval   time.Duration
	runTimeout time.Duration
	maxBackoff time.Duration
}

var _ lifecycle.Service = (*Sequencer)(nil)

// NewSequencer returns a Sequencer for s. config may be nil for the
// defaults; an invalid one is a *core.InvalidInputError naming the field.
func NewSequencer(s *EventStore, config *SequencerConfig) (*Sequencer, error) {
	if s == nil {
		return nil, &core.InvalidInputError{Field: "store", Reason: "is nil"}
	}
	var c SequencerConfig
	if config != nil {
		c = *config
	}
	invalid := func(field string, value time.Duration) error {
		return &core.InvalidInputError{Field: "SequencerConfig." + field, Reason: fmt.Sprintf("%v is negative", value)}
	}
	switch {
	case c.Interval < 0:
		return nil, invalid("Interval", c.Interval)
	case c.RunTimeout < 0:
		return nil, invalid("RunTimeout", c.RunTimeout)
	case c.MaxBackoff < 0:
		return nil, invalid("MaxBackoff", c.MaxBackoff)
	}
	return &Sequencer{
		store:      s,
		interval:   cmp.Or(c.Interval, SequencerIntervalDefault),
		runTimeout: cmp.Or(c.RunTimeout, SequencerRunTimeoutDefault),
		maxBackoff: cmp.Or(c.MaxBackoff, SequencerMaxBackoffDefault),
	}, nil
}

// Start begins sequencing in a goroutine and returns at once. It runs until
// Stop is called or ctx ends. Starting a running Sequencer does nothing. The
// error is for the [lifecycle.Service] interface; it is always nil today.
func (sq *Sequencer) Start(ctx context.Context) error {
	sq.base.StartFunc(ctx, sq.run)
	return nil
}

// Stop stops the Sequencer, cancelling a run in progress, and waits until
// its goroutine has returned, or until ctx ends. It is idempotent, and safe
// to call concurrently and before Start.
func (sq *Sequencer) Stop(ctx context.Context) error { return sq.base.Stop(ctx) }

// Started returns a channel closed once the Sequencer has started.
func (sq *Sequencer) Started() <-chan struct{} { return sq.base.Started() }

// Stopped returns a channel closed once the Sequencer is not running. Take
// it after Start: each start has a new one.
func (sq *Sequencer) Stopped() <-chan struct{} { return sq.base.Stopped() }

func (sq *Sequencer) run(ctx context.Context) {
	logger := sq.store.logger
	backoff := lifecycle.Backoff{Min: max(sq.interval, sequencerMinBackoff), Max: sq.maxBackoff}
	var failingSince, loggedAt time.Time
	timer := time.NewTimer(sq.interval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		runCtx, cancel := context.WithTimeout(ctx, sq.runTimeout)
		_, err := sq.store.Sequence(runCtx)
		cancel()
		if ctx.Err() != nil {
			return // stopped: not a failure
		}
		if err == nil {
			if backoff.Failures() > 0 {
				logger.InfoContext(ctx, "store.Sequencer: sequencing recovered",
					"failures", backoff.Failures(), "failing_for", time.Since(failingSince).Round(time.Millisecond))
				backoff.Success()
			}
			timer.Reset(sq.interval)
			continue
		}
		delay := backoff.Failure()
		now := time.Now()
		if backoff.Failures() == 1 {
			failingSince = now
		}
		if backoff.Failures() == 1 || now.Sub(loggedAt) >= sequencerFailureLogInterval {
			loggedAt = now
			logger.WarnContext(ctx, "store.Sequencer: sequencing failed",
				"error", err, "failures", backoff.Failures(),
				"failing_for", now.Sub(failingSince).Round(time.Millisecond), "retry_in", delay.Round(time.Millisecond))
		}
		timer.Reset(delay)
	}
}
