package saga

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/core/lifecycle"
	"github.com/mire-go/mire/runner"
	"github.com/mire-go/mire/saga/internal/dbsqlc"
	"github.com/mire-go/mire/store"
)

// Defaults of Config.
const (
	ExecutorsDefault    = 8
	ClaimTTLDefault     = time.Minute
	PollIntervalDefault = time.Second
	MaxAttemptsDefault  = 5
	RetryBackoffDefault = 200 * time.Millisecond
	MaxBackoffDefault   = time.Minute
)

// InboxSubscription is the name of the runner subscription that routes
// replies into sagas' journals.
const InboxSubscription = "saga-inbox"

// Config configures an Engine. The zero value is usable.
type Config struct {
	// WorkerID names this engine in claims. Defaults to the host name, the
	// process id and a random suffix.
	WorkerID string
	// Executors is how many sagas this engine runs at once. Defaults to
	// ExecutorsDefault (8).
	Executors int
	// ClaimTTL is how long a claim on a saga lasts; a saga whose executor
	// died is run by another after it. An executor slower than it is
	// fenced: its journal appends conflict and roll back. Defaults to
	// ClaimTTLDefault (1m).
	ClaimTTL time.Duration
	// PollInterval bounds how long the engine waits without a notification
	// before it looks for due sagas. Defaults to PollIntervalDefault (1s).
	PollInterval time.Duration
	// MaxAttempts is how many times a failing Step, StepTx or compensation
	// is tried before its failure is final. Defaults to
	// MaxAttemptsDefault (5).
	MaxAttempts int
	// RetryBackoff and MaxBackoff pace the attempts: doubling from
	// RetryBackoff up to MaxBackoff. Default to RetryBackoffDefault (200ms)
	// and MaxBackoffDefault (1m).
	RetryBackoff time.Duration
	MaxBackoff   time.Duration
	// NoExecutors makes this engine route replies and start sagas without
	// running any. Defaults to false.
	NoExecutors bool
	// Logger receives the engine's diagnostics ("saga:" messages). Defaults
	// to discarding them.
	Logger *slog.Logger
	// Metrics receives measurements. Defaults to none.
	Metrics Metrics
	// Instrumentation observes the engine's saga runs and the steps they
	// carry out (not those replayed from the journal); a step runs in the
	// context Start returned, so what it sends is traced in turn, and an
	// await that takes a reply links to the trace the reply was appended
	// in. Defaults to the store's (store.Config.Instrumentation), none if
	// it has none.
	Instrumentation core.Instrumentation
}

// Metrics receives the saga engine's measurements; its methods must not
// block.
type Metrics interface {
	// Started reports a saga started (not a repeated Start).
	Started(name string)
	// Ended reports a saga that reached status.
	Ended(name string, status Status)
	// Step reports a run of a saga: how long it took and how it stopped
	// (the status it left the saga in).
	Step(name string, took time.Duration, status Status)
}

type noMetrics struct{}

func (noMetrics) Started(string)                     {}
func (noMetrics) Ended(string, Status)               {}
func (noMetrics) Step(string, time.Duration, Status) {}

// Status is where a saga is.
type Status string

// The statuses of a saga: running or waiting (for a reply or a timer),
// compensating after a failure; completed, failed (with nothing to
// compensate) or compensated at the end; compensation_failed and blocked
// until an operator retries it (Engine.Retry).
const (
	StatusRunning            Status = "running"
	StatusWaiting            Status = "waiting"
	StatusCompensating       Status = "compensating"
	StatusCompleted          Status = "completed"
	StatusFailed             Status = "failed"
	StatusCompensated        Status = "compensated"
	StatusCompensationFailed Status = "compensation_failed"
	StatusBlocked            Status = "blocked"
)

// Terminal reports a status a saga never leaves by itself.
func (s Status) Terminal() bool {
	switch s {
	case StatusCompleted, StatusFailed, StatusCompensated:
		return true
	}
	return false
}

// Info is a saga as the engine's index sees it.
type Info struct {
	Name          string
	ID            string
	StreamID      string
	CorrelationID uuid.UUID
	Version       int
	Status        Status
	WakeAt        *time.Time
	ClaimedBy     string
	Attempts      int
	LastError     string
	Result        json.RawMessage
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// ListOpts selects sagas for Engine.List.
type ListOpts struct {
	Status Status
	Name   string
	// Limit defaults to 100.
	Limit int
}

// Engine runs sagas: it starts them, routes replies into their journals
// (a subscription of the given runner) and runs due sagas on its
// executors. Any number of engines may run against one schema; each runs
// the sagas of the definitions it was given (every version given), so
// services with sagas of their own can share a schema.
type Engine struct {
	base lifecycle.Base

	store       *store.EventStore
	config      Config
	db          *db
	definitions map[string]map[int]definitionInfo // by name, then version
	names       []string                          // the names defined: the sagas this engine runs
	receives    []string

	wake        chan struct{} // a saga became due in this process
	newEvents   func() <-chan struct{}
	stepResults *resultCache
	progress    *progressSignal // a saga of this process ended a run
}

// New returns an Engine for definitions on es. r is the runner that
// routes replies: New adds the InboxSubscription to it, so call New before
// r starts, and run r (in this process or another) for replies to arrive.
// r may be nil in a process that only starts sagas or runs executors while
// other processes route. config may be nil.
func New(es *store.EventStore, r *runner.Runner, config *Config, definitions ...AnyDefinition) (*Engine, error) {
	var c Config
	if config != nil {
		c = *config
	}
	invalid := func(field, format string, args ...any) error {
		return &core.InvalidInputError{Field: "saga.Config." + field, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case es == nil:
		return nil, &core.InvalidInputError{Field: "store", Reason: "is nil"}
	case c.Executors < 0:
		return nil, invalid("Executors", "%d is negative", c.Executors)
	case c.ClaimTTL < 0 || (c.ClaimTTL > 0 && c.ClaimTTL < time.Second):
		return nil, invalid("ClaimTTL", "%v: want at least 1s", c.ClaimTTL)
	case c.PollInterval < 0:
		return nil, invalid("PollInterval", "%v is negative", c.PollInterval)
	case c.MaxAttempts < 0:
		return nil, invalid("MaxAttempts", "%d is negative", c.MaxAttempts)
	case c.RetryBackoff < 0 || c.MaxBackoff < 0:
		return nil, invalid("RetryBackoff", "backoffs must not be negative")
	}
	c.Executors = cmp.Or(c.Executors, ExecutorsDefault)
	c.ClaimTTL = cmp.Or(c.ClaimTTL, ClaimTTLDefault)
	c.PollInterval = cmp.Or(c.PollInterval, PollIntervalDefault)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, MaxAttemptsDefault)
	c.RetryBackoff = cmp.Or(c.RetryBackoff, RetryBackoffDefault)
	c.MaxBackoff = cmp.Or(c.MaxBackoff, MaxBackoffDefault)
	if c.WorkerID == "" {
		host, _ := os.Hostname()
		suffix := make([]byte, 4)
		_, _ = rand.Read(suffix) // never fails
		c.WorkerID = fmt.Sprintf("%s-%d-%s", cmp.Or(host, "saga"), os.Getpid(), hex.EncodeToString(suffix))
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = noMetrics{}
	}
	if c.Instrumentation == nil {
		c.Instrumentation = es.Instrumentation()
	}
	e := &Engine{store: es, config: c, db: &db{store: es, q: dbsqlc.New()}, definitions: map[string]map[int]definitionInfo{},
		wake: make(chan struct{}, 1), stepResults: &resultCache{results: map[string]json.RawMessage{}},
		progress: &progressSignal{ch: make(chan struct{})}}
	seen := map[string]bool{}
	for _, d := range definitions {
		info := d.info()
		versions := e.definitions[info.name]
		if versions == nil {
			versions = map[int]definitionInfo{}
			e.definitions[info.name] = versions
			e.names = append(e.names, info.name)
		}
		if _, dup := versions[info.version]; dup {
			return nil, &core.InvalidInputError{Field: "definitions", Value: info.name,
				Reason: fmt.Sprintf("version %d defined twice", info.version)}
		}
		versions[info.version] = info
		for _, t := range info.receives {
			if !seen[t] {
				seen[t] = true
				e.receives = append(e.receives, t)
			}
		}
	}
	e.newEvents = func() <-chan struct{} { return nil }
	if r != nil {
		e.newEvents = r.NewEvents
		if len(e.receives) > 0 {
			// From the beginning: a reply to a saga started before the
			// subscription first ran must reach it too. The first run reads
			// the log once, keeping only the reply types.
			err := r.Add(runner.Subscription{Name: InboxSubscription, EventTypes: e.receives, StartAt: runner.StartAtBeginning,
				TxHandler: e.route})
			if err != nil {
				return nil, err
			}
		}
	}
	return e, nil
}

// Start starts the engine's executors and returns at once.
func (e *Engine) Start(ctx context.Context) error {
	if !e.config.NoExecutors {
		e.base.StartFunc(ctx, e.run)
	}
	return nil
}

// Stop stops the executors, and waits for the sagas they run to reach a
// journal point (or roll back), or until ctx ends.
func (e *Engine) Stop(ctx context.Context) error { return e.base.Stop(ctx) }

// Started returns a channel closed once the engine has started.
func (e *Engine) Started() <-chan struct{} { return e.base.Started() }

// Stopped returns a channel closed once the engine is not running.
func (e *Engine) Stopped() <-chan struct{} { return e.base.Stopped() }

// Run starts the engine and blocks until ctx ends, then stops it.
func (e *Engine) Run(ctx context.Context) error {
	if err := e.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	cleanup, cancel := lifecycle.CleanupContext(ctx, e.config.ClaimTTL)
	defer cancel()
	return e.Stop(cleanup)
}

// signal makes the dispatcher look for due sagas now.
func (e *Engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// run is the dispatcher: it claims due sagas while executors are free and
// sleeps until the next is due, a notification or a poll.
func (e *Engine) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, e.config.Executors)
	done := make(chan struct{}, e.config.Executors)
	backoff := lifecycle.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	for ctx.Err() == nil {
		newEvents := e.newEvents()
		free := cap(slots) - len(slots)
		var claimed []claimed
		var err error
		if free > 0 {
			claimed, err = e.db.claim(ctx, e.config.WorkerID, e.config.ClaimTTL, free, e.names)
			if err != nil && ctx.Err() == nil {
				delay := backoff.Failure()
				e.config.Logger.WarnContext(ctx, "saga: claiming due sagas failed", "error", err, "retry_in", delay)
				sleep(ctx, delay)
				continue
			}
			backoff.Success()
		}
		for _, c := range claimed {
			slots <- struct{}{}
			wg.Go(func() {
				defer func() {
					<-slots
					select { // a hint for the dispatcher; never wait for it
					case done <- struct{}{}:
					default:
					}
				}()
				e.execute(ctx, c)
			})
		}
		if len(claimed) > 0 && len(claimed) == free {
			continue // there may be more due
		}
		wait := e.config.PollInterval
		if until, ok, err := e.db.nextWake(ctx, e.names); err == nil && ok {
			wait = min(wait, max(until, time.Millisecond))
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-timer.C:
		case <-e.wake:
		case <-newEvents:
		case <-done:
		}
		timer.Stop()
	}
}

// execute runs a claimed saga from its journal until it waits, ends or
// must stop.
func (e *Engine) execute(ctx context.Context, c claimed) {
	started := time.Now()
	// A long step must not let the claim lapse while the executor still
	// works: another would run the saga beside it (the journal's version
	// would fence it, but a Step's side effect would run twice).
	renewing, stopRenewing := context.WithCancel(ctx)
	var renewer sync.WaitGroup
	renewer.Go(func() {
		ticker := time.NewTicker(e.config.ClaimTTL / 3)
		defer ticker.Stop()
		for {
			select {
			case <-renewing.Done():
				return
			case <-ticker.C:
				if ok, err := e.db.renewClaim(renewing, c, e.config.WorkerID, e.config.ClaimTTL); err == nil && !ok {
					return
				}
			}
		}
	})
	defer renewer.Wait()
	defer stopRenewing()
	var end func(core.Outcome)
	if instr := e.config.Instrumentation; instr != nil {
		ctx, end = instr.Start(ctx, core.Operation{Kind: core.OpSagaRun, Saga: c.name, SagaID: c.id, StreamID: c.streamID})
	}
	status, err := e.executeRuns(ctx, c)
	if end != nil {
		end(core.Outcome{Err: err, Status: string(status)})
	}
	if err != nil && ctx.Err() == nil {
		e.config.Logger.WarnContext(ctx, "saga: run failed", "saga", c.name, "id", c.id, "error", err)
	}
	e.config.Metrics.Step(c.name, time.Since(started), status)
	e.progress.notify()
}

// progressSignal wakes Result waiters of this process when a run ends.
type progressSignal struct {
	mu sync.Mutex
	ch chan struct{}
}

func (p *progressSignal) wait() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ch
}

func (p *progressSignal) notify() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.ch)
	p.ch = make(chan struct{})
}

func (e *Engine) executeRuns(ctx context.Context, c claimed) (Status, error) {
	for range 20 { // conflicts: the journal moved under the run; read it again
		events, err := e.store.ReadEvents(ctx, core.ReadStream(c.streamID))
		if err != nil {
			return "", err
		}
		j, err := readJournal(events)
		if err != nil {
			return e.end(ctx, c, nil, release{status: StatusBlocked, lastError: err.Error()})
		}
		if j.finished != nil {
			return e.end(ctx, c, nil, release{status: j.finished.Status, seenVersion: j.version, result: j.finished.Result,
				lastError: j.finished.Error})
		}
		def, ok := e.definitions[c.name][j.started.Version]
		if !ok {
			return e.end(ctx, c, nil, release{status: StatusBlocked, seenVersion: j.version,
				lastError: fmt.Sprintf("this engine has no definition %q at version %d", c.name, j.started.Version)})
		}
		if c.dbNow, err = e.db.now(ctx); err != nil {
			return "", err
		}
		sc := &Context{ctx: ctx, engine: e, instance: c, journal: j, dbNow: c.dbNow}
		_, r, again, err := e.runOnce(sc, def)
		if err != nil {
			return "", err
		}
		if again {
			continue
		}
		return e.end(ctx, c, sc, r)
	}
	return "", errors.New("saga: the journal kept moving under the run")
}

// runOnce replays the saga function on its journal and runs its next
// steps; again reports a conflict (replay from a fresh read).
func (e *Engine) runOnce(c *Context, def definitionInfo) (Status, release, bool, error) {
	result, runErr := e.call(c, def)
	if done, r, again := e.stopped(c); done || again {
		return r.status, r, again, nil
	}
	j := c.journal
	if runErr == nil && j.cause == nil {
		r := release{status: StatusCompleted, result: result}
		if err := e.finish(c, finished{Status: StatusCompleted, Result: result}); err != nil {
			if _, r, again := e.stopped(c); again {
				return r.status, r, true, nil
			}
			return "", release{}, false, err
		}
		return r.status, r, false, nil
	}
	// The saga failed (or was cancelled): undo, in reverse.
	c.compensating = true
	cause := ""
	if runErr != nil {
		cause = runErr.Error()
	}
	if j.cause == nil {
		if err := c.journalStep(nil, compensating{Cause: cause}); err != nil {
			_, r, again := e.stopped(c)
			return r.status, r, again, nil
		}
	}
	cause = j.cause.Cause
	for i := len(c.compensations) - 1; i >= 0; i-- {
		if seq, done := j.undone[i]; done {
			c.seq = seq
			continue
		}
		err := e.callCompensation(c, c.compensations[i])
		if done, r, again := e.stopped(c); done || again {
			r.status = cmp.Or(r.status, StatusCompensating)
			if r.status == StatusWaiting || r.status == StatusRunning {
				r.status = StatusCompensating
			}
			return r.status, r, again, nil
		}
		if err != nil {
			if c.instance.attempts+1 < e.config.MaxAttempts {
				return StatusCompensating, e.retryRelease(c, StatusCompensating, err), false, nil
			}
			msg := fmt.Sprintf("compensation %q failed: %v (the saga failed first: %s)", c.compensations[i].name, err, cause)
			if err := e.finish(c, finished{Status: StatusCompensationFailed, Error: msg}); err != nil {
				_, r, again := e.stopped(c)
				return r.status, r, again, nil
			}
			return StatusCompensationFailed, release{status: StatusCompensationFailed, lastError: msg}, false, nil
		}
		if err := c.journalStep(nil, compensated{Index: i, Name: c.compensations[i].name, Seq: c.seq}); err != nil {
			_, r, again := e.stopped(c)
			return r.status, r, again, nil
		}
	}
	status := StatusFailed
	if len(c.compensations) > 0 {
		status = StatusCompensated
	}
	if err := e.finish(c, finished{Status: status, Error: cause}); err != nil {
		_, r, again := e.stopped(c)
		return r.status, r, again, nil
	}
	return status, release{status: status, lastError: cause}, false, nil
}

// call runs the saga function, turning a panic into a block: a saga that
// panics is a bug an operator must see.
func (e *Engine) call(c *Context, def definitionInfo) (result json.RawMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = c.block(fmt.Sprintf("the saga function panicked: %v\n%s", p, debug.Stack()))
		}
	}()
	return def.run(c, c.journal.started.Input)
}

func (e *Engine) callCompensation(c *Context, comp compensation) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = c.block(fmt.Sprintf("compensation %q panicked: %v\n%s", comp.name, p, debug.Stack()))
		}
	}()
	return comp.fn(c)
}

// stopped turns a run's stop into how its claim ends: done when the saga
// waits, must be retried or is blocked; again on a conflict.
func (e *Engine) stopped(c *Context) (done bool, r release, again bool) {
	status := StatusRunning
	if c.compensating {
		status = StatusCompensating
	}
	switch c.stop {
	case conflict:
		return false, release{}, true
	case suspended:
		if status == StatusRunning {
			status = StatusWaiting
		}
		return true, release{status: status, wakeAt: c.wakeAt}, false
	case retry:
		return true, e.retryRelease(c, status, c.retryCause), false
	case blocked:
		return true, release{status: StatusBlocked, lastError: c.blocked}, false
	}
	return false, release{}, false
}

func (e *Engine) retryRelease(c *Context, status Status, cause error) release {
	attempts := c.instance.attempts + 1
	delay := e.config.RetryBackoff << min(attempts-1, 20)
	delay = min(delay, e.config.MaxBackoff)
	wake := c.dbNow.Add(delay)
	return release{status: status, wakeAt: &wake, attempts: attempts, lastError: cause.Error()}
}

// finish appends the journal's last entry and ends the claim in one
// transaction, locking the saga's row first (as the router does) so the two
// never wait for each other in opposite orders.
func (e *Engine) finish(c *Context, f finished) error {
	scope, err := e.store.Begin(c.ctx)
	if err != nil {
		return c.retryLater(err)
	}
	defer func() { _ = scope.Rollback(context.WithoutCancel(c.ctx)) }() // a no-op after Commit
	ok, err := e.db.lock(c.ctx, scope.Tx(), c.instance, e.config.WorkerID)
	if err != nil {
		return c.retryLater(err)
	}
	if !ok {
		return c.halt(conflict) // another executor has it now
	}
	if err := c.journalStep(scope, f); err != nil {
		return err
	}
	r := release{status: f.Status, seenVersion: c.journal.version, result: f.Result, lastError: f.Error}
	if err := e.db.release(c.ctx, scope.Tx(), c.instance, r); err != nil {
		return c.retryLater(err)
	}
	if err := scope.Commit(c.ctx); err != nil {
		return c.retryLater(err)
	}
	c.finished = true
	e.config.Metrics.Ended(c.instance.name, f.Status)
	return nil
}

// end ends the claim of a run that stopped short of finishing (the saga
// waits, will be retried, is blocked), or that finished (then its row was
// released with the journal's last entry).
func (e *Engine) end(ctx context.Context, c claimed, sc *Context, r release) (Status, error) {
	if sc != nil && sc.finished {
		return r.status, nil
	}
	if sc != nil {
		r.seenVersion = sc.journal.version
	}
	if r.status == StatusBlocked {
		e.config.Logger.ErrorContext(ctx, "saga: blocked", "saga", c.name, "id", c.id, "reason", r.lastError)
	}
	cleanup, cancel := lifecycle.CleanupContext(ctx, 5*time.Second)
	defer cancel()
	err := e.store.InScope(cleanup, func(scope *store.Scope) error {
		ok, err := e.db.lock(cleanup, scope.Tx(), c, e.config.WorkerID)
		if err != nil || !ok {
			return err
		}
		return e.db.release(cleanup, scope.Tx(), c, r)
	})
	return r.status, err
}

// route is the InboxSubscription's handler: an event that carries the
// correlation id of a live saga becomes an entry of that saga's journal,
// once (its id derives from the event's), in the subscription's checkpoint
// transaction.
func (e *Engine) route(ctx context.Context, scope *store.Scope, event runner.HandledEvent) error {
	recorded := event.Recorded
	correlation := recorded.Metadata.CorrelationID
	if correlation == uuid.Nil {
		return nil
	}
	_, _, stream, ok, err := e.db.routeTo(ctx, scope.Tx(), correlation)
	if err != nil || !ok || stream == recorded.StreamID {
		return err
	}
	// The entry carries the reply's trace context, not the router's: the
	// await that takes it links to the reply (see Config.Instrumentation).
	var headers map[string]string
	if parent, ok := recorded.Metadata.Headers[core.TraceParentHeader]; ok {
		headers = map[string]string{core.TraceParentHeader: parent}
		if state, ok := recorded.Metadata.Headers[core.TraceStateHeader]; ok {
			headers[core.TraceStateHeader] = state
		}
	}
	response := core.ResponseValue{EventType: recorded.EventType, Data: recorded.Data}
	if data := event.Event(); data != nil {
		r := core.ResponseOf(data)
		response.IsError, response.Reason = r.IsError, r.Reason
	}
	entry := received{SourceEventID: recorded.Metadata.EventID, SourceStream: recorded.StreamID,
		SourceVersion: recorded.StreamVersion, GlobalPosition: recorded.GlobalPosition, CausationID: recorded.Metadata.CausationID,
		Type: recorded.EventType, Data: recorded.Data, IsError: response.IsError, Reason: response.Reason,
		RecordedAt: recorded.RecordedAt}
	_, err = scope.Append(ctx, stream, core.Any, core.Event{Data: entry, Metadata: core.EventMetadata{
		EventID:       derivedID(correlation, "received/"+recorded.Metadata.EventID.String()),
		CorrelationID: correlation, CausationID: recorded.Metadata.EventID, Headers: headers}})
	if err != nil {
		return err
	}
	// Due once the router's transaction commits: an executor that looked
	// before would not see it.
	runner.AfterCommit(ctx, e.signal)
	return nil
}

// List returns sagas by status and definition.
func (e *Engine) List(ctx context.Context, opts ListOpts) ([]Info, error) {
	if opts.Limit == 0 {
		opts.Limit = 100
	}
	return e.db.list(ctx, opts)
}

// Counts returns how many sagas are in each status.
func (e *Engine) Counts(ctx context.Context) (map[Status]int64, error) { return e.db.counts(ctx) }

// Get returns saga id of definition name.
func (e *Engine) Get(ctx context.Context, name, id string) (Info, error) {
	info, ok, err := e.db.get(ctx, name, id)
	if err == nil && !ok {
		err = fmt.Errorf("%w: %s %q", ErrNotFound, name, id)
	}
	return info, err
}

// JournalEntry is one entry of a saga's journal.
type JournalEntry struct {
	Version    int64
	Type       string
	Data       json.RawMessage
	RecordedAt time.Time
}

// Journal returns the journal of saga id of definition name.
func (e *Engine) Journal(ctx context.Context, name, id string) ([]JournalEntry, error) {
	events, err := e.store.ReadEvents(ctx, core.ReadStream(JournalStream(name, id)))
	if err != nil {
		return nil, err
	}
	out := make([]JournalEntry, len(events))
	for i, ev := range events {
		out[i] = JournalEntry{Version: ev.StreamVersion, Type: ev.EventType, Data: ev.Data, RecordedAt: ev.RecordedAt}
	}
	return out, nil
}

// Retry runs a blocked saga, or one whose compensation failed, again:
// after a fix to its code or to what it calls.
func (e *Engine) Retry(ctx context.Context, name, id string) error {
	_, ok, err := e.db.wake(ctx, e.store.Pool(), name, id, true)
	if err == nil && !ok {
		return fmt.Errorf("%w: %s %q is not blocked or failed in compensation", ErrNotFound, name, id)
	}
	e.signal()
	return err
}

type resultCache struct {
	mu      sync.Mutex
	results map[string]json.RawMessage
}

func (r *resultCache) put(key string, v json.RawMessage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.results[key] = v
}

func (r *resultCache) take(key string) (json.RawMessage, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.results[key]
	delete(r.results, key)
	return v, ok
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
