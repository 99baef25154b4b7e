package lifecycle_test

import (
	"context"
	"fmt"
	"time"

	"github.com/mire-go/mire/core/lifecycle"
)

// Poller is a background component: it embeds a Base, which provides Stop,
// Started and Stopped, and defines Start.
type Poller struct {
	lifecycle.Base
	polls chan int
}

// Start starts polling and returns at once.
func (p *Poller) Start(ctx context.Context) error {
	p.StartFunc(ctx, p.run)
	return nil
}

func (p *Poller) run(ctx context.Context) {
	for i := 1; ; i++ {
		select {
		case p.polls <- i:
		case <-ctx.Done():
			// Cleanup that must happen even though we were cancelled.
			cleanup, cancel := lifecycle.CleanupContext(ctx, time.Second)
			defer cancel()
			p.flush(cleanup)
			return
		}
	}
}

func (p *Poller) flush(ctx context.Context) {
	fmt.Println("flushed, cancelled:", ctx.Err() != nil)
}

func Example() {
	ctx := context.Background()
	p := &Poller{polls: make(chan int)}
	if err := p.Start(ctx); err != nil {
		panic(err)
	}
	<-p.Started()
	fmt.Println("poll", <-p.polls)
	fmt.Println("poll", <-p.polls)

	stopped := p.Stopped()
	fmt.Println("stop:", p.Stop(ctx))
	<-stopped // closed by the time Stop returns
	fmt.Println("stop again:", p.Stop(ctx))

	// A stopped component starts again.
	if err := p.Start(ctx); err != nil {
		panic(err)
	}
	fmt.Println("poll", <-p.polls)
	fmt.Println("stop:", p.Stop(ctx))
	// Output:
	// poll 1
	// poll 2
	// flushed, cancelled: false
	// stop: <nil>
	// stop again: <nil>
	// poll 1
	// flushed, cancelled: false
	// stop: <nil>
}

// A retry loop waits about twice as long after each failure in a row, up
// to Max, and starts over after a success.
func ExampleBackoff() {
	backoff := lifecycle.Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	for _, ceiling := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		ceiling *= time.Millisecond
		delay := backoff.Failure()
		fmt.Printf("failure %d: between %v and %v: %v\n",
			backoff.Failures(), ceiling/2, ceiling, delay >= ceiling/2 && delay <= ceiling)
	}
	backoff.Success()
	fmt.Println("failures after a success:", backoff.Failures())
	// Output:
	// failure 1: between 50ms and 100ms: true
	// failure 2: between 100ms and 200ms: true
	// failure 3: between 200ms and 400ms: true
	// failure 4: between 400ms and 800ms: true
	// failure 5: between 500ms and 1s: true
	// failure 6: between 500ms and 1s: true
	// failures after a success: 0
}
