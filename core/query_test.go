package core_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/mire-go/mire/core"
)

func TestStreamQueryValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		query core.StreamQuery
		field string // "" when valid
	}{
		{"whole log", core.ReadAll(), ""},
		{"stream", core.ReadStream("account-1"), ""},
		{"category", core.ReadCategory("account"), ""},
		{"category with trailing separator", core.ReadCategory("account-"), ""},
		{"stream backward from version with limit and types",
			core.StreamQuery{StreamID: "account-1", Direction: core.Backward, FromVersion: 5, Limit: 10, EventTypes: []string{"a", "b"}}, ""},
		{"category from position", core.StreamQuery{Category: "account", FromPosition: 9, Direction: core.Backward}, ""},
		{"log from position", core.StreamQuery{FromPosition: 1}, ""},

		{"stream and category", core.StreamQuery{StreamID: "account-1", Category: "account"}, "stream query"},
		{"unknown direction", core.StreamQuery{Direction: 2}, "direction"},
		{"negative limit", core.StreamQuery{Limit: -1}, "limit"},
		{"negative from version", core.StreamQuery{StreamID: "account-1", FromVersion: -1}, "from version"},
		{"negative from position", core.StreamQuery{Category: "account", FromPosition: -1}, "from position"},
		{"from version on a category", core.StreamQuery{Category: "account", FromVersion: 1}, "from version"},
		{"from version on the log", core.StreamQuery{FromVersion: 1}, "from version"},
		{"from position on a stream", core.StreamQuery{StreamID: "account-1", FromPosition: 1}, "from position"},
		{"invalid stream id", core.ReadStream("a\x00"), "stream id"},
		{"stream id too long", core.ReadStream(strings.Repeat("s", core.MaxStreamIDLength+1)), "stream id"},
		{"category with separator inside", core.ReadCategory("acc-ount"), "category"},
		{"category with two trailing separators", core.ReadCategory("account--"), "category"},
		{"category of only the separator", core.ReadCategory("-"), "category"},
		{"category not UTF-8", core.ReadCategory("\xff"), "category"},
		{"empty event type", core.StreamQuery{EventTypes: []string{""}}, "event type"},
		{"event type with NUL", core.StreamQuery{StreamID: "account-1", EventTypes: []string{"ok", "a\x00"}}, "event type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkInvalidInput(t, tt.query.Validate(), tt.field)
		})
	}
}

func TestStreamQueryHelpers(t *testing.T) {
	t.Parallel()
	if q := core.ReadStream("account-1"); !q.IsStream() || q.Direction != core.Forward || q.FromVersion != 0 || q.Limit != 0 {
		t.Errorf("ReadStream = %+v", q)
	}
	if q := core.ReadCategory("account"); q.IsStream() || q.Category != "account" {
		t.Errorf("ReadCategory = %+v", q)
	}
	if q := core.ReadAll(); q.IsStream() || q.Category != "" || q.StreamID != "" {
		t.Errorf("ReadAll = %+v", q)
	}
	for category, want := range map[string]string{"account": "account", "account-": "account", "account--": "account-", "": ""} {
		if got := core.ReadCategory(category).NormalizedCategory(); got != want {
			t.Errorf("NormalizedCategory(%q) = %q, want %q", category, got, want)
		}
	}
}

func TestStreamPartition(t *testing.T) {
	t.Parallel()
	// The sequencer computes the same buckets in SQL; these values pin the
	// hash, which must never change (buckets are stored with every event).
	for id, want := range map[string]int{"account-1": 615} {
		if got := core.StreamBucket(id); got != want {
			t.Errorf("StreamBucket(%q) = %d, want %d", id, got, want)
		}
	}
	counts := make([]int, 4)
	for i := range 4000 {
		id := fmt.Sprintf("order-%d", i)
		p := core.StreamPartition(id, 4)
		if p != core.StreamBucket(id)%4 {
			t.Fatalf("StreamPartition(%q, 4) = %d, not its bucket modulo 4", id, p)
		}
		counts[p]++
	}
	for p, n := range counts {
		if n < 800 || n > 1200 {
			t.Errorf("partition %d of 4 holds %d of 4000 streams: the hash does not spread them", p, n)
		}
	}
	if got := core.StreamPartition("order-1", 1); got != 0 {
		t.Errorf("StreamPartition with 1 partition = %d, want 0", got)
	}
}

func TestStreamQueryPartitionValidation(t *testing.T) {
	t.Parallel()
	for _, q := range []core.StreamQuery{
		{Partitions: -1},
		{Partitions: core.StreamBuckets + 1},
		{Partitions: 4, Partition: 4},
		{Partitions: 4, Partition: -1},
		{Partition: 1},
		{StreamID: "order-1", Partitions: 2},
	} {
		if err := q.Validate(); !errors.Is(err, core.ErrInvalidInput) {
			t.Errorf("Validate(%+v) = %v, want an invalid-input error", q, err)
		}
	}
	for _, q := range []core.StreamQuery{{Partitions: 4, Partition: 3}, {Category: "order", Partitions: 2, Partition: 1}, {Partitions: 1}} {
		if err := q.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", q, err)
		}
	}
}
