package lifecycle

import (
	"math/rand/v2"
	"time"
)

// Backoff paces the retries of something that keeps failing: each failure
// in a row doubles the delay, from Min up to Max, and a success starts over.
// Delays are jittered, so that components which failed together (on one
// server restart) do not retry together.
//
// The zero value retries at once; set Min and Max. A Backoff is not safe
// for concurrent use: it belongs to the one goroutine that retries.
type Backoff struct {
	// Min is the delay after the first failure in a row.
	Min time.Duration
	// Max caps the delay; values below Min are taken as Min.
	Max time.Duration

	failures int
}

// Failure records a failure and returns how long to wait before trying
// again: a random delay between half and all of Min·2^(n-1), capped at Max,
// for the n-th failure in a row.
func (b *Backoff) Failure() time.Duration {
	b.failures++
	limit := max(b.Max, b.Min)
	d := b.Min
	for i := 1; i < b.failures && d < limit; i++ {
		if d > limit/2 {
			d = limit // doubling could overflow
		} else {
			d *= 2
		}
	}
	d = min(d, limit)
	if d <= 0 {
		return 0
	}
	// Equal jitter: at least half the delay, so that backing off still
	// backs off.
	half := d / 2
	return half + rand.N(d-half+1)
}

// Success records a success: the next failure waits Min again.
func (b *Backoff) Success() { b.failures = 0 }

// Failures returns the failures in a row recorded since the last success.
func (b *Backoff) Failures() int { return b.failures }
