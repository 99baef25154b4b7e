package account

import (
	"reflect"
	"slices"
	"testing"

	"github.com/mire-go/mire/core"
)

// TestRoundTrip runs in the temporary module of mire-eventgen's compile test,
// against the generated file.
func TestRoundTrip(t *testing.T) {
	t.Parallel()

	r := core.NewRegistry()
	if err := RegisterAccountEvents(r); err != nil {
		t.Fatal(err)
	}
	wantTypes := []string{
		"account.account-closed",
		"account.http-request-failed",
		"account.money-deposited",
		"account.money-withdrawn",
		"account.opened",
		"account.order-id2-set",
		"account.user-ids-assigned",
	}
	if got := r.EventTypes(); !slices.Equal(got, wantTypes) {
		t.Errorf("EventTypes() = %q, want %q", got, wantTypes)
	}
	if got := core.EventTypeOf[MoneyDeposited](); got != "account.money-deposited" {
		t.Errorf("EventTypeOf[MoneyDeposited]() = %q", got)
	}

	for _, want := range []core.EventData{
		MoneyDeposited{Amount: 42},
		AccountOpened{Owner: "ada"},
		MoneyWithdrawn{Amount: 7},
		HTTPRequestFailed{URL: "https://example.com", Status: 503},
		UserIDsAssigned{IDs: []string{"a", "b"}},
		AccountClosed{},
	} {
		data, err := r.Encode(want)
		if err != nil {
			t.Fatalf("Encode(%#v): %v", want, err)
		}
		got, err := r.Decode(&core.RecordedEvent{EventType: want.EventType(), Data: data})
		if err != nil {
			t.Fatalf("Decode(%s): %v", data, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("round trip of %s: got %#v, want %#v", want.EventType(), got, want)
		}
	}
}
