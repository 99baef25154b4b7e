package runner

import "time"

// Metrics receives the runner's measurements. Its methods are called on
// the runner's goroutines and must return quickly, never blocking: hand the
// values to a metrics library (an adapter module can turn them into
// Prometheus or OpenTelemetry instruments).
type Metrics interface {
	// BatchHandled reports a batch committed: how many events it handled
	// and how long the batch took, from the read to the commit.
	BatchHandled(subscription string, partition int, events int, took time.Duration)
	// Lag reports how far a partition's checkpoint is behind the head.
	Lag(subscription string, partition int, events int64)
	// Retry reports a failed attempt that will be tried again.
	Retry(subscription string, partition int, err error)
	// LeaseChanged reports a lease acquired (held true) or lost or
	// released (held false) by this runner.
	LeaseChanged(subscription string, partition int, held bool, fence int64)
	// Parked reports a stream parked, or a parked stream released.
	Parked(subscription string, partition int, streamID string, parked bool)
	// Failed reports a partition stopped by an event that kept failing.
	Failed(subscription string, partition int, err error)
}

type noMetrics struct{}

func (noMetrics) BatchHandled(string, int, int, time.Duration) {}
func (noMetrics) Lag(string, int, int64)                       {}
func (noMetrics) Retry(string, int, error)                     {}
func (noMetrics) LeaseChanged(string, int, bool, int64)        {}
func (noMetrics) Parked(string, int, string, bool)             {}
func (noMetrics) Failed(string, int, error)                    {}
