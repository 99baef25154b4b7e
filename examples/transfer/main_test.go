package main

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mire-go/mire/integration/pgenv"
)

func TestMain(m *testing.M) { os.Exit(pgenv.RunTests(m)) }

func TestRun(t *testing.T) {
	t.Parallel()
	out := pgenv.RunProgram(t, Run)
	want := `opened two accounts:
  Ada balance 100, stream version 1
  Bob balance  20, stream version 1
Ada sent Bob 30; both streams moved:
  Ada balance  70, stream version 2
  Bob balance  50, stream version 2
Bob tries to send Ada 500: insufficient funds: Bob has 50, transfer of 500
nothing was written to either stream:
  Ada balance  70, stream version 2
  Bob balance  50, stream version 2
Ada sends Bob 10, but: simulated failure after saving the sender
the sender's saved half rolled back with the scope:
  Ada balance  70, stream version 2
  Bob balance  50, stream version 2
10 transfers of 1 each way, concurrently; no deadlock, balances unchanged:
  Ada balance  70, stream version 22
  Bob balance  50, stream version 22
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}
