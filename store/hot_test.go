package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mire-go/mire/core"
)

func TestHotStreamsAnswerOnlyCertainConflicts(t *testing.T) {
	t.Parallel()
	h := &hotStreams{hold: time.Hour}
	request := func(expected core.ExpectedVersion, newIDs bool) *appendRequest {
		return &appendRequest{streamID: "cart-1", expected: expected, newIDs: newIDs,
			events: []encodedEvent{{id: uuid.New()}}}
	}
	if _, hot := h.lookup("cart-1"); hot {
		t.Fatal("a stream never seen is hot")
	}
	h.stored("cart-1", 9)
	if _, hot := h.lookup("cart-1"); hot {
		t.Fatal("a stored append made a stream hot; only conflicts do")
	}

	h.lost("cart-1", 5)
	h.stored("cart-1", 7)
	h.lost("cart-1", 6) // an older observation never lowers the head
	if head, hot := h.lookup("cart-1"); !hot || head != 7 {
		t.Fatalf("lookup = %d, %v; want 7, hot", head, hot)
	}
	for _, tc := range []struct {
		expected core.ExpectedVersion
		newIDs   bool
		conflict bool
	}{
		{core.Exact(6), true, true},
		{core.NoStream, true, true},
		{core.Exact(7), true, false}, // may well be stored: ask
		{core.Exact(9), true, false}, // the server says what it is
		{core.Any, true, false},
		{core.StreamExists, true, false},
		{core.Exact(6), false, false}, // caller-chosen ids: maybe a retry of stored events
	} {
		head, _ := h.lookup("cart-1")
		c := certainConflict(request(tc.expected, tc.newIDs), head)
		if (c != nil) != tc.conflict {
			t.Errorf("%v (new ids %v): conflict %v, want %v", tc.expected, tc.newIDs, c, tc.conflict)
		}
		if c != nil && (c.Actual != 7 || !errors.Is(c, core.ErrConcurrency)) {
			t.Errorf("%v: %+v, want a conflict at version 7", tc.expected, c)
		}
	}
	if _, hot := h.lookup("cart-2"); hot {
		t.Error("another stream is hot")
	}

	cold := &hotStreams{hold: time.Nanosecond}
	cold.lost("cart-1", 5)
	time.Sleep(time.Millisecond)
	if _, hot := cold.lookup("cart-1"); hot || cold.count.Load() != 0 {
		t.Error("a stream stayed hot past its hold")
	}
}

func TestHotStreamsStayBounded(t *testing.T) {
	t.Parallel()
	h := &hotStreams{hold: time.Hour}
	for i := range 3 * maxContended {
		h.lost(uuid.NewString(), int64(i))
		if n := int(h.count.Load()); n > maxContended {
			t.Fatalf("%d hot streams remembered, want at most %d", n, maxContended)
		}
	}
}

// A hot stream's turn is one append's at a time; the next waits for it, at
// most turnWait, and gives up with its context.
func TestHotStreamTurns(t *testing.T) {
	t.Parallel()
	h := &hotStreams{hold: time.Hour, turnWait: 50 * time.Millisecond}
	h.lost("cart-1", 3)
	_, turn, hot := h.lookupTurn("cart-1")
	if !hot || turn == nil {
		t.Fatalf("hot %v, turn %v: want a hot stream with a turn", hot, turn)
	}
	ctx := context.Background()
	if held, err := h.takeTurn(ctx, turn); !held || err != nil {
		t.Fatalf("a free turn: held %v, %v", held, err)
	}
	// Held: the next append waits for it, and is let through on its own
	// once the wait is over.
	start := time.Now()
	if held, err := h.takeTurn(ctx, turn); held || err != nil {
		t.Fatalf("a turn held throughout: held %v, %v; want not held, no error", held, err)
	}
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Errorf("gave up on a held turn after %v, want the whole turnWait", waited)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := h.takeTurn(canceled, turn); !errors.Is(err, context.Canceled) {
		t.Errorf("waiting with a canceled context: %v, want context.Canceled", err)
	}
	// Released while another waits: the waiter gets it.
	got := make(chan bool)
	go func() {
		held, _ := h.takeTurn(ctx, turn)
		got <- held
	}()
	time.Sleep(10 * time.Millisecond)
	<-turn
	if !<-got {
		t.Error("a turn released while an append waited for it went to no one")
	}
	// Renewed by later conflicts, a stream keeps its turn.
	h.lost("cart-1", 4)
	if _, again, _ := h.lookupTurn("cart-1"); again != turn {
		t.Error("a conflict on a hot stream replaced its turn")
	}
}

// Concurrent StreamVersion callers of a hot stream share reads, and each
// gets the result of a read that started after it asked: never an older
// version than it could have read alone.
func TestVersionReadsShareOnlyLaterReads(t *testing.T) {
	t.Parallel()
	var reads versionReads
	var started atomic.Int64
	gate := make(chan struct{})
	query := func(context.Context) (int64, error) {
		n := started.Add(1) // the round's number stands for the version it reads
		<-gate
		return n, nil
	}
	ctx := context.Background()
	const callers = 50
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			before := started.Load()
			got, err := reads.read(ctx, "cart-1", query)
			if err != nil {
				errs <- err
				return
			}
			if got <= before {
				errs <- fmt.Errorf("got the read of round %d, which started before the call (round %d had)", got, before)
			}
		})
	}
	// Let the rounds through one by one while callers arrive.
	finished := make(chan struct{})
	go func() {
		for {
			time.Sleep(time.Millisecond)
			select {
			case gate <- struct{}{}:
			case <-finished:
				return
			}
		}
	}()
	wg.Wait()
	close(finished)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := started.Load(); n >= callers/2 {
		t.Errorf("%d callers at once ran %d reads; want them shared", callers, n)
	}
	t.Logf("%d callers, %d reads", callers, started.Load())

	// A caller that stops waiting does not stop the read of the others.
	canceled, cancel := context.WithCancel(ctx)
	blocked := make(chan struct{})
	first := make(chan int64)
	go func() {
		v, _ := reads.read(ctx, "cart-2", func(context.Context) (int64, error) { <-blocked; return 7, nil })
		first <- v
	}()
	time.Sleep(10 * time.Millisecond)
	cancel()
	if _, err := reads.read(canceled, "cart-2", query); !errors.Is(err, context.Canceled) {
		t.Errorf("a canceled caller: %v, want context.Canceled", err)
	}
	close(blocked)
	if v := <-first; v != 7 {
		t.Errorf("the first caller read %d, want 7", v)
	}
}
