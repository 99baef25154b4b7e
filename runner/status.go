package runner

import (
	"context"
	"time"
)

// State is a subscription partition's state.
type State string

const (
	// StateRunning means its leader dispatches events.
	StateRunning State = "running"
	// StatePaused means an operator paused it (Control.Pause); its leader holds
	// the lease and dispatches nothing until it is resumed.
	StatePaused State = "paused"
	// StateFailed means an event failed MaxAttempts times under the Stop
	// policy; LastError and ErrorPosition say which and why. It stays so
	// until it is resumed (the event is tried again) or reset.
	StateFailed State = "failed"
)

// LeaseStatus is one subscription partition as the database sees it.
type LeaseStatus struct {
	Subscription string
	Partition    int
	Partitions   int
	// Worker holds the lease until LeaseExpiresAt; empty when nobody holds
	// a live lease.
	Worker         string
	LeaseExpiresAt time.Time
	// FenceToken grows at every acquisition: the checkpoint commits only
	// under the token its worker acquired.
	FenceToken int64
	// Checkpoint is the position up to which the partition has handled the
	// log; Head the log's head when the status was read, and Lag the
	// difference (events of other partitions and filtered out included).
	Checkpoint int64
	Head       int64
	Lag        int64
	State      State
	// Attempts at the batch in progress, counted before each dispatch.
	Attempts int
	// LastError and ErrorPosition describe the last failure, if any.
	LastError     string
	ErrorPosition int64
	// ParkedStreams counts the streams parked under the Park policy.
	ParkedStreams int
	UpdatedAt     time.Time
}

// ParkedStream is a stream whose events wait because one of them failed
// MaxAttempts times under the Park policy.
type ParkedStream struct {
	Subscription string
	Partition    int
	StreamID     string
	// StreamVersion and GlobalPosition are those of the event that failed,
	// the first one held.
	StreamVersion    int64
	GlobalPosition   int64
	Error            string
	ParkedAt         time.Time
	RetryRequestedAt *time.Time
	SkipReason       string
}

// SkippedEvent is an event an operator skipped (Control.SkipParked), with
// the reason given: a record that is never rewritten.
type SkippedEvent struct {
	Subscription   string
	Partition      int
	GlobalPosition int64
	StreamID       string
	StreamVersion  int64
	Reason         string
	Error          string
	SkippedAt      time.Time
}

// LeaseInfo is the lease a handler runs under.
type LeaseInfo struct {
	Subscription string
	Partition    int
	Partitions   int
	Worker       string
	// FenceToken grows with every change of leader. Pass it to a system
	// outside PostgreSQL that can refuse writes from an older token, to
	// fence a superseded leader's side effects there too.
	FenceToken int64
}

type leaseKey struct{}

// Lease returns the lease under which the handler given ctx runs; ok is
// false outside a handler.
func Lease(ctx context.Context) (info LeaseInfo, ok bool) {
	info, ok = ctx.Value(leaseKey{}).(LeaseInfo)
	return info, ok
}
