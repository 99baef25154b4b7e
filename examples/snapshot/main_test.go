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
	want := `saved 1000 readings in 14 saves of up to 75; snapshots every 100 events
saved 42 more readings; stream at version 1042
Load:                replayed 1042 events -> 1042 readings, 138476 Wh
LoadSnapshotted:     replayed   42 events -> 1042 readings, 138476 Wh
same state, same version (1042)
LoadSnapshotted (v2): replayed 1042 events -> 1042 readings, 138476 Wh, peak 9000 Wh
after a v2 snapshot:  replayed    0 events -> 1042 readings, 138476 Wh, peak 9000 Wh
LoadSnapshotted (v1): replayed 1042 events -> 1042 readings, 138476 Wh
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}
