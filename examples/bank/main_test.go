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
	// The schema and the account IDs are fresh per run: mask them.
	got := regexp.MustCompile(`schema "[a-z0-9_]+"`).ReplaceAllString(out, `schema "SCHEMA"`)
	got = regexp.MustCompile(`\b(ada|bob)\.[0-9a-f]{8}\b`).ReplaceAllString(got, "$1.ID")
	// A fresh schema: this run's events are the whole log, at positions 1-5.
	want := `migrated schema "SCHEMA"
opened an account for Ada with 100; stream at version 2
clerk 1 withdrew 30
opened an account for Bob
clerk 2 lost the race: expected version exact(2), stream is at 3
clerk 2 retried with store.Update: reloaded at version 3 and withdrew 50
loaded account: owner Ada, balance 20, version 4
the account's stream:
  v1 account.opened           {"owner": "Ada"}
  v2 account.money-deposited  {"amount": 100}
  v3 account.money-withdrawn  {"amount": 30}
  v4 account.money-withdrawn  {"amount": 50}
the last 5 events of category "account", newest first:
  position 5   account-ada.ID v4  account.money-withdrawn
  position 4   account-bob.ID v1  account.opened
  position 3   account-ada.ID v3  account.money-withdrawn
  position 2   account-ada.ID v2  account.money-deposited
  position 1   account-ada.ID v1  account.opened
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}
