package runner

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/store"
)

// Defaults of Config.
const (
	LeaseTTLDefault        = 15 * time.Second
	RecheckIntervalDefault = 2 * time.Second
	PollIntervalDefault    = time.Second
	BatchSizeDefault       = 500
	MaxAttemptsDefault     = 5
	RetryBackoffDefault    = 100 * time.Millisecond
	MaxRetryBackoffDefault = 10 * time.Second
)

// MaxBatchSize bounds Config.BatchSize: a batch is read in one page.
const MaxBatchSize = 5000

// Config configures a Runner. The zero value is usable.
type Config struct {
	// WorkerID names this runner in leases and status. It must be unique
	// among the runners of a schema. Defaults to the host name, the process
	// id and a random suffix.
	WorkerID string

	// LeaseTTL is how long a lease lasts without a renewal, by the database
	// clock. A crashed leader's partitions are taken over within LeaseTTL
	// plus RecheckInterval; a leader renews every LeaseTTL/3 and stops
	// dispatching once its lease may have expired. Defaults to
	// LeaseTTLDefault (15s).
	LeaseTTL time.Duration

	// RecheckInterval is how often a runner renews its leases, tries to
	// take free or expired ones, and rebalances. A released lease is
	// announced and taken over at once (unless PollOnly). Defaults to
	// RecheckIntervalDefault (2s), and to at most LeaseTTL/3.
	RecheckInterval time.Duration

	// PollInterval is how often an idle subscription reads the log without
	// being woken by a notification: the safety net of push delivery, and
	// the delivery itself under PollOnly. Defaults to PollIntervalDefault
	// (1s).
	PollInterval time.Duration

	// PollOnly turns LISTEN off, for connection poolers in transaction
	// mode (PgBouncer, RDS Proxy) where it does not work: subscriptions
	// then learn of new events every PollInterval. Defaults to false.
	PollOnly bool

	// NoSequencer tells the runner that another process runs the store's
	// sequencer (a store.Sequencer, or another runner): without it the
	// runner runs one, so that new events get positions and reach
	// subscriptions. Defaults to false.
	NoSequencer bool

	// Sequencer configures the sequencer the runner runs (see
	// NoSequencer): its Interval bounds how soon a new event reaches
	// subscriptions. Defaults to the store's defaults (an Interval of
	// store.SequencerIntervalDefault, 20ms).
	Sequencer *store.SequencerConfig

	// NoLead opts this runner out of leading: it takes no lease and
	// dispatches nothing, and leaves every partition to the others (Status
	// and WaitFor still work). Defaults to false.
	NoLead bool

	// BatchSize is how many events a subscription handles per transaction
	// (at most MaxBatchSize) while it catches up; a subscription that keeps
	// up handles what arrived since its last batch. Defaults to
	// BatchSizeDefault (500).
	BatchSize int

	// MaxAttempts is how many times an event is tried on its own before
	// the subscription's FailurePolicy applies (an event that first failed
	// in a batch of a TransactionalEventHandler is tried once more: the
	// batch is retried one event at a time to find it). Attempts are stored
	// before each dispatch, so attempts that crashed the process count too.
	// Defaults to MaxAttemptsDefault (5).
	MaxAttempts int

	// RetryBackoff is the pause after a handler's first failure; it
	// doubles, with jitter, after each failure in a row up to
	// MaxRetryBackoff. Defaults to RetryBackoffDefault (100ms) and
	// MaxRetryBackoffDefault (10s).
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration

	// Logger receives the runner's diagnostics, with "runner:" messages.
	// Defaults to discarding them.
	Logger *slog.Logger

	// Metrics receives measurements of the runner's work. Defaults to
	// none.
	Metrics Metrics

	// Instrumentation observes the runner's batches and each call of a
	// handler, which it can link to the trace the event was appended in
	// (see core.TraceParentHeader); the handler's context carries what
	// Start returned, so what the handler appends is traced in turn.
	// Defaults to the store's (store.Config.Instrumentation), none if it
	// has none.
	Instrumentation core.Instrumentation
}

func (c Config) withDefaults() Config {
	c.LeaseTTL = cmp.Or(c.LeaseTTL, LeaseTTLDefault)
	c.RecheckInterval = min(cmp.Or(c.RecheckInterval, RecheckIntervalDefault), c.LeaseTTL/3)
	c.PollInterval = cmp.Or(c.PollInterval, PollIntervalDefault)
	c.BatchSize = cmp.Or(c.BatchSize, BatchSizeDefault)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, MaxAttemptsDefault)
	c.RetryBackoff = cmp.Or(c.RetryBackoff, RetryBackoffDefault)
	c.MaxRetryBackoff = cmp.Or(c.MaxRetryBackoff, MaxRetryBackoffDefault)
	if c.WorkerID == "" {
		c.WorkerID = defaultWorkerID()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = noMetrics{}
	}
	return c
}

func (c Config) validate() error {
	invalid := func(field, format string, args ...any) error {
		return &core.InvalidInputError{Field: "runner.Config." + field, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case c.LeaseTTL < 0 || (c.LeaseTTL > 0 && c.LeaseTTL < 300*time.Millisecond):
		return invalid("LeaseTTL", "%v: want at least 300ms", c.LeaseTTL)
	case c.RecheckInterval < 0:
		return invalid("RecheckInterval", "%v is negative", c.RecheckInterval)
	case c.PollInterval < 0:
		return invalid("PollInterval", "%v is negative", c.PollInterval)
	case c.BatchSize < 0 || c.BatchSize > MaxBatchSize:
		return invalid("BatchSize", "%d: want 1 to %d", c.BatchSize, MaxBatchSize)
	case c.MaxAttempts < 0:
		return invalid("MaxAttempts", "%d is negative", c.MaxAttempts)
	case c.RetryBackoff < 0:
		return invalid("RetryBackoff", "%v is negative", c.RetryBackoff)
	case c.MaxRetryBackoff < 0:
		return invalid("MaxRetryBackoff", "%v is negative", c.MaxRetryBackoff)
	case len(c.WorkerID) > 200:
		return invalid("WorkerID", "%d bytes: want at most 200", len(c.WorkerID))
	}
	return nil
}

func defaultWorkerID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "runner"
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix) // never fails (crypto/rand)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(suffix))
}
