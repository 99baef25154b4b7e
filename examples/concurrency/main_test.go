package main

import (
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mire-go/mire/integration/pgenv"
)

func TestMain(m *testing.M) { os.Exit(pgenv.RunTests(m)) }

func TestRun(t *testing.T) {
	t.Parallel()
	out := pgenv.RunProgram(t, Run)

	// The number of conflicts depends on scheduling: mask it.
	conflictsLine := regexp.MustCompile(`(?m)^(saves that lost a race and were retried: )(\d+)$`)
	m := conflictsLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no conflicts line in output:\n%s", out)
	}
	// Two writers lined up on one stream collide dozens of times a run; none
	// at all would mean the writers never overlapped and the demo showed
	// nothing.
	if n, _ := strconv.Atoi(m[2]); n == 0 {
		t.Errorf("no conflicts: the writers did not overlap")
	}
	t.Logf("conflicts: %s", m[2])
	got := conflictsLine.ReplaceAllString(out, "${1}N")

	want := `opened an account for Ada; stream at version 1
2 writers make 50 deposits of 10 each to one account, concurrently
saves that lost a race and were retried: N
final balance 1000 (100 deposits of 10), stream version 101 (open + 100 deposits)
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}
