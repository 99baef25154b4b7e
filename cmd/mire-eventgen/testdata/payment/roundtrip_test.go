package payment

import (
	"reflect"
	"testing"

	"github.com/mire-go/mire/core"
)

// TestResponses runs in the temporary module of mire-eventgen's compile
// test, against the generated file.
func TestResponses(t *testing.T) {
	t.Parallel()

	tests := []struct {
		event   core.EventData
		isError bool
		reason  string
	}{
		{Requested{Cents: 5}, false, ""}, // no IntoResponse: ResponseOf says success
		{Taken{Cents: 5}, false, ""},
		{Declined{Reason: "insufficient funds"}, true, "insufficient funds"},
		{Refused{}, true, "refused by the bank"},
		{CardExpired{}, true, "card expired"},
		{Blocked{Code: "B42"}, true, "B42"},
		{Held{}, false, ""},
		{Held{Fraud: true}, true, "held for fraud review"},
	}
	for _, tt := range tests {
		got := core.ResponseOf(tt.event)
		if got.EventType != tt.event.EventType() || got.IsError != tt.isError || got.Reason != tt.reason || len(got.Data) == 0 {
			t.Errorf("ResponseOf(%#v) = %+v, want an error: %v, reason %q", tt.event, got, tt.isError, tt.reason)
		}
	}
	if got := (CardExpired{}).EventType(); got != "payment.card-expired-v1" {
		t.Errorf("CardExpired.EventType() = %q", got)
	}

	types := func(events []core.EventData) []string {
		var names []string
		for _, e := range events {
			names = append(names, e.EventType())
		}
		return names
	}
	wantReply := []string{"payment.blocked", "payment.card-expired-v1", "payment.declined", "payment.held", "payment.refused", "payment.taken"}
	if got := types(ReplyTypes()); !reflect.DeepEqual(got, wantReply) {
		t.Errorf("ReplyTypes() = %q, want %q", got, wantReply)
	}
	wantFailure := []string{"payment.card-expired-v1", "payment.declined", "payment.refused"}
	if got := types(FailureTypes()); !reflect.DeepEqual(got, wantFailure) {
		t.Errorf("FailureTypes() = %q, want %q", got, wantFailure)
	}

	// The unions are sealed: the request is not a reply, a success not a
	// failure.
	var request core.EventData = Requested{}
	if _, ok := request.(Reply); ok {
		t.Error("Requested is a Reply")
	}
	var taken core.EventData = Taken{}
	if _, ok := taken.(Failure); ok {
		t.Error("Taken is a Failure")
	}

	// A decoded reply is a Reply, as a saga's Await[Reply] sees it.
	r := core.NewRegistry()
	if err := RegisterPaymentEvents(r); err != nil {
		t.Fatal(err)
	}
	data, err := r.Encode(Declined{Reason: "no"})
	if err != nil {
		t.Fatal(err)
	}
	decoded, err := r.Decode(&core.RecordedEvent{EventType: "payment.declined", Data: data})
	if err != nil {
		t.Fatal(err)
	}
	reply, ok := decoded.(Reply)
	if !ok {
		t.Fatalf("decoded %#v is not a Reply", decoded)
	}
	if got := reply.IntoResponse(); !got.IsError || got.Reason != "no" {
		t.Errorf("decoded reply's IntoResponse() = %+v", got)
	}
}
