package core_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mire-go/mire/core"
)

// checkInvalidInput fails t unless err is an *core.InvalidInputError for
// field (or nil when field is "").
// checkInvalidInput returns the error's details as a value, so that a
// caller with no use for them need not discard an error.
func checkInvalidInput(t *testing.T, err error, field string) core.InvalidInputError {
	t.Helper()
	if field == "" {
		if err != nil {
			t.Errorf("err = %v, want nil", err)
		}
		return core.InvalidInputError{}
	}
	var invalid *core.InvalidInputError
	if !errors.As(err, &invalid) {
		t.Fatalf("err = %v (%T), want *core.InvalidInputError for %q", err, err, field)
	}
	if !errors.Is(err, core.ErrInvalidInput) {
		t.Errorf("errors.Is(%v, ErrInvalidInput) = false", err)
	}
	if invalid.Field != field || invalid.Reason == "" {
		t.Errorf("InvalidInputError = %+v, want Field %q and a reason", invalid, field)
	}
	return *invalid
}

func TestValidateText(t *testing.T) {
	t.Parallel()
	validators := []struct {
		field    string
		validate func(string) error
		max      int
	}{
		{"stream id", core.ValidateStreamID, core.MaxStreamIDLength},
		{"event type", core.ValidateEventType, core.MaxEventTypeLength},
	}
	for _, v := range validators {
		tests := []struct {
			name  string
			input string
			valid bool
		}{
			{"simple", "account-1", true},
			{"one byte", "a", true},
			{"spaces and punctuation", " a b.c/d:e ", true},
			{"unicode", "compte-é☃𝄞", true},
			{"at the limit", strings.Repeat("x", v.max), true},
			{"at the limit in multibyte runes", strings.Repeat("é", v.max/2) + strings.Repeat("x", v.max%2), true},
			{"empty", "", false},
			{"over the limit", strings.Repeat("x", v.max+1), false},
			{"over the limit in multibyte runes", strings.Repeat("é", v.max/2+1), false},
			{"invalid UTF-8", "a\xffb", false},
			{"truncated rune", "a\xe2\x82", false},
			{"NUL byte", "a\x00b", false},
			{"only NUL", "\x00", false},
		}
		for _, tt := range tests {
			t.Run(v.field+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				field := v.field
				if tt.valid {
					field = ""
				}
				checkInvalidInput(t, v.validate(tt.input), field)
			})
		}
	}
}

func TestValidateCategory(t *testing.T) {
	t.Parallel()
	tests := []struct {
		input string
		valid bool
	}{
		{"account", true},
		{"account_v2", true},
		{"Account.Ledger", true},
		{"", false},
		{"account-", false},
		{"-", false},
		{"acc-ount", false},
		{"a\x00", false},
		{"\xff", false},
		{strings.Repeat("c", core.MaxStreamIDLength), true},
		{strings.Repeat("c", core.MaxStreamIDLength+1), false},
	}
	for _, tt := range tests {
		field := "category"
		if tt.valid {
			field = ""
		}
		checkInvalidInput(t, core.ValidateCategory(tt.input), field)
	}
}

func TestStreamID(t *testing.T) {
	t.Parallel()
	if got := core.StreamID("account", "42"); got != "account-42" {
		t.Errorf("StreamID = %q", got)
	}
	if got := core.StreamID("account", "a-b"); got != "account-a-b" {
		t.Errorf("StreamID with a dash in the id = %q", got)
	}
}

// The rejected value is kept in the error, shortened when long.
func TestInvalidInputValueIsShortened(t *testing.T) {
	t.Parallel()
	short := "a\x00b"
	if invalid := checkInvalidInput(t, core.ValidateStreamID(short), "stream id"); invalid.Value != short {
		t.Errorf("Value = %q, want %q", invalid.Value, short)
	}
	long := strings.Repeat("x", 1000)
	invalid := checkInvalidInput(t, core.ValidateStreamID(long), "stream id")
	if len(invalid.Value) >= 100 || !strings.HasPrefix(long, strings.TrimSuffix(invalid.Value, "…")) {
		t.Errorf("Value of %d bytes = %q, want a short prefix", len(invalid.Value), invalid.Value)
	}
	if msg := invalid.Error(); len(msg) > 300 || !strings.Contains(msg, "stream id") || !strings.Contains(msg, "1000 bytes") {
		t.Errorf("message %q should be short and say what is wrong", msg)
	}
}

// A rejected value is shortened for the error at a rune boundary, so a
// too-long but valid UTF-8 input still yields a valid UTF-8 Value.
func TestInvalidInputValueStaysUTF8(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("€", 100) // 3 bytes each: 64 is not a rune boundary
	invalid := checkInvalidInput(t, core.ValidateStreamID(long), "stream id")
	if !utf8.ValidString(invalid.Value) {
		t.Errorf("Value %q of a valid UTF-8 input is not valid UTF-8", invalid.Value)
	}
}
