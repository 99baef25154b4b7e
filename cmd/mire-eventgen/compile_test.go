package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedCodeCompiles builds the golden fixtures, with freshly
// generated code, as packages of a throwaway module that uses this
// repository's core, vets them and runs their tests: testdata/account's
// round trip through core.Registry's Encode and Decode.
func TestGeneratedCodeCompiles(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs the go command")
	}
	// go test puts the go command's GOROOT/bin first on the test's PATH.
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command on PATH: %v", err)
	}
	coreDir, err := filepath.Abs(filepath.Join("..", "..", "core"))
	if err != nil {
		t.Fatal(err)
	}
	coreSum := readFile(t, filepath.Join(coreDir, "go.sum"))

	mod := t.TempDir()
	goMod := fmt.Sprintf("module example.com/events\n\ngo 1.25.11\n\nrequire github.com/mire-go/mire/core v0.0.0\n\nreplace github.com/mire-go/mire/core => %s\n", coreDir)
	writeFile(t, filepath.Join(mod, "go.mod"), []byte(goMod))
	writeFile(t, filepath.Join(mod, "go.sum"), coreSum) // core's dependencies
	for _, tc := range goldenCases {
		dir := copyFixture(t, tc.dir, filepath.Join(mod, tc.dir))
		src, err := generate(tc.cfg.in(dir))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, outputDefault), src)
	}

	for _, args := range [][]string{{"vet", "./..."}, {"test", "-count=1", "./..."}} {
		cmd := exec.Command(goCmd, args...)
		cmd.Dir = mod
		// Outside any workspace; -mod=mod lets go record core's indirect
		// requirements, whose sums were copied above.
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %v: %v\n%s", args, err, out)
		}
		t.Logf("go %v:\n%s", args, out)
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
