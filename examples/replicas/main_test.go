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
	got := regexp.MustCompile(`schema "[a-z0-9_]+"`).ReplaceAllString(out, `schema "SCHEMA"`)
	// A fresh schema: the orders are the whole log, the first lease has
	// fence token 1, and the takeover 2. Every order is counted once: 10
	// by the first leader, 10 by the replica that took over.
	want := `migrated schema "SCHEMA" and created the read model's table
replica-a started and leads "orders": fence 1
replica-b started: it stands by while replica-a holds the lease
placed orders 1-10; replica-b's WaitFor returned
  handled by replica-a: 10 orders, 55 in all
stopped replica-a: it released its lease
replica-b took over: fence 2 (replica-a's was 1), from checkpoint 10
placed orders 11-20; replica-b's WaitFor returned
  handled by replica-a: 10 orders, 55 in all
  handled by replica-b: 10 orders, 155 in all
status: worker replica-b, fence 2, checkpoint 20, head 20, lag 0, running
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}
