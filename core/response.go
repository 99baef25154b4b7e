package core

import (
	"encoding/json"
	"fmt"
)

// ResponseValue is a participant's reply to a saga's request, as the saga
// sees it: the reply's event type and data, and whether it answers with an
// error. A saga step awaiting the reply gets the event, or fails with an
// error carrying it when IsError is set.
type ResponseValue struct {
	// EventType and Data are the reply event's.
	EventType string
	Data      json.RawMessage
	// IsError fails the awaiting step; Reason says why.
	IsError bool
	Reason  string
}

// IntoResponse is an event that can answer a saga's request. mire-eventgen
// generates the method for event types marked as responses (and for a
// union of them); hand-written ones work the same:
//
//	func (d PaymentDeclined) IntoResponse() core.ResponseValue {
//		return core.ErrorResponse(d, d.Reason)
//	}
type IntoResponse interface {
	EventData
	IntoResponse() ResponseValue
}

// OKResponse is the ResponseValue of event answering with success.
func OKResponse(event EventData) ResponseValue { return newResponse(event, false, "") }

// ErrorResponse is the ResponseValue of event answering with an error,
// for reason.
func ErrorResponse(event EventData, reason string) ResponseValue {
	return newResponse(event, true, reason)
}

func newResponse(event EventData, isError bool, reason string) ResponseValue {
	data, err := json.Marshal(event)
	if err != nil {
		// An event that does not encode cannot be stored either; say so
		// where the response is read.
		return ResponseValue{EventType: event.EventType(), IsError: true, Reason: fmt.Sprintf("encoding the response: %v", err)}
	}
	return ResponseValue{EventType: event.EventType(), Data: data, IsError: isError, Reason: reason}
}

// ResponseOf returns event's ResponseValue: its IntoResponse if it has one,
// else a success.
func ResponseOf(event EventData) ResponseValue {
	if r, ok := event.(IntoResponse); ok {
		return r.IntoResponse()
	}
	return OKResponse(event)
}
