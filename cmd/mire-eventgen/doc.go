// Mire-eventgen writes the boilerplate of mire event types: their EventType
// methods, a function that registers them in a core.Registry and, for the
// replies a saga awaits, IntoResponse methods and unions of replies. It is
// the Go counterpart of the Rust crate's #[derive(EventData)] and
// #[derive(IntoResponse)], run by go generate.
//
// Mark each event struct with a //mire:event line in its doc comment and
// add a go:generate line to one file of the package:
//
//	//go:generate go run github.com/mire-go/mire/cmd/mire-eventgen -prefix account
//
//	// MoneyDeposited records a deposit.
//	//
//	//mire:event
//	type MoneyDeposited struct {
//		Amount int64 `json:"amount"`
//	}
//
// go generate then writes mire_events_gen.go:
//
//	func (MoneyDeposited) EventType() string { return "account.money-deposited" }
//
//	func RegisterAccountEvents(r *core.Registry) error {
//		return r.Add(
//			MoneyDeposited{},
//		)
//	}
//
// Outside the mire workspace, track the generator as a tool of your module
// (go get -tool github.com/mire-go/mire/cmd/mire-eventgen) and write the
// directive as //go:generate go tool mire-eventgen -prefix account.
//
// # Event names
//
// An event type is wire format: it is stored with every event, so renaming
// a Go type renames its events unless the name is pinned. The generated
// name is the prefix, a dot and the type name in kebab case: words start at
// an upper-case letter after a lower-case letter or digit, and at the last
// capital of an acronym followed by lower case. Digits stay with the word
// before them, and an "s" after an acronym is a plural:
//
//	MoneyDeposited    → account.money-deposited
//	HTTPRequestFailed → account.http-request-failed
//	OrderID2Set       → account.order-id2-set
//	OpenedV2          → account.opened-v2
//	UserIDsAssigned   → account.user-ids-assigned
//
// To choose a name, or to keep one when renaming a type, give it in the
// directive; it is used exactly, prefix and all:
//
//	//mire:event name=account.opened-v2
//
// A name must not contain spaces, must be at most 255 bytes, and must be
// unique in the package.
//
// The prefix is lower-case kebab-case words, optionally namespaced with
// dots (bank.savings-account). It also names the registration function:
// Register, the prefix's words capitalised, then Events, so
// -prefix bank.savings-account gives RegisterBankSavingsAccountEvents.
//
// # Hand-written methods
//
// A marked type that already has an EventType method keeps it: the
// generator only registers it. The method must have a value receiver, so
// that T{} is an EventData and core.EventTypeOf works.
//
// # Responses
//
// A participant answers a saga's request with an event, and the saga's
// AwaitResponse fails its step when the reply's IntoResponse says it is an
// error. Say which replies are successes and which are errors in their
// directive:
//
//	//mire:event response
//	type PaymentTaken struct {
//		Cents int64 `json:"cents"`
//	}
//
//	//mire:event response=error reason=Reason
//	type PaymentDeclined struct {
//		Reason string `json:"reason"`
//	}
//
//	//mire:event response=error reason="card expired"
//	type CardExpired struct{}
//
// go generate then also writes:
//
//	func (e PaymentTaken) IntoResponse() core.ResponseValue { return core.OKResponse(e) }
//
//	func (e PaymentDeclined) IntoResponse() core.ResponseValue { return core.ErrorResponse(e, e.Reason) }
//
// response (or response=ok) answers with success, response=error with an
// error, whose reason is one of:
//
//	reason=Field   a field declared in the struct itself, of type string or
//	               a string type of the package; exported and not
//	               json:"-", because a saga reads the reply decoded from
//	               its stored data
//	reason="text"  a fixed text, a Go string literal
//	(none)         the type name in words: "payment declined"
//
// reason= goes with response=error only. A type with its own IntoResponse
// method keeps it and counts as a response too; marking such a type
// response as well is an error (keep one). Its IntoResponse must have a
// value receiver, as EventType must.
//
// # Unions of responses
//
// A saga that expects one of several replies awaits an interface they all
// implement: the Go form of the Rust derive on an enum of replies. Mark the
// interface //mire:response; it embeds core.IntoResponse and, to seal it,
// declares an unexported method without parameters or results:
//
//	//mire:response
//	type PaymentReply interface {
//		core.IntoResponse
//		isPaymentReply()
//	}
//
// Its members are the package's response types (marked response, or with
// their own IntoResponse), or those it lists:
// //mire:response members=PaymentTaken,PaymentDeclined. go generate writes
// the seal method on each member that lacks it, compile-time checks that the
// union is an IntoResponse and each member a PaymentReply, and a function
// returning the members' zero values, sorted by type name, for
// saga.Receives:
//
//	var (
//		_ core.IntoResponse = PaymentReply(nil)
//		_ PaymentReply      = PaymentDeclined{}
//		_ PaymentReply      = PaymentTaken{}
//	)
//
//	func PaymentReplyTypes() []core.EventData {
//		return []core.EventData{
//			PaymentDeclined{},
//			PaymentTaken{},
//		}
//	}
//
//	func (PaymentDeclined) isPaymentReply() {}
//
//	func (PaymentTaken) isPaymentReply() {}
//
// A saga then declares saga.Receives(PaymentReplyTypes()...), awaits
// saga.AwaitResponse[PaymentReply](c, req) and tells the members apart with
// a type switch. The seal keeps other events out: without one, every
// IntoResponse is a PaymentReply. The seal methods of interfaces of the
// package that a union embeds are written too, so a union can refine
// another (type PaymentFailure interface{ PaymentReply; isPaymentFailure() }).
// A union is an interface with methods, not a constraint such as
// interface{ PaymentTaken | PaymentDeclined }, which cannot hold a reply.
//
// # Flags
//
//	-prefix string  event name prefix (required)
//	-types list     comma-separated type names to generate for, instead of
//	                the marked types
//	-dir string     package directory (default ".", where go generate runs)
//	-output string  generated file name in -dir (default mire_events_gen.go)
//
// Files are chosen as the go command would for the current platform; test
// files and the output file itself are ignored. The output is sorted by type
// name and gofmt'ed, so running the generator again gives the same bytes, and
// an unchanged file is not rewritten. A file of the -output name that the
// generator did not write is never overwritten.
//
// Problems are reported as file:line:col: message, all at once, with exit
// status 1: a marked type that is not a non-generic struct (or, for
// //mire:response, interface), a malformed directive or one not attached to
// a type, two types with the same event name, a pointer-receiver EventType
// or IntoResponse method, a reason field that is missing, not a string or
// not encoded, a response marker on a type with its own IntoResponse, a
// union that is not an IntoResponse or has a member that is not a response
// event type, a generated function whose name is taken, no event types at
// all.
package main
