package integration_test

import (
	"fmt"
	"io/fs"
	"regexp"
	"sort"
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
		var n int
		fmt.Sscan(m[1], &n)
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
