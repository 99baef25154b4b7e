// Package ledger is a fixture: it declares a package-level core, so the
// generated import needs another name, and it is generated with -types.
package ledger

//go:generate go run github.com/mire-go/mire/cmd/mire-eventgen -prefix bank.ledger -types Credited,Debited

var core = "the ledger's core"

// Credited is selected by -types without a directive.
type Credited struct {
	Cents int64 `json:"cents"`
}

// Debited is selected by -types and pins its name.
//
//mire:event name=ledger.debited
type Debited struct {
	Cents int64 `json:"cents"`
}

// Reversed is marked but left out by -types.
//
//mire:event
type Reversed struct{}
