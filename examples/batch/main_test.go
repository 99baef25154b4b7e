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
	// Throughput depends on the machine: mask it.
	rate := regexp.MustCompile(`: \d+ events/s`)
	got := rate.ReplaceAllString(out, ": N events/s")

	want := `ingesting 10000 events for 100 streams in chunks of 500
ingested in 20 transactions of 100 appends: N events/s
re-importing the first chunk is refused: sensor-<run>.000 expected no_stream, found version 100
before sequencing, sensor-<run>.007 v1 has global position 0
Sequence assigned 10000 positions; Head moved up by 10000
the log after the old head holds 10000 events at gapless positions
sensor-<run>.007: 100 events, versions 1..100, at increasing positions:
  v1   at H+36   {"seq": 0, "deci_celsius": 229}
  v2   at H+37   {"seq": 1, "deci_celsius": 209}
  v3   at H+38   {"seq": 2, "deci_celsius": 189}
  ...
  v100 at H+9540 {"seq": 99, "deci_celsius": 229}
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}
