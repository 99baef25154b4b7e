package core_test

import (
	"math"
	"testing"

	"github.com/mire-go/mire/core"
)

func TestExpectedVersionKinds(t *testing.T) {
	t.Parallel()
	var zero core.ExpectedVersion
	tests := []struct {
		name                           string
		expected                       core.ExpectedVersion
		str                            string
		any, noStream, exists, isExact bool
		exact                          int64
	}{
		{"zero value", zero, "any", true, false, false, false, 0},
		{"any", core.Any, "any", true, false, false, false, 0},
		{"no stream", core.NoStream, "no_stream", false, true, false, false, 0},
		{"exact zero", core.Exact(0), "no_stream", false, true, false, false, 0},
		{"stream exists", core.StreamExists, "stream_exists", false, false, true, false, 0},
		{"exact", core.Exact(7), "exact(7)", false, false, false, true, 7},
		{"exact negative", core.Exact(-1), "exact(-1)", false, false, false, true, -1},
		{"exact max", core.Exact(math.MaxInt64), "exact(9223372036854775807)", false, false, false, true, math.MaxInt64},
	}
	for _, tt := range tests {
		e := tt.expected
		exact, isExact := e.ExactVersion()
		got := []any{e.String(), e.IsAny(), e.IsNoStream(), e.IsStreamExists(), isExact, exact}
		want := []any{tt.str, tt.any, tt.noStream, tt.exists, tt.isExact, tt.exact}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s: got %v, want %v", tt.name, got, want)
				break
			}
		}
	}
	three, alsoThree := core.Exact(3), core.Exact(3)
	if core.Exact(0) != core.NoStream || zero != core.Any || three != alsoThree || three == core.Exact(4) {
		t.Error("ExpectedVersion equality is wrong")
	}
}

func TestExpectedVersionValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		expected core.ExpectedVersion
		count    int
		valid    bool
	}{
		{"any", core.Any, 1, true},
		{"no stream", core.NoStream, 1000, true},
		{"stream exists", core.StreamExists, 1, true},
		{"exact", core.Exact(10), 5, true},
		{"exact negative", core.Exact(-1), 1, false},
		{"exact very negative", core.Exact(math.MinInt64), 1, false},
		{"exact leaves exactly enough room", core.Exact(math.MaxInt64 - 2), 2, true},
		{"exact one short", core.Exact(math.MaxInt64 - 1), 2, false},
		{"exact max", core.Exact(math.MaxInt64), 1, false},
		{"exact max, no events", core.Exact(math.MaxInt64), 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			field := "expected version"
			if tt.valid {
				field = ""
			}
			checkInvalidInput(t, tt.expected.Validate(tt.count), field)
		})
	}
}

func TestExpectedVersionSatisfied(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expected core.ExpectedVersion
		current  int64
		want     bool
	}{
		{core.Any, 0, true},
		{core.Any, 5, true},
		{core.NoStream, 0, true},
		{core.NoStream, 1, false},
		{core.Exact(0), 0, true},
		{core.Exact(0), 1, false},
		{core.StreamExists, 0, false},
		{core.StreamExists, 1, true},
		{core.Exact(3), 3, true},
		{core.Exact(3), 2, false},
		{core.Exact(3), 4, false},
		{core.Exact(3), 0, false},
		{core.Exact(-1), 0, false},
	}
	for _, tt := range tests {
		if got := tt.expected.Satisfied(tt.current); got != tt.want {
			t.Errorf("%s.Satisfied(%d) = %v, want %v", tt.expected, tt.current, got, tt.want)
		}
	}
}

func TestReadDirectionString(t *testing.T) {
	t.Parallel()
	var zero core.ReadDirection
	if zero != core.Forward || core.Forward.String() != "forward" || core.Backward.String() != "backward" {
		t.Errorf("directions: zero %v, %v, %v", zero, core.Forward, core.Backward)
	}
}
