// Mire-eventgen writes the boilerplate of mire event types: their EventType
// methods and a function that registers them in a core.Registry. It is the
// Go counterpart of the Rust crate's #[derive(EventData)], run by go
// generate.
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
// status 1: a marked type that is not a non-generic struct, a malformed
// directive or one not attached to a type, two types with the same event
// name, a pointer-receiver EventType method, no event types at all.
package main
