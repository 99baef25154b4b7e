package core_test

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mire-go/mire/core"
)

type paymentTaken struct {
	Amount int64 `json:"amount"`
}

func (paymentTaken) EventType() string { return "payment.taken" }

type paymentDeclined struct {
	Why string `json:"why"`
}

func (paymentDeclined) EventType() string { return "payment.declined" }

func (d paymentDeclined) IntoResponse() core.ResponseValue { return core.ErrorResponse(d, d.Why) }

func TestResponseOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		event core.EventData
		want  core.ResponseValue
	}{
		{paymentTaken{Amount: 5}, core.ResponseValue{EventType: "payment.taken", Data: json.RawMessage(`{"amount":5}`)}},
		{paymentDeclined{Why: "card expired"}, core.ResponseValue{EventType: "payment.declined",
			Data: json.RawMessage(`{"why":"card expired"}`), IsError: true, Reason: "card expired"}},
	} {
		if diff := cmp.Diff(tc.want, core.ResponseOf(tc.event)); diff != "" {
			t.Errorf("ResponseOf(%T) (-want +got):\n%s", tc.event, diff)
		}
	}
}
