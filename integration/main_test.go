package integration_test

import (
	"os"
	"testing"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
)

func TestMain(m *testing.M) {
	code := pgenv.RunTests(m)
	removeMireBinary()
	os.Exit(code)
}

// A small bank domain shared by the tests.

type Opened struct {
	Owner string `json:"owner"`
}

func (Opened) EventType() string { return "account.opened" }

type Deposited struct {
	Amount int64 `json:"amount"`
}

func (Deposited) EventType() string { return "account.deposited" }

type Withdrawn struct {
	Amount int64 `json:"amount"`
}

func (Withdrawn) EventType() string { return "account.withdrawn" }

type Account struct {
	Owner    string
	Balance  int64
	Applied  int
	IsOpened bool
}

func (*Account) Category() string { return "account" }

func (a *Account) Apply(event core.EventData) {
	a.Applied++
	switch e := event.(type) {
	case Opened:
		a.Owner, a.IsOpened = e.Owner, true
	case Deposited:
		a.Balance += e.Amount
	case Withdrawn:
		a.Balance -= e.Amount
	}
}

func bankRegistry() *core.Registry {
	r := core.NewRegistry()
	core.Register[Opened](r)
	core.Register[Deposited](r)
	core.Register[Withdrawn](r)
	return r
}
