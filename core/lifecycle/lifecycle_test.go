package lifecycle_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mire-go/mire/core/lifecycle"
)

// Every test's goroutines, and every run's, must be gone at the end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// blocker is a component whose run waits for cancellation and then for
// release, so that tests control when a run returns.
type blocker struct {
	lifecycle.Base
	runs    atomic.Int64 // runs begun
	running atomic.Int64 // runs between begin and return
	release chan struct{}
	causes  chan error
}

func newBlocker() *blocker {
	b := &blocker{release: make(chan struct{}), causes: make(chan error, 100)}
	close(b.release)
	return b
}

func (b *blocker) Start(ctx context.Context) error {
	b.StartFunc(ctx, func(ctx context.Context) {
		b.runs.Add(1)
		if b.running.Add(1) != 1 {
			panic("two runs at once")
		}
		defer b.running.Add(-1)
		<-ctx.Done()
		select {
		case b.causes <- context.Cause(ctx):
		default:
		}
		<-b.release
	})
	return nil
}

var _ lifecycle.Service = (*blocker)(nil)

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func waitClosed(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not closed after 10s", what)
	}
}

func TestStopBeforeStart(t *testing.T) {
	t.Parallel()
	b := newBlocker()
	if err := b.Stop(context.Background()); err != nil {
		t.Fatalf("Stop before Start: %v", err)
	}
	if !isClosed(b.Stopped()) {
		t.Fatal("Stopped of a component never started is open")
	}
	if isClosed(b.Started()) {
		t.Fatal("Started of a component never started is closed")
	}
}

func TestStartStop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBlocker()
	started := b.Started() // before Start: the next run's
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, started, "Started taken before Start")
	waitClosed(t, b.Started(), "Started")
	stopped := b.Stopped()
	if isClosed(stopped) {
		t.Fatal("Stopped closed while running")
	}
	b.StartFunc(ctx, func(context.Context) { t.Error("a second run while running") })

	if err := b.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if !isClosed(stopped) {
		t.Fatal("Stop returned before the run did")
	}
	if cause := <-b.causes; !errors.Is(cause, lifecycle.ErrStopped) {
		t.Fatalf("cause of the run's cancellation: %v, want ErrStopped", cause)
	}
	if err := b.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if got := b.runs.Load(); got != 1 {
		t.Fatalf("%d runs, want 1", got)
	}

	// Restartable.
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, b.Started(), "Started of the second run")
	if isClosed(b.Stopped()) {
		t.Fatal("Stopped of the second run is closed while it runs")
	}
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if got := b.runs.Load(); got != 2 {
		t.Fatalf("%d runs, want 2", got)
	}
}

// Stop waits for the run to return, however long its cleanup takes, unless
// its ctx ends first; a later Stop waits again.
func TestStopWaitsForTheRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBlocker()
	b.release = make(chan struct{})
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, b.Started(), "Started")

	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := b.Stop(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop of a run that does not return: %v, want DeadlineExceeded", err)
	}
	if isClosed(b.Stopped()) {
		t.Fatal("Stopped closed before the run returned")
	}

	// Another start while the run still returns: the new run waits.
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	secondStarted := b.Started()
	time.Sleep(20 * time.Millisecond) // time in which an overlapping run would begin
	if isClosed(b.Started()) || b.runs.Load() != 1 {
		t.Fatal("a new run began before the previous one returned")
	}

	done := make(chan error)
	go func() { done <- b.Stop(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("Stop returned (%v) before the run did", err)
	case <-time.After(20 * time.Millisecond):
	}
	close(b.release)
	if err := <-done; err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if !isClosed(b.Stopped()) {
		t.Fatal("Stopped open after Stop returned")
	}
	if got := b.runs.Load(); got != 1 {
		t.Fatalf("%d runs, want 1: the second was stopped before it began", got)
	}
	if !isClosed(secondStarted) {
		t.Fatal("Started of a run stopped before it began is open: its waiters would wait forever")
	}
}

// A run whose start ctx ends leaves the component stopped and startable.
func TestRunEndsWithItsContext(t *testing.T) {
	t.Parallel()
	b := newBlocker()
	ctx, cancel := context.WithCancel(context.Background())
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, b.Started(), "Started")
	stopped := b.Stopped()
	cancel()
	waitClosed(t, stopped, "Stopped after the start ctx ended")
	if cause := <-b.causes; !errors.Is(cause, context.Canceled) {
		t.Fatalf("cause: %v, want context.Canceled", cause)
	}

	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, b.Started(), "Started after a restart")
	if err := b.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := b.runs.Load(); got != 2 {
		t.Fatalf("%d runs, want 2", got)
	}
}

// Many goroutines start and stop one component at once and over again:
// never two runs at once (the run panics), every Stop that returns nil has
// seen its run return, and no goroutine is left (TestMain).
func TestStartStopStress(t *testing.T) {
	t.Parallel()
	const goroutines, rounds = 16, 300
	ctx := context.Background()
	b := newBlocker()
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				switch rand.N(4) {
				case 0:
					// Some starts wait for their run to begin, so that runs
					// happen however the goroutines are scheduled.
					if err := b.Start(ctx); err != nil {
						t.Error(err)
						return
					}
					select { // a Stop elsewhere may leave nothing to begin
					case <-b.Started():
					case <-time.After(10 * time.Millisecond):
					}
				case 1:
					if err := b.Start(ctx); err != nil {
						t.Error(err)
						return
					}
				case 2:
					if err := b.Stop(ctx); err != nil {
						t.Error(err)
						return
					}
				case 3:
					short, cancel := context.WithTimeout(ctx, time.Duration(rand.N(100))*time.Microsecond)
					_ = b.Stop(short)
					cancel()
				}
				_ = b.Started()
				_ = b.Stopped()
			}
		}()
	}
	wg.Wait()
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if !isClosed(b.Stopped()) || b.running.Load() != 0 {
		t.Fatal("a run is still going after the final Stop")
	}
	t.Logf("%d runs", b.runs.Load())
	if b.runs.Load() == 0 {
		t.Fatal("nothing ever ran: the test proved nothing")
	}
}

func TestCleanupContext(t *testing.T) {
	t.Parallel()
	type key struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	cancel()
	ctx, stop := lifecycle.CleanupContext(parent, time.Hour)
	defer stop()
	if ctx.Err() != nil {
		t.Fatalf("cleanup context cancelled with its parent: %v", ctx.Err())
	}
	if ctx.Value(key{}) != "v" {
		t.Fatal("cleanup context lost the parent's values")
	}
	if deadline, ok := ctx.Deadline(); !ok || time.Until(deadline) > time.Hour {
		t.Fatalf("cleanup deadline %v, %v; want within the hour", deadline, ok)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	const ms = time.Millisecond
	tests := []struct {
		name     string
		min, max time.Duration
		ceilings []time.Duration // per failure in a row
	}{
		{"doubles to the cap", 10 * ms, 100 * ms, []time.Duration{10 * ms, 20 * ms, 40 * ms, 80 * ms, 100 * ms, 100 * ms}},
		{"max below min", 50 * ms, 10 * ms, []time.Duration{50 * ms, 50 * ms}},
		{"zero value", 0, 0, []time.Duration{0, 0, 0}},
		{"huge cap does not overflow", time.Hour, time.Duration(1<<63 - 1), make([]time.Duration, 80)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for range 100 { // jitter: many draws
				b := lifecycle.Backoff{Min: tt.min, Max: tt.max}
				for i, ceiling := range tt.ceilings {
					d := b.Failure()
					if ceiling == 0 && tt.min > 0 {
						if d < tt.min/2 {
							t.Fatalf("failure %d: %v, below half of Min", i+1, d)
						}
						continue
					}
					if d < ceiling/2 || d > ceiling {
						t.Fatalf("failure %d: %v, want between %v and %v", i+1, d, ceiling/2, ceiling)
					}
				}
				if b.Failures() != len(tt.ceilings) {
					t.Fatalf("Failures = %d, want %d", b.Failures(), len(tt.ceilings))
				}
				b.Success()
				if b.Failures() != 0 {
					t.Fatal("Success did not reset")
				}
				if d := b.Failure(); d > max(tt.min, 0) {
					t.Fatalf("first failure after a success: %v, want at most Min", d)
				}
			}
		})
	}
}

// The delays are jittered: a thousand draws are not all one value.
func TestBackoffJitters(t *testing.T) {
	t.Parallel()
	seen := map[time.Duration]bool{}
	for range 1000 {
		b := lifecycle.Backoff{Min: time.Second, Max: time.Second}
		seen[b.Failure()] = true
	}
	if len(seen) < 100 {
		t.Fatalf("%d distinct delays in 1000 draws", len(seen))
	}
}
