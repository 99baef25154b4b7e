package store

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mire-go/mire/store/internal/dbsqlc"
)

// A stream page's events take their positions from the runs that come with
// them, in whatever order the rows arrive; an event no run holds keeps the
// position it came with (looked up alone, or 0: not numbered yet).
func TestStreamPagePlacesEventsInRuns(t *testing.T) {
	t.Parallel()
	run := func(first, position int64, events int32) *dbsqlc.EventReadStreamForwardRow {
		return &dbsqlc.EventReadStreamForwardRow{StreamVersion: first, GlobalPosition: position, RunEvents: events}
	}
	event := func(version, position int64) *dbsqlc.EventReadStreamForwardRow {
		return &dbsqlc.EventReadStreamForwardRow{StreamVersion: version, GlobalPosition: position}
	}
	// Runs: versions 1-3 at 10-12, 4 at 20, 5-6 at 31-32; 7 and 8 are not
	// numbered yet; 9 came with the position it was looked up at.
	rows := []*dbsqlc.EventReadStreamForwardRow{
		run(5, 31, 2), event(2, 0), event(3, 0), event(4, 0), run(1, 10, 3), event(5, 0),
		event(6, 0), event(7, 0), event(8, 0), event(9, 40), run(4, 20, 1),
	}
	positions := func(forward bool, rows []*dbsqlc.EventReadStreamForwardRow) map[int64]int64 {
		page, _, err := streamPage("cart-1", forward, len(rows), func(i int) *dbsqlc.EventReadStreamForwardRow { return rows[i] }, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := map[int64]int64{}
		var previous int64
		for i, row := range page {
			if row.StreamID != "cart-1" {
				t.Errorf("stream %q, want cart-1", row.StreamID)
			}
			if v := row.StreamVersion; i > 0 && (v > previous) != forward {
				t.Errorf("forward %v: version %d after %d", forward, v, previous)
			}
			previous = row.StreamVersion
			got[row.StreamVersion] = row.GlobalPosition
		}
		return got
	}
	want := map[int64]int64{2: 11, 3: 12, 4: 20, 5: 31, 6: 32, 7: 0, 8: 0, 9: 40}
	if diff := cmp.Diff(want, positions(true, rows)); diff != "" {
		t.Errorf("forward page positions (-want +got):\n%s", diff)
	}
	backward := make([]*dbsqlc.EventReadStreamForwardRow, 0, len(rows))
	for i := len(rows) - 1; i >= 0; i-- {
		backward = append(backward, rows[i])
	}
	if diff := cmp.Diff(want, positions(false, backward)); diff != "" {
		t.Errorf("backward page positions (-want +got):\n%s", diff)
	}
	// Rows out of order are put in the read's order.
	shuffled := []*dbsqlc.EventReadStreamForwardRow{event(3, 0), run(1, 10, 3), event(2, 0), event(1, 0)}
	if diff := cmp.Diff(map[int64]int64{1: 10, 2: 11, 3: 12}, positions(true, shuffled)); diff != "" {
		t.Errorf("shuffled page positions (-want +got):\n%s", diff)
	}
	if got := positions(true, []*dbsqlc.EventReadStreamForwardRow{event(1, 0)}); got[1] != 0 {
		t.Errorf("an event without runs at position %d, want 0", got[1])
	}
	// The stream's last version comes in a row of its own.
	headRow := &dbsqlc.EventReadStreamForwardRow{StreamVersion: 9, RunEvents: -1}
	page, head, err := streamPage("cart-1", true, 2, func(i int) *dbsqlc.EventReadStreamForwardRow {
		return []*dbsqlc.EventReadStreamForwardRow{headRow, event(9, 0)}[i]
	}, nil)
	if err != nil || len(page) != 1 || head != 9 {
		t.Errorf("page of %d events, head %d; want 1 event, head 9", len(page), head)
	}
	if _, head, _ := streamPage("cart-1", true, 1, func(int) *dbsqlc.EventReadStreamForwardRow { return event(1, 0) }, nil); head != -1 {
		t.Errorf("head %d without a head row, want -1", head)
	}
}
