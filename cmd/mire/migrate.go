package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mire-go/mire/schema"
	"github.com/mire-go/mire/store"
)

func newMigrateCommand(a *app) *cobra.Command {
	var allowShared, yes bool
	storeFor := func(ctx context.Context) (*store.EventStore, error) {
		return a.storeWith(ctx, &store.Config{AllowSharedSchema: allowShared})
	}
	up := &cobra.Command{
		Use:   "up",
		Short: "Apply every pending migration",
		Long: `Apply every pending migration, creating the schema if it is missing. Run it
as the schema's owner. It is idempotent and safe to run from several places
at once.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			es, err := storeFor(cmd.Context())
			if err != nil {
				return err
			}
			return migrateAndReport(cmd.Context(), a, es, "up", func(ctx context.Context) error { return es.Migrate(ctx) })
		},
	}
	down := &cobra.Command{
		Use:   "down N",
		Short: "Revert the last N migrations (needs --yes)",
		Long: `Revert the last N migrations. Reverting drops what they created: the first
migration holds the events themselves. Needs --yes.`,
		Args: exactArgs("N"),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.ParseUint(args[0], 10, 32)
			if err != nil || n == 0 {
				return usageErrorf("N must be a number of migrations, 1 or more: %q", args[0])
			}
			es, err := storeFor(cmd.Context())
			if err != nil {
				return err
			}
			version, _, err := es.MigrationVersion(cmd.Context())
			if err != nil {
				return err
			}
			if uint(n) > version {
				return usageErrorf("cannot revert %d migrations: schema %s is at version %d", n, es.Schema(), version)
			}
			return migrateTo(cmd.Context(), a, es, version-uint(n), yes)
		},
	}
	to := &cobra.Command{
		Use:   "to VERSION",
		Short: "Migrate up or down to VERSION (down needs --yes)",
		Args:  exactArgs("VERSION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := strconv.ParseUint(args[0], 10, 32)
			if err != nil {
				return usageErrorf("VERSION must be a migration number: %q", args[0])
			}
			if uint(v) > schema.LatestVersion() {
				return usageErrorf("this mire knows migrations up to %d, not %d", schema.LatestVersion(), v)
			}
			es, err := storeFor(cmd.Context())
			if err != nil {
				return err
			}
			return migrateTo(cmd.Context(), a, es, uint(v), yes)
		},
	}
	force := &cobra.Command{
		Use:   "force VERSION",
		Short: "Record VERSION as the schema's clean migration version, running nothing (needs --yes)",
		Long: `Record VERSION as the schema's migration version, clean, without running any
migration: the way out of a migration left dirty that 'migrate up' cannot
resolve. First make the schema match VERSION by hand (the migration files
are in the schema module); forcing a version the schema does not match
breaks later migrations. Needs --yes.`,
		Args: exactArgs("VERSION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := strconv.ParseUint(args[0], 10, 32)
			if err != nil {
				return usageErrorf("VERSION must be a migration number: %q", args[0])
			}
			if !yes {
				return usageErrorf("forcing the migration version records %d without running anything: pass --yes", v)
			}
			es, err := storeFor(cmd.Context())
			if err != nil {
				return err
			}
			return migrateAndReport(cmd.Context(), a, es, "force", func(ctx context.Context) error {
				return es.ForceMigrationVersion(ctx, uint(v))
			})
		},
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the applied version, pending migrations and checksums",
		Long: `Show the schema's migration version, whether a failed migration left it
dirty, and each migration this mire embeds: applied or pending, with the
SHA-256 of its up and down files (compare them with schema/migrations.sha256
in the repository the binary was built from).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			es, err := storeFor(cmd.Context())
			if err != nil {
				return err
			}
			return migrateStatus(cmd.Context(), a, es)
		},
	}
	cmd := group("migrate", "Migrate the schema (up, down, to, force, status)", up, down, to, force, status)
	cmd.PersistentFlags().BoolVar(&allowShared, "allow-shared-schema", false,
		"migrate a schema mire did not create (public, or one holding other objects)")
	for _, c := range []*cobra.Command{down, to, force} {
		c.Flags().BoolVar(&yes, "yes", false, "confirm: reverting drops tables and the events in them")
	}
	return cmd
}

// migrateTo migrates es to version, refusing to go down without yes.
func migrateTo(ctx context.Context, a *app, es *store.EventStore, version uint, yes bool) error {
	current, _, err := es.MigrationVersion(ctx)
	if err != nil {
		return err
	}
	if version < current && !yes {
		var reverted []string
		for _, m := range embeddedMigrations() {
			if m.Version > version && m.Version <= current {
				reverted = append(reverted, m.file())
			}
		}
		return usageErrorf("migrating schema %s down from %d to %d reverts %s, dropping what they hold: pass --yes",
			es.Schema(), current, version, strings.Join(reverted, ", "))
	}
	if version == 0 {
		return migrateAndReport(ctx, a, es, "down", es.MigrateDown)
	}
	return migrateAndReport(ctx, a, es, "to", func(ctx context.Context) error { return es.MigrateTo(ctx, version) })
}

// migrationResult is what a migrate command did.
type migrationResult struct {
	Schema string `json:"schema"`
	Action string `json:"action"`
	From   uint   `json:"from_version"`
	To     uint   `json:"to_version"`
	Dirty  bool   `json:"dirty"`
}

func migrateAndReport(ctx context.Context, a *app, es *store.EventStore, action string, migrate func(context.Context) error) error {
	from, _, err := es.MigrationVersion(ctx)
	if err != nil {
		return err
	}
	if err := migrate(ctx); err != nil {
		return err
	}
	to, dirty, err := es.MigrationVersion(ctx)
	if err != nil {
		return err
	}
	result := migrationResult{Schema: es.Schema(), Action: action, From: from, To: to, Dirty: dirty}
	if a.json {
		return writeJSON(a.stdout, result)
	}
	switch {
	case action == "force":
		fmt.Fprintf(a.stdout, "schema %s: migration version recorded as %d (was %d)\n", es.Schema(), to, from)
	case from == to:
		fmt.Fprintf(a.stdout, "schema %s: at version %d, nothing to do\n", es.Schema(), to)
	default:
		fmt.Fprintf(a.stdout, "schema %s: migrated from version %d to %d\n", es.Schema(), from, to)
	}
	return nil
}

// embeddedMigration is one migration this binary carries.
type embeddedMigration struct {
	Version    uint   `json:"version"`
	Name       string `json:"name"`
	Applied    bool   `json:"applied"`
	UpSHA256   string `json:"up_sha256"`
	DownSHA256 string `json:"down_sha256"`
}

func (m embeddedMigration) file() string { return fmt.Sprintf("%06d_%s", m.Version, m.Name) }

// embeddedMigrations lists the schema module's migrations in order, with
// the SHA-256 of each file, as sha256sum prints it.
func embeddedMigrations() []embeddedMigration {
	files, err := fs.Glob(schema.Migrations, schema.MigrationsDir+"/*.sql")
	if err != nil {
		panic(err) // the pattern is valid
	}
	byVersion := map[uint]*embeddedMigration{}
	for _, file := range files {
		base := path.Base(file)
		prefix, rest, _ := strings.Cut(base, "_")
		version, err := strconv.ParseUint(prefix, 10, 32)
		if err != nil {
			continue // schema's own tests keep the names right
		}
		m := byVersion[uint(version)]
		if m == nil {
			m = &embeddedMigration{Version: uint(version)}
			byVersion[uint(version)] = m
		}
		content, err := fs.ReadFile(schema.Migrations, file)
		if err != nil {
			panic(err) // embedded: it is there
		}
		sum := sha256.Sum256(content)
		switch {
		case strings.HasSuffix(rest, ".up.sql"):
			m.Name, m.UpSHA256 = strings.TrimSuffix(rest, ".up.sql"), hex.EncodeToString(sum[:])
		case strings.HasSuffix(rest, ".down.sql"):
			m.DownSHA256 = hex.EncodeToString(sum[:])
		}
	}
	out := make([]embeddedMigration, 0, len(byVersion))
	for _, m := range byVersion {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out
}

// migrationStatus is `mire migrate status`.
type migrationStatus struct {
	Schema     string              `json:"schema"`
	Version    uint                `json:"version"`
	Dirty      bool                `json:"dirty"`
	Latest     uint                `json:"latest"`
	Pending    int                 `json:"pending"`
	Migrations []embeddedMigration `json:"migrations"`
}

func migrateStatus(ctx context.Context, a *app, es *store.EventStore) error {
	version, dirty, err := es.MigrationVersion(ctx)
	if err != nil {
		return err
	}
	s := migrationStatus{Schema: es.Schema(), Version: version, Dirty: dirty, Latest: schema.LatestVersion(),
		Migrations: embeddedMigrations()}
	for i := range s.Migrations {
		s.Migrations[i].Applied = s.Migrations[i].Version <= version
		if !s.Migrations[i].Applied {
			s.Pending++
		}
	}
	if a.json {
		return writeJSON(a.stdout, s)
	}
	w := a.stdout
	state := "clean"
	if dirty {
		state = "DIRTY: a migration to it failed part way; 'mire migrate up' resolves it or says what to do"
	}
	fmt.Fprintf(w, "schema %s: version %d (%s); this mire has migrations up to %d", s.Schema, version, state, s.Latest)
	switch {
	case version > s.Latest:
		fmt.Fprintf(w, "; the schema is AHEAD of this mire\n")
	case s.Pending > 0:
		fmt.Fprintf(w, "; %d pending: run 'mire migrate up'\n", s.Pending)
	default:
		fmt.Fprintf(w, "; up to date\n")
	}
	fmt.Fprintln(w)
	t := newTable(w)
	fmt.Fprintln(t, "VERSION\tNAME\tSTATE\tUP SHA-256\tDOWN SHA-256")
	for _, m := range s.Migrations {
		state := "applied"
		if !m.Applied {
			state = "pending"
		}
		fmt.Fprintf(t, "%d\t%s\t%s\t%s\t%s\n", m.Version, m.Name, state, m.UpSHA256[:16], m.DownSHA256[:16])
	}
	return t.Flush()
}
