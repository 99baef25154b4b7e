package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/runner"
	"github.com/mire-go/mire/saga"
	"github.com/mire-go/mire/store"
)

// Exit codes; see the package documentation.
const (
	exitOK       = 0
	exitError    = 1
	exitUsage    = 2
	exitFindings = 3
	exitNotFound = 4
)

// connectTimeoutDefault bounds connecting when the URL sets no
// connect_timeout.
const connectTimeoutDefault = 10 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{stdout: stdout, stderr: stderr, getenv: getenv}
	defer a.close()
	root := newRootCommand(a)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	if !errors.Is(err, errFindings) {
		// The library's errors start with "mire: " already.
		fmt.Fprintf(stderr, "mire: %s\n", strings.TrimPrefix(err.Error(), "mire: "))
		if hint := hintFor(err); hint != "" {
			fmt.Fprintf(stderr, "mire: %s\n", hint)
		}
		if code == exitUsage {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", commandPath(root, args))
		}
	}
	return code
}

// app holds the global flags and the connection, opened on first use.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string

	databaseURL string
	schema      string
	json        bool
	verbose     bool

	pool *pgxpool.Pool
	es   *store.EventStore
}

// store returns the event store on the configured database and schema.
func (a *app) store(ctx context.Context) (*store.EventStore, error) {
	return a.storeWith(ctx, nil)
}

// storeWith is store with config's other fields (Schema and Logger are
// the app's); the first call decides them.
func (a *app) storeWith(ctx context.Context, config *store.Config) (*store.EventStore, error) {
	if a.es != nil {
		return a.es, nil
	}
	url := cmp.Or(a.databaseURL, a.getenv("DATABASE_URL"))
	if url == "" {
		return nil, usageErrorf("no database: set DATABASE_URL or pass --database-url")
	}
	poolConfig, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, usageErrorf("--database-url: %v", err)
	}
	if poolConfig.ConnConfig.ConnectTimeout == 0 {
		poolConfig.ConnConfig.ConnectTimeout = connectTimeoutDefault
	}
	pool, err := pgxpool.NewWithConfig(ctx, poolConfig)
	if err != nil {
		return nil, fmt.Errorf("error connecting: %w", err)
	}
	var c store.Config
	if config != nil {
		c = *config
	}
	c.Schema = a.schema
	c.Logger = a.logger()
	es, err := store.New(pool, &c)
	if err != nil {
		pool.Close()
		return nil, err
	}
	a.pool, a.es = pool, es
	return es, nil
}

// control returns the runner's operations handle on the store.
func (a *app) control(ctx context.Context) (*runner.Control, *store.EventStore, error) {
	es, err := a.store(ctx)
	if err != nil {
		return nil, nil, err
	}
	return runner.NewControl(es), es, nil
}

// logger writes the library's diagnostics to stderr: warnings, and with
// --verbose everything.
func (a *app) logger() *slog.Logger {
	level := slog.LevelWarn
	if a.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
}

func (a *app) close() {
	if a.es != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = a.es.Close(ctx) // waits for grouped appends; the CLI appends nothing
	}
	if a.pool != nil {
		a.pool.Close()
	}
}

func newRootCommand(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "mire",
		Short: "Operate a mire event store",
		Long: `mire operates a mire event store in PostgreSQL: migrations, status, reading
the log, subscriptions and parked streams, sagas, checks and the sequencer.

The connection comes from DATABASE_URL or --database-url, the schema from
--schema. Read commands print aligned tables for people, or JSON with --json.

Exit codes: 0 success; 1 error; 2 usage (unknown command or flag, wrong
arguments, a missing --yes); 3 verify found problems; 4 the stream,
subscription, parked stream or saga named does not exist.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	root.CompletionOptions.HiddenDefaultCmd = true
	flags := root.PersistentFlags()
	flags.StringVar(&a.databaseURL, "database-url", "", "PostgreSQL connection `URL` (default $DATABASE_URL)")
	flags.StringVar(&a.schema, "schema", store.SchemaDefault, "the store's PostgreSQL `schema`")
	flags.BoolVar(&a.json, "json", false, "print JSON instead of tables")
	flags.BoolVarP(&a.verbose, "verbose", "v", false, "log the library's diagnostics to stderr")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })

	root.AddCommand(
		newMigrateCommand(a),
		newStatusCommand(a),
		newTailCommand(a),
		newStreamCommand(a),
		newStreamsCommand(a),
		newSubscriptionCommand(a),
		newParkedCommand(a),
		newVerifyCommand(a),
		newSequenceCommand(a),
		newSagaCommand(a),
		newRoleCommand(a),
	)
	return root
}

// group returns a command that only holds subcommands.
func group(use, short string, subcommands ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageErrorf("%s needs a subcommand: %s", cmd.CommandPath(), subcommandNames(cmd))
		},
	}
	cmd.AddCommand(subcommands...)
	return cmd
}

func subcommandNames(cmd *cobra.Command) string {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	return strings.Join(names, ", ")
}

// commandPath names the command args ran, or would have, for the usage
// hint.
func commandPath(root *cobra.Command, args []string) string {
	cmd, _, err := root.Find(args)
	if err != nil {
		return root.CommandPath()
	}
	return cmd.CommandPath()
}

// Argument checks that fail as usage errors.

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		if cmd.HasSubCommands() {
			return usageErrorf("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return usageErrorf("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usageErrorf("%s needs %s, got %d argument(s)", cmd.CommandPath(), strings.Join(names, " and "), len(args))
		}
		return nil
	}
}

func rangeArgs(lo, hi int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return usageErrorf("%s takes %s, got %d argument(s)", cmd.CommandPath(), names, len(args))
		}
		return nil
	}
}

// Errors and exit codes.

// usageError is a command line the command cannot run: exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// notFoundError is a named thing that does not exist: exit 4.
type notFoundError struct{ err error }

func (e notFoundError) Error() string { return e.err.Error() }
func (e notFoundError) Unwrap() error { return e.err }

func notFoundErrorf(format string, args ...any) error {
	return notFoundError{fmt.Errorf(format, args...)}
}

// errFindings is returned by verify after it reported its findings: exit 3.
var errFindings = errors.New("verify found problems")

func exitCode(err error) int {
	var usage usageError
	var notFound notFoundError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errFindings):
		return exitFindings
	case errors.As(err, &usage), errors.Is(err, core.ErrInvalidInput):
		return exitUsage
	case errors.As(err, &notFound), errors.Is(err, runner.ErrUnknownSubscription), errors.Is(err, core.ErrStreamNotFound),
		errors.Is(err, saga.ErrNotFound):
		return exitNotFound
	case strings.HasPrefix(err.Error(), "unknown command "), strings.HasPrefix(err.Error(), "unknown flag"):
		return exitUsage // cobra's own, before any check of ours runs
	}
	return exitError
}

// hintFor suggests what to do about err, when there is an obvious step.
func hintFor(err error) string {
	var schemaVersion *core.SchemaVersionError
	switch {
	case errors.As(err, &schemaVersion) && schemaVersion.Dirty:
		return "a migration failed part way: see 'mire migrate status' and 'mire migrate up'"
	case errors.Is(err, core.ErrSchemaNotMigrated):
		return "the schema is behind this mire: run 'mire migrate up' (as the schema's owner)"
	case errors.As(err, &schemaVersion):
		return "the schema is ahead of this mire: use the mire built with the migrations it has"
	case isPermissionDenied(err):
		return "the role lacks a privilege: run this as the schema's owner (see docs/runtime-role.md)"
	}
	return ""
}

func isPermissionDenied(err error) bool {
	kind, ok := core.DBKind(err)
	return ok && kind == core.DBPermissionDenied
}
