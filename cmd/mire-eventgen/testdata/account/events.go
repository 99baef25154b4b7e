// Package account is the fixture of mire-eventgen's golden and compile tests.
package account

//go:generate go run github.com/mire-go/mire/cmd/mire-eventgen -prefix account

// MoneyDeposited is a plain event.
//
//mire:event
type MoneyDeposited struct {
	Amount int64 `json:"amount"`
}

// HTTPRequestFailed tests acronyms.
//
//mire:event
type HTTPRequestFailed struct {
	URL    string `json:"url"`
	Status int    `json:"status"`
}

// AccountClosed carries no data.
//
//mire:event
type AccountClosed struct{}

type (
	// OrderID2Set tests digits, in a grouped declaration.
	//
	//mire:event
	OrderID2Set struct {
		OrderID string `json:"order_id"`
	}

	// UserIDsAssigned tests a plural acronym.
	//
	//mire:event
	UserIDsAssigned struct {
		IDs []string `json:"ids"`
	}

	// Balance is not an event.
	Balance struct {
		Cents int64
	}
)
