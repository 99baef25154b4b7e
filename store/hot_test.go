package store

import (
	"errors"
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
