package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/runner"
	"github.com/mire-go/mire/saga"
)

// The command's pure parts; tests against PostgreSQL are in
// integration/cli_test.go.

func TestRelative(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 2, 15, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		t    time.Time
		want string
	}{
		{time.Time{}, "-"},
		{now, "now"},
		{now.Add(-999 * time.Millisecond), "now"},
		{now.Add(-42 * time.Second), "42s ago"},
		{now.Add(12 * time.Second), "in 12s"},
		{now.Add(-5*time.Minute - 59*time.Second), "5m ago"},
		{now.Add(-47 * time.Hour), "47h ago"},
		{now.Add(-72 * time.Hour), "3d ago"},
	} {
		if got := relative(now, tc.t); got != tc.want {
			t.Errorf("relative(%v) = %q, want %q", now.Sub(tc.t), got, tc.want)
		}
	}
}

func TestCount(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1204000: "1,204,000", -12345: "-12,345"} {
		if got := count(n); got != want {
			t.Errorf("count(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestProgressLine(t *testing.T) {
	t.Parallel()
	start := time.Date(2025, 1, 2, 15, 4, 5, 0, time.UTC)
	clock := start
	var out bytes.Buffer
	p := newProgress(&out, "balances", "events", 10_000, time.Second)
	p.now = func() time.Time { return clock }
	p.started = start

	p.update(0) // a run shorter than the interval prints only its end
	if out.Len() != 0 {
		t.Errorf("printed before the interval: %q", out.String())
	}
	clock = start.Add(time.Second)
	p.update(2_000)
	clock = start.Add(2 * time.Second)
	p.update(4_000)
	clock = start.Add(2500 * time.Millisecond)
	p.update(5_000) // within the interval: not printed
	clock = start.Add(5 * time.Second)
	p.finish(10_000, true)
	want := []string{
		"balances [====                    ]  20% 2,000/10,000 events, 2,000 events/s, ETA 4s",
		"balances [=========               ]  40% 4,000/10,000 events, 2,000 events/s, ETA 3s",
		"balances [========================] 100% 10,000/10,000 events, 2,000 events/s, done in 5s",
	}
	if got := strings.Split(strings.TrimSpace(out.String()), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("progress:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestTruncateStatement(t *testing.T) {
	t.Parallel()
	got, err := truncateStatement([]string{"balances", "app.Read Model"})
	if want := `TRUNCATE "balances", "app"."Read Model"`; err != nil || got != want {
		t.Errorf("truncateStatement = %q, %v; want %q", got, err, want)
	}
	for _, bad := range []string{"", "a.b.c", ".b", "a."} {
		if _, err := truncateStatement([]string{bad}); exitCode(err) != exitUsage {
			t.Errorf("truncateStatement(%q) = %v, want a usage error", bad, err)
		}
	}
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, exitOK},
		{errors.New("boom"), exitError},
		{&core.DatabaseError{Kind: core.DBConnection, Op: "head", Err: errors.New("refused")}, exitError},
		{usageErrorf("bad flag"), exitUsage},
		{&core.InvalidInputError{Field: "schema", Reason: "too long"}, exitUsage},
		{errFindings, exitFindings},
		{notFoundErrorf("no stream"), exitNotFound},
		{fmt.Errorf("%w: %q", runner.ErrUnknownSubscription, "x"), exitNotFound},
		{fmt.Errorf("%w: order %q", saga.ErrNotFound, "o-1"), exitNotFound},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// Without a database the commands still parse, help and refuse.
func TestRunWithoutDatabase(t *testing.T) {
	t.Parallel()
	noEnv := func(string) string { return "" }
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"--help"}, exitOK, "Exit codes: 0 success", ""},
		{[]string{"tail", "--help"}, exitOK, "--poll-interval", ""},
		{[]string{"status"}, exitUsage, "", "no database: set DATABASE_URL"},
		{[]string{"tail", "--from", "0"}, exitUsage, "", "--from must be a position"},
		{[]string{"verify", "--max-findings", "0"}, exitUsage, "", "--max-findings must be 1 or more"},
		{[]string{"sequence", "--once", "--interval", "1s"}, exitUsage, "", "exclude each other"},
		{[]string{"migrate", "to", "999"}, exitUsage, "", "knows migrations up to"},
		{[]string{"migrate", "down", "0"}, exitUsage, "", "1 or more"},
		{[]string{"subscription", "wait", "x", "--progress-interval", "0s"}, exitUsage, "", "must be positive"},
		{[]string{"saga"}, exitUsage, "", "needs a subcommand: list, retry, show"},
		{[]string{"saga", "list", "--status", "stuck"}, exitUsage, "", `--status "stuck": want one of running, waiting`},
		{[]string{"saga", "list", "--limit", "0"}, exitUsage, "", "--limit must be at least 1"},
		{[]string{"saga", "show", "order"}, exitUsage, "", "needs NAME and ID"},
		{[]string{"saga", "retry"}, exitUsage, "", "needs NAME and ID"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.args, &stdout, &stderr, noEnv)
		if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("mire %q: exit %d\nstdout: %s\nstderr: %s\nwant exit %d, %q, %q", tc.args, code, stdout.String(),
				stderr.String(), tc.code, tc.stdout, tc.stderr)
		}
	}
}

// The status's sagas section: the statuses with sagas, in the order of a
// saga's life, and a line for each that waits for an operator.
func TestPrintSagas(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		counts map[saga.Status]int64
		want   string
	}{
		{map[saga.Status]int64{saga.StatusRunning: 0, saga.StatusCompleted: 0}, "sagas: none\n"},
		{map[saga.Status]int64{saga.StatusCompleted: 1200, saga.StatusWaiting: 3, saga.StatusRunning: 0},
			"sagas: 3 waiting, 1,200 completed\n"},
		{map[saga.Status]int64{saga.StatusBlocked: 1, saga.StatusCompensationFailed: 2, saga.StatusCompensated: 4},
			"sagas: 4 compensated, 2 compensation_failed, 1 blocked\n" +
				"  1 blocked, waiting for an operator: mire saga list --status blocked\n" +
				"  2 compensation_failed, waiting for an operator: mire saga list --status compensation_failed\n"},
		{map[saga.Status]int64{"paused": 2, saga.StatusWaiting: 1}, "sagas: 1 waiting, 2 paused\n"},
	} {
		var b strings.Builder
		if err := printSagas(&b, &statusReport{Sagas: tc.counts}); err != nil {
			t.Fatal(err)
		}
		if b.String() != tc.want {
			t.Errorf("printSagas(%v) = %q, want %q", tc.counts, b.String(), tc.want)
		}
	}
}
