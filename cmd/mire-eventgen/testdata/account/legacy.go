package account

// AccountOpened predates the generator: its name is pinned.
//
//mire:event name=account.opened
type AccountOpened struct {
	Owner string `json:"owner"`
}

// MoneyWithdrawn keeps its hand-written method; it is only registered.
//
//mire:event
type MoneyWithdrawn struct {
	Amount int64 `json:"amount"`
}

func (MoneyWithdrawn) EventType() string { return "account.money-withdrawn" }
