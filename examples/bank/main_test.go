package main

import (
	"bytes"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mire-go/mire/integration/pgenv"
)

func TestMain(m *testing.M) { os.Exit(pgenv.RunTests(m)) }

func TestRun(t *testing.T) {
	t.Parallel()
	out := pgenv.RunProgram(t, Run)
	want := `migrated schema "SCHEMA"
opened an account for Ada with 100; stream at version 2
clerk 1 withdrew 30
clerk 2 lost the race: expected version exact(2), stream is at 3
clerk 2 reloaded at version 3 and withdrew 50
loaded account: owner Ada, balance 20, version 4
the account's stream:
  v1 account.opened           {"owner": "Ada"}
  v2 account.money-deposited  {"amount": 100}
  v3 account.money-withdrawn  {"amount": 30}
  v4 account.money-withdrawn  {"amount": 50}
read the last 4 events of category "account" newest first, by global position
`
	got := bytes.Replace([]byte(out), []byte(firstLineSchema([]byte(out))), []byte("SCHEMA"), 1)
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

func firstLineSchema(out []byte) string {
	start := bytes.IndexByte(out, '"')
	end := bytes.IndexByte(out[start+1:], '"')
	return string(out[start+1 : start+1+end])
}
