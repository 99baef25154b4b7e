package main

import (
	"os"
	"regexp"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mire-go/mire/integration/pgenv"
)

func TestMain(m *testing.M) { os.Exit(pgenv.RunTests(m)) }

func TestRun(t *testing.T) {
	t.Parallel()
	out := pgenv.RunProgram(t, Run)
	// The schema and the account IDs are fresh per run: mask them (keeping
	// the IDs' width, so that the table's columns line up).
	got := regexp.MustCompile(`schema "[a-z0-9_]+"`).ReplaceAllString(out, `schema "SCHEMA"`)
	got = regexp.MustCompile(`\b(ada|bob|cyd)\.[0-9a-f]{8}\b`).ReplaceAllString(got, "$1.<run-id>")
	// A fresh schema: this run's events are the whole log, and the
	// subscription's first lease has fence token 1.
	want := `migrated schema "SCHEMA" and created the read model's table
runner "projector" started: subscription "account-balances" follows category "account"
appended 8 events to 3 accounts; the last append: account-bob.<run-id> v3-4
WaitFor returned: the read model has them
  account        owner  balance events
  ada.<run-id>   Ada         70      3
  bob.<run-id>   Bob         35      4
  cyd.<run-id>   Cyd          0      1
status of account-balances partition 0/1: worker projector, fence 1, checkpoint 8, head 8, lag 0, running
stopped the runner
appended 2 events while no runner ran
status of account-balances partition 0/1: worker (none), fence 1, checkpoint 8, head 10, lag 2, running
started a new runner: it went on from the checkpoint, under a new fence
status of account-balances partition 0/1: worker projector, fence 2, checkpoint 10, head 10, lag 0, running
  account        owner  balance events
  ada.<run-id>   Ada         80      4
  bob.<run-id>   Bob         35      4
  cyd.<run-id>   Cyd         40      2
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}
