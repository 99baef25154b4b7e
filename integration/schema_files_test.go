package integration_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/mire-go/mire/schema"
)

var migrationName = regexp.MustCompile(`^(\d{6})_([a-z0-9_]+)\.(up|down)\.sql$`)

// schemaMigrations checks the embedded migrations are numbered 1..n without
// gaps or duplicates, each with an up and a down file, and returns the names
// of the up files in order.
func schemaMigrations() ([]string, error) {
	entries, err := fs.ReadDir(schema.Migrations, schema.MigrationsDir)
	if err != nil {
		return nil, err
	}
	type pair struct{ name, up, down string }
	byNumber := map[int]*pair{}
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %q does not match NNNNNN_name.(up|down).sql", e.Name())
		}
		// Not fmt.Sscan: it reads a leading 0 as octal ("000008" as 0).
		n, err := strconv.Atoi(m[1])
		if err != nil {
			return nil, err
		}
		p := byNumber[n]
		if p == nil {
			p = &pair{name: m[2]}
			byNumber[n] = p
		}
		if p.name != m[2] {
			return nil, fmt.Errorf("migration %d has two names: %q and %q", n, p.name, m[2])
		}
		if m[3] == "up" {
			p.up = e.Name()
		} else {
			p.down = e.Name()
		}
	}
	numbers := make([]int, 0, len(byNumber))
	for n := range byNumber {
		numbers = append(numbers, n)
	}
	sort.Ints(numbers)
	var ups []string
	for i, n := range numbers {
		if n != i+1 {
			return nil, fmt.Errorf("migrations are not numbered 1..%d: found %d at place %d", len(numbers), n, i+1)
		}
		p := byNumber[n]
		if p.up == "" || p.down == "" {
			return nil, fmt.Errorf("migration %d (%s) needs both an up and a down file", n, p.name)
		}
		ups = append(ups, p.up)
	}
	return ups, nil
}

func TestMigrationFilesAreContiguous(t *testing.T) {
	t.Parallel()
	ups, err := schemaMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ups) == 0 {
		t.Fatal("no migrations embedded")
	}
}

// A migration that has been released must never change: databases that ran
// it would silently differ from new ones. schema/migrations.sha256 pins
// every file; a new migration adds a line (sha256sum *.sql), an edit to an
// old one fails here.
func TestMigrationsAreImmutable(t *testing.T) {
	t.Parallel()
	sums, err := os.Open("../schema/migrations.sha256")
	if err != nil {
		t.Fatal(err)
	}
	defer sums.Close() //nolint:errcheck // read only
	pinned := map[string]string{}
	scanner := bufio.NewScanner(sums)
	for scanner.Scan() {
		sum, name, ok := strings.Cut(scanner.Text(), "  ")
		if !ok {
			t.Fatalf("malformed line %q in migrations.sha256", scanner.Text())
		}
		pinned[name] = sum
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	entries, err := fs.ReadDir(schema.Migrations, schema.MigrationsDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := fs.ReadFile(schema.Migrations, schema.MigrationsDir+"/"+e.Name())
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		want, ok := pinned[e.Name()]
		switch {
		case !ok:
			t.Errorf("%s is not pinned in schema/migrations.sha256: add its line (sha256sum)", e.Name())
		case hex.EncodeToString(sum[:]) != want:
			t.Errorf("%s changed after it was pinned: add a new migration instead of editing this one", e.Name())
		}
		delete(pinned, e.Name())
	}
	for name := range pinned {
		t.Errorf("schema/migrations.sha256 pins %s, which does not exist", name)
	}
}
