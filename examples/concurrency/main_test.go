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
	// The number of conflicts depends on scheduling: mask it.
	conflictsLine := regexp.MustCompile(`(?m)^(saves that lost a race and were retried: )(\d+)$`)
	want := `opened an account for Ada; stream at version 1
2 writers make 50 deposits of 10 each to one account, concurrently
saves that lost a race and were retried: N
final balance 1000 (100 deposits of 10), stream version 101 (open + 100 deposits)
`
	// Two writers lined up on one stream collide dozens of times a run; a
	// run without any means the writers never overlapped (a busy machine
	// can run one writer's deposits before the other's start), and the demo
	// showed nothing. Every run must be right; one in five must collide.
	for run := 1; ; run++ {
		out := pgenv.RunProgram(t, Run)
		m := conflictsLine.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no conflicts line in output:\n%s", out)
		}
		if diff := cmp.Diff(want, conflictsLine.ReplaceAllString(out, "${1}N")); diff != "" {
			t.Fatalf("output (-want +got):\n%s", diff)
		}
		n, _ := strconv.Atoi(m[2])
		t.Logf("run %d: %d conflicts", run, n)
		if n > 0 {
			return
		}
		if run == 5 {
			t.Fatalf("no conflicts in %d runs: the writers never overlapped", run)
		}
	}
}
