// Package payment is the fixture of mire-eventgen's response and union
// generation: a participant's replies to a saga's requests.
package payment

import "github.com/mire-go/mire/core"

//go:generate go run github.com/mire-go/mire/cmd/mire-eventgen -prefix payment

// Requested is a saga's request; it is not a response.
//
//mire:event
type Requested struct {
	Cents int64 `json:"cents"`
}

// Taken answers with success.
//
//mire:event response
type Taken struct {
	Cents int64 `json:"cents"`
}

// Declined answers with an error whose reason is a field.
//
//mire:event response=error reason=Reason
type Declined struct {
	Reason string `json:"reason"`
}

// Refused answers with an error whose reason is a fixed text.
//
//mire:event response=error reason="refused by the bank"
type Refused struct{}

// CardExpired answers with an error whose reason is its name in words, and
// pins its name.
//
//mire:event name=payment.card-expired-v1 response=error
type CardExpired struct{}

// Code is a string type of the package.
type Code string

// Blocked takes its reason from a field of a string type.
//
//mire:event response=error reason=Code
type Blocked struct {
	Code Code `json:"code"`
}

// Held writes its own IntoResponse: an error only when held for fraud.
//
//mire:event
type Held struct {
	Fraud bool `json:"fraud"`
}

func (h Held) IntoResponse() core.ResponseValue {
	if h.Fraud {
		return core.ErrorResponse(h, "held for fraud review")
	}
	return core.OKResponse(h)
}

// Reply is every response of the package; only they implement it.
//
//mire:response
type Reply interface {
	core.IntoResponse
	isReply()
}

// Failure is the error responses a saga compensates for. Refused writes its
// own seal method.
//
//mire:response members=Declined,Refused,CardExpired
type Failure interface {
	Reply
	isFailure()
}

func (Refused) isFailure() {}
