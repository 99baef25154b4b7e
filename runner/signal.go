package runner

import "sync"

// signal wakes every goroutine waiting on it: wait takes the current
// channel, notify closes it and starts a new one. Take the channel before
// looking at what the signal announces, so an announcement in between is
// not missed.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func newSignal() *signal { return &signal{ch: make(chan struct{})} }

func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

func (s *signal) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.ch)
	s.ch = make(chan struct{})
}
