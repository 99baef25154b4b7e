package runner

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/core/lifecycle"
	"github.com/mire-go/mire/store"
)

// Runner keeps subscriptions current: it reads the log for each of them
// and hands the events to their handlers, under a fenced lease per
// subscription partition, so that each partition has one leader across any
// number of runners (replicas) on the schema.
//
// Start, Stop, Started and Stopped follow [lifecycle.Service]; Run is the
// same for a supervisor that wants one blocking call.
type Runner struct {
	base lifecycle.Base // unexported: StartFunc is not for callers

	store   *store.EventStore
	config  Config
	db      *db
	control *Control

	mu            sync.Mutex
	subscriptions []*Subscription
	leaseSignals  map[string]*signal // per subscription: a lease was released or changed

	// newEvents wakes idle partitions: the sequencer announced new
	// positions, a poll is due, or the listener reconnected.
	newEvents *signal
}

// New returns a Runner on es. config may be nil for the defaults; an
// invalid one is a *core.InvalidInputError naming the field.
func New(es *store.EventStore, config *Config) (*Runner, error) {
	if es == nil {
		return nil, &core.InvalidInputError{Field: "store", Reason: "is nil"}
	}
	var c Config
	if config != nil {
		c = *config
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	if _, err := store.NewSequencer(es, c.Sequencer); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	if c.Instrumentation == nil {
		c.Instrumentation = es.Instrumentation()
	}
	r := &Runner{store: es, config: c, db: newDB(es), leaseSignals: map[string]*signal{}, newEvents: newSignal()}
	r.control = &Control{store: es, db: r.db, progress: newSignal()}
	return r, nil
}

// Add adds a subscription. Add them before Start; a subscription added to
// a running Runner is taken up at its next start.
func (r *Runner) Add(sub Subscription) error {
	if err := sub.validate(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if slices.ContainsFunc(r.subscriptions, func(s *Subscription) bool { return s.Name == sub.Name }) {
		return &core.InvalidInputError{Field: "runner.Subscription.Name", Value: sub.Name, Reason: "already added"}
	}
	sub.EventTypes = slices.Clone(sub.EventTypes)
	r.subscriptions = append(r.subscriptions, &sub)
	r.leaseSignals[sub.Name] = newSignal()
	return nil
}

// NewEvents returns a channel closed the next time this runner learns of
// new events in the log (the sequencer's notification, or a poll while
// notifications are off or lost). Components that follow the log beside the
// runner (the saga engine) wait on it instead of listening themselves.
func (r *Runner) NewEvents() <-chan struct{} { return r.newEvents.wait() }

// WorkerID returns the id this runner takes leases under.
func (r *Runner) WorkerID() string { return r.config.WorkerID }

// Control returns the runner's operations handle: status, pause, resume,
// reset, parked streams and WaitFor.
func (r *Runner) Control() *Control { return r.control }

// WaitFor is Control().WaitFor.
func (r *Runner) WaitFor(ctx context.Context, subscription string, committed *core.CommittedEvents) error {
	return r.control.WaitFor(ctx, subscription, committed)
}

// Start creates the rows of subscriptions seen for the first time, checks
// the others, and starts the runner's goroutines; it returns once that is
// done. The runner runs until Stop is called or ctx ends. Starting a
// running Runner does nothing.
func (r *Runner) Start(ctx context.Context) error {
	r.mu.Lock()
	subs := slices.Clone(r.subscriptions)
	r.mu.Unlock()
	for _, sub := range subs {
		if err := r.prepare(ctx, sub); err != nil {
			return err
		}
	}
	r.base.StartFunc(ctx, func(ctx context.Context) { r.run(ctx, subs) })
	return nil
}

// Stop stops the runner: batches in flight finish or roll back, leases are
// released so that standbys take over at once, and Stop returns once every
// goroutine has, or when ctx ends. It is idempotent.
func (r *Runner) Stop(ctx context.Context) error { return r.base.Stop(ctx) }

// Started returns a channel closed once the runner has started.
func (r *Runner) Started() <-chan struct{} { return r.base.Started() }

// Stopped returns a channel closed once the runner is not running.
func (r *Runner) Stopped() <-chan struct{} { return r.base.Stopped() }

// Run starts the runner and blocks until ctx ends, then stops it and
// returns nil; or returns Start's error.
func (r *Runner) Run(ctx context.Context) error {
	if err := r.Start(ctx); err != nil {
		return err
	}
	stopped := r.Stopped()
	select {
	case <-ctx.Done():
	case <-stopped:
	}
	cleanup, cancel := lifecycle.CleanupContext(ctx, r.config.LeaseTTL)
	defer cancel()
	return r.Stop(cleanup)
}

// prepare creates sub's rows at its start position, or checks that the
// stored ones have its partitions.
func (r *Runner) prepare(ctx context.Context, sub *Subscription) error {
	stored, err := r.db.storedPartitions(ctx, sub.Name)
	if err != nil {
		return err
	}
	switch {
	case stored == 0:
		var start int64
		if sub.StartAt == StartAtHead {
			if _, err := r.store.Sequence(ctx); err != nil {
				return err
			}
			if start, err = r.store.Head(ctx); err != nil {
				return err
			}
		}
		return r.db.createSubscription(ctx, sub.Name, sub.partitions(), start)
	case stored != sub.partitions():
		return &core.InvalidInputError{Field: "runner.Subscription.Partitions", Value: sub.Name,
			Reason: fmt.Sprintf("%d partitions, but the subscription is stored with %d: changing the count moves "+
				"streams between partitions; drop the subscription (Control.Drop) and rebuild it, or use a new name",
				sub.partitions(), stored)}
	}
	return nil
}

func (r *Runner) run(ctx context.Context, subs []*Subscription) {
	var wg sync.WaitGroup
	defer wg.Wait()
	if !r.config.NoSequencer {
		sequencer, err := store.NewSequencer(r.store, r.config.Sequencer)
		if err != nil {
			r.config.Logger.ErrorContext(ctx, "runner: the sequencer's configuration is invalid; not sequencing", "error", err)
		} else {
			_ = sequencer.Start(ctx) // always nil
			defer func() {
				cleanup, cancel := lifecycle.CleanupContext(ctx, time.Second)
				defer cancel()
				_ = sequencer.Stop(cleanup) // it has stopped or is stopping: nothing to do on error
			}()
		}
	}
	if !r.config.PollOnly {
		wg.Go(func() { r.listen(ctx) })
	}
	wg.Go(func() { r.poll(ctx) })
	if !r.config.NoLead {
		for _, sub := range subs {
			c := &coordinator{runner: r, sub: sub, leases: map[int]*lease{}}
			wg.Go(func() { c.run(ctx) })
		}
	}
	<-ctx.Done()
}

// poll wakes idle partitions every PollInterval: the safety net for lost
// notifications, and the delivery under PollOnly.
func (r *Runner) poll(ctx context.Context) {
	ticker := time.NewTicker(r.config.PollInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			r.newEvents.notify()
		}
	}
}

// listen holds a connection of its own (not the pool's) that LISTENs to
// the store's notification channel and the lease channel, and reconnects
// after losing it, waking every partition then so nothing sent meanwhile
// is missed.
func (r *Runner) listen(ctx context.Context) {
	backoff := lifecycle.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	for ctx.Err() == nil {
		err := r.listenOnce(ctx, &backoff)
		if ctx.Err() != nil {
			return
		}
		delay := backoff.Failure()
		if backoff.Failures() == 1 || backoff.Failures()%20 == 0 {
			r.config.Logger.WarnContext(ctx, "runner: lost the notification connection; polling until it is back",
				"error", err, "retry_in", delay)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

func (r *Runner) listenOnce(ctx context.Context, backoff *lifecycle.Backoff) error {
	conn, err := pgx.ConnectConfig(ctx, r.store.Pool().Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := lifecycle.CleanupContext(ctx, time.Second)
		defer cancel()
		_ = conn.Close(closeCtx) // the connection is being dropped anyway
	}()
	if err := r.db.listen(ctx, conn); err != nil {
		return err
	}
	if backoff.Failures() > 0 {
		r.config.Logger.InfoContext(ctx, "runner: notification connection is back")
	}
	backoff.Success()
	// Whatever was announced while no connection listened.
	r.newEvents.notify()
	r.notifyLeases("")
	eventsChannel, leaseChannel := r.store.NotificationChannel(), r.store.LeaseChannel()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		switch n.Channel {
		case eventsChannel:
			r.newEvents.notify()
		case leaseChannel:
			r.notifyLeases(n.Payload)
		}
	}
}

// notifyLeases wakes the coordinator of subscription name, or of every
// subscription for "".
func (r *Runner) notifyLeases(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for sub, s := range r.leaseSignals {
		if name == "" || name == sub {
			s.notify()
		}
	}
}

func (r *Runner) leaseSignal(name string) *signal {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leaseSignals[name]
}
