package main

import (
	"errors"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mire-go/mire/integration/pgenv"
)

func TestMain(m *testing.M) { os.Exit(pgenv.RunTests(m)) }

func TestRun(t *testing.T) {
	t.Parallel()
	out := pgenv.RunProgram(t, Run)
	want := `deposit 50 before opening  rejected: account not open; stream still at version 0
open for Ada               accepted, stream at version 1
open for Ada again         rejected: account already open; stream still at version 1
deposit 100                accepted, stream at version 2
deposit -5                 rejected: amount must be positive; stream still at version 2
withdraw 250               rejected: insufficient funds: balance 100, withdrawal 250 (short by 150); stream still at version 2
withdraw 60                accepted, stream at version 3
close                      rejected: balance must be zero to close: balance is 40; stream still at version 3
withdraw 40                accepted, stream at version 4
close                      accepted, stream at version 5
deposit 10 after closing   rejected: account closed; stream still at version 5
account: owner Ada, balance 0, closed true, version 5
its stream holds only the accepted commands' events:
  v1 account.opened           {"owner": "Ada"}
  v2 account.money-deposited  {"amount": 100}
  v3 account.money-withdrawn  {"amount": 60}
  v4 account.money-withdrawn  {"amount": 40}
  v5 account.closed           {}
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

// Decide is a pure function of the state, so the rules are tested without a
// database.
func TestDecide(t *testing.T) {
	t.Parallel()
	open := &Account{Open: true, Owner: "Ada", Balance: 100}
	tests := []struct {
		name    string
		state   *Account
		cmd     Command
		wantErr error
	}{
		{"open new", &Account{}, OpenAccount{ID: "1", Owner: "Ada"}, nil},
		{"open twice", open, OpenAccount{ID: "1", Owner: "Ada"}, ErrAccountExists},
		{"deposit unopened", &Account{}, Deposit{ID: "1", Amount: 1}, ErrAccountNotFound},
		{"deposit zero", open, Deposit{ID: "1", Amount: 0}, ErrInvalidAmount},
		{"withdraw all", open, Withdraw{ID: "1", Amount: 100}, nil},
		{"overdraw", open, Withdraw{ID: "1", Amount: 101}, ErrInsufficientFunds},
		{"close non-empty", open, CloseAccount{ID: "1"}, ErrBalanceNotZero},
		{"deposit closed", &Account{Open: true, Closed: true}, Deposit{ID: "1", Amount: 1}, ErrAccountClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			before := *tt.state
			events, err := tt.cmd.Decide(tt.state)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Decide() error = %v, want %v", err, tt.wantErr)
			}
			if (err == nil) != (len(events) == 1) {
				t.Errorf("Decide() = %d events with error %v; want one event or an error", len(events), err)
			}
			if diff := cmp.Diff(before, *tt.state); diff != "" {
				t.Errorf("Decide() modified the state (-before +after):\n%s", diff)
			}
		})
	}
}
