// Package schema embeds mire's PostgreSQL migrations so that the store can
// run them (golang-migrate, iofs source) and sqlc can read the same files as
// the schema of its queries: every table is defined once, here.
//
// Migrations are numbered NNNNNN_name.up.sql / .down.sql. They use
// unqualified names and run with search_path set to the store's schema, so
// one set of files serves any schema name.
package schema

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// Migrations holds the migration files under "migrations/".
//
//go:embed migrations/*.sql
var Migrations embed.FS

// MigrationsDir is the directory inside [Migrations] that holds the files.
const MigrationsDir = "migrations"

// LatestVersion is the version of the newest migration in [Migrations]: the
// schema version code built with this package expects.
func LatestVersion() uint { return latestVersion }

var latestVersion = func() uint {
	files, err := fs.Glob(Migrations, MigrationsDir+"/*.up.sql")
	if err != nil {
		panic(err)
	}
	var latest uint
	for _, file := range files {
		prefix, _, _ := strings.Cut(path.Base(file), "_")
		version, err := strconv.ParseUint(prefix, 10, 32)
		if err != nil {
			panic(fmt.Sprintf("schema: migration %s has no version number: %v", file, err))
		}
		latest = max(latest, uint(version))
	}
	return latest
}()
