package integration_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/runner"
	"github.com/mire-go/mire/store"
)

// The mire command (cmd/mire), built once per test run and run against
// each test's own schema: its output, --json parsed back, and its exit
// codes.

var mireCLI struct {
	once      sync.Once
	dir, path string
	err       error
}

// mireBinary builds the command once, with the race detector when the
// tests have it, and returns its path.
func mireBinary(t *testing.T) string {
	t.Helper()
	mireCLI.once.Do(func() {
		mireCLI.dir, mireCLI.err = os.MkdirTemp("", "mire-cli-")
		if mireCLI.err != nil {
			return
		}
		mireCLI.path = filepath.Join(mireCLI.dir, "mire")
		args := []string{"build"}
		if raceEnabled {
			args = append(args, "-race")
		}
		build := exec.Command("go", append(args, "-o", mireCLI.path, ".")...)
		build.Dir = filepath.Join("..", "cmd", "mire")
		if out, err := build.CombinedOutput(); err != nil {
			mireCLI.err = fmt.Errorf("go build of cmd/mire: %w\n%s", err, out)
		}
	})
	if mireCLI.err != nil {
		t.Fatal(mireCLI.err)
	}
	return mireCLI.path
}

// removeMireBinary removes what mireBinary built; TestMain calls it.
func removeMireBinary() {
	if mireCLI.dir != "" {
		_ = os.RemoveAll(mireCLI.dir) // a temporary directory
	}
}

type mireResult struct {
	stdout, stderr string
	code           int
}

// mireCommand is the command line args against es's schema, connected by
// DATABASE_URL (url, or the test server's).
func mireCommand(ctx context.Context, t *testing.T, es *store.EventStore, url string, args ...string) *exec.Cmd {
	t.Helper()
	if url == "" {
		url = pgenv.URL(t)
	}
	if es != nil {
		args = append([]string{"--schema", es.Schema()}, args...)
	}
	cmd := exec.CommandContext(ctx, mireBinary(t), args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+url)
	if raceEnabled && os.Getenv("GORACE") == "" {
		// A race report makes the command exit with 66, failing the test;
		// without this the race runtime waits a second at every exit.
		cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=50")
	}
	return cmd
}

// runMire runs mire to the end.
func runMire(t *testing.T, es *store.EventStore, args ...string) mireResult {
	t.Helper()
	return runMireAs(t, es, "", args...)
}

func runMireAs(t *testing.T, es *store.EventStore, url string, args ...string) mireResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := mireCommand(ctx, t, es, url, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := mireResult{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
	if err != nil && r.code < 0 {
		t.Fatalf("mire %q: %v\nstderr: %s", args, err, r.stderr)
	}
	return r
}

// mireOK runs mire and fails t unless it exits with 0.
func mireOK(t *testing.T, es *store.EventStore, args ...string) mireResult {
	t.Helper()
	r := runMire(t, es, args...)
	if r.code != 0 {
		t.Fatalf("mire %q exited with %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

// mireJSON runs mire with --json, expecting exit code code, and decodes
// its output into v.
func mireJSON(t *testing.T, es *store.EventStore, v any, code int, args ...string) mireResult {
	t.Helper()
	r := runMire(t, es, append([]string{"--json"}, args...)...)
	if r.code != code {
		t.Fatalf("mire --json %q exited with %d, want %d\nstdout: %s\nstderr: %s", args, r.code, code, r.stdout, r.stderr)
	}
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("mire --json %q: %v\n%s", args, err, r.stdout)
	}
	return r
}

// mireProcess is mire running in the background (tail -f, sequence).
type mireProcess struct {
	cmd    *exec.Cmd
	lines  chan string // stdout, line by line
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan struct{}
}

func startMire(t *testing.T, es *store.EventStore, args ...string) *mireProcess {
	t.Helper()
	p := &mireProcess{lines: make(chan string, 1000), done: make(chan struct{})}
	p.cmd = mireCommand(context.Background(), t, es, "", args...)
	p.cmd.Stderr = writerFunc(func(b []byte) (int, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.stderr.Write(b)
	})
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			p.lines <- scanner.Text()
		}
		_ = p.cmd.Wait() // the exit code is read from ProcessState
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill() // a test that failed before stopping it
			<-p.done
		}
	})
	return p
}

func (p *mireProcess) stderrText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// waitStderr waits until stderr contains want.
func (p *mireProcess) waitStderr(t *testing.T, want string) {
	t.Helper()
	eventually(t, 60*time.Second, fmt.Sprintf("mire writes %q to stderr", want), func() bool {
		return strings.Contains(p.stderrText(), want)
	})
}

// readLines reads n lines of stdout.
func (p *mireProcess) readLines(t *testing.T, n int) []string {
	t.Helper()
	var lines []string
	timeout := time.After(30 * time.Second)
	for len(lines) < n {
		select {
		case line := <-p.lines:
			lines = append(lines, line)
		case <-timeout:
			t.Fatalf("read %d lines of %d: %q\nstderr: %s", len(lines), n, lines, p.stderrText())
		}
	}
	return lines
}

// interrupt sends SIGINT and returns the exit code.
func (p *mireProcess) interrupt(t *testing.T) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("mire did not stop on SIGINT\nstderr: %s", p.stderrText())
	}
	return p.cmd.ProcessState.ExitCode()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// exec runs sql on the test server as the superuser: what the runtime role
// may not do, to break a store on purpose.
func superuserExec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := pgenv.Pool(t).Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func TestCLIUsageAndExitCodes(t *testing.T) {
	t.Parallel()
	es := pgenv.NewStore(t, nil, nil)
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"help", nil, 0, ""},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"unknown flag", []string{"status", "--frobnicate"}, 2, "unknown flag: --frobnicate"},
		{"group without subcommand", []string{"migrate"}, 2, "needs a subcommand"},
		{"missing argument", []string{"stream", "show"}, 2, "needs STREAM"},
		{"extra argument", []string{"status", "now"}, 2, "takes no arguments"},
		{"down without --yes", []string{"migrate", "down", "1"}, 2, "pass --yes"},
		{"skip without reason", []string{"parked", "skip", "balances", "account-1"}, 2, "needs --reason"},
		{"reset without --to", []string{"subscription", "reset", "balances"}, 2, "needs --to"},
		{"unknown stream", []string{"stream", "show", "account-404"}, 4, `stream "account-404" has no events`},
		{"unknown subscription", []string{"subscription", "pause", "nope"}, 4, "unknown subscription"},
		{"not parked", []string{"parked", "retry", "nope", "account-1"}, 4, "is not parked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runMire(t, es, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("mire %q: exit %d, stderr %q; want exit %d and %q", tc.args, r.code, r.stderr, tc.code, tc.stderr)
			}
		})
	}
	t.Run("no database", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, mireBinary(t), "status")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
		out, _ := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), "DATABASE_URL") {
			t.Errorf("without a database: exit %d, %q; want 2 naming DATABASE_URL", code, out)
		}
	})
	t.Run("database refuses", func(t *testing.T) {
		t.Parallel()
		r := runMireAs(t, nil, "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2", "status")
		if r.code != 1 {
			t.Errorf("unreachable server: exit %d, stderr %q; want 1", r.code, r.stderr)
		}
	})
}

func TestCLIMigrate(t *testing.T) {
	t.Parallel()
	es, err := store.New(pgenv.Pool(t), &store.Config{Schema: pgenv.NewSchemaName(t)})
	if err != nil {
		t.Fatal(err)
	}
	type migration struct {
		Version    uint   `json:"version"`
		Name       string `json:"name"`
		Applied    bool   `json:"applied"`
		UpSHA256   string `json:"up_sha256"`
		DownSHA256 string `json:"down_sha256"`
	}
	type status struct {
		Schema     string      `json:"schema"`
		Version    uint        `json:"version"`
		Dirty      bool        `json:"dirty"`
		Latest     uint        `json:"latest"`
		Pending    int         `json:"pending"`
		Migrations []migration `json:"migrations"`
	}
	var before status
	mireJSON(t, es, &before, 0, "migrate", "status")
	if before.Version != 0 || before.Latest < 6 || before.Pending != int(before.Latest) || len(before.Migrations) != int(before.Latest) {
		t.Fatalf("status of a new schema = %+v", before)
	}
	// The checksums are those pinned in the repository.
	pinned := map[string]string{}
	sums, err := os.ReadFile(filepath.Join("..", "schema", "migrations.sha256"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(sums)) {
		sum, file, _ := strings.Cut(strings.TrimSpace(line), "  ")
		pinned[file] = sum
	}
	for _, m := range before.Migrations {
		base := fmt.Sprintf("%06d_%s", m.Version, m.Name)
		if m.UpSHA256 != pinned[base+".up.sql"] || m.DownSHA256 != pinned[base+".down.sql"] {
			t.Errorf("migration %s: checksums %s, %s; pinned %s, %s", base, m.UpSHA256, m.DownSHA256,
				pinned[base+".up.sql"], pinned[base+".down.sql"])
		}
	}

	r := mireOK(t, es, "migrate", "up")
	if want := fmt.Sprintf("migrated from version 0 to %d", before.Latest); !strings.Contains(r.stdout, want) {
		t.Errorf("migrate up: %q, want %q", r.stdout, want)
	}
	if r := mireOK(t, es, "migrate", "up"); !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("migrate up again: %q", r.stdout)
	}
	secondLast := before.Migrations[len(before.Migrations)-2]
	if r := runMire(t, es, "migrate", "down", "2"); r.code != 2 ||
		!strings.Contains(r.stderr, fmt.Sprintf("%06d_%s", secondLast.Version, secondLast.Name)) {
		t.Errorf("migrate down without --yes: exit %d, %q; want 2 naming what it reverts", r.code, r.stderr)
	}
	var down struct {
		From uint `json:"from_version"`
		To   uint `json:"to_version"`
	}
	mireJSON(t, es, &down, 0, "migrate", "down", "2", "--yes")
	if down.From != before.Latest || down.To != before.Latest-2 {
		t.Errorf("migrate down 2: %+v", down)
	}
	var mid status
	r = mireJSON(t, es, &mid, 0, "migrate", "status")
	if mid.Version != before.Latest-2 || mid.Pending != 2 || !mid.Migrations[0].Applied || mid.Migrations[len(mid.Migrations)-1].Applied {
		t.Errorf("status after down 2 = %s", r.stdout)
	}
	// Commands that need the current schema refuse an old one and say why.
	if r := runMire(t, es, "status"); r.code != 1 || !strings.Contains(r.stderr, "mire migrate up") {
		t.Errorf("status on an old schema: exit %d, %q", r.code, r.stderr)
	}
	mireOK(t, es, "migrate", "to", fmt.Sprint(before.Latest))
	human := mireOK(t, es, "migrate", "status").stdout
	if !strings.Contains(human, "up to date") || !regexp.MustCompile(`(?m)^1\s+event_store\s+applied\s+[0-9a-f]{16}`).MatchString(human) {
		t.Errorf("migrate status:\n%s", human)
	}
}

// cliStatus is `mire status --json`.
type cliStatus struct {
	Schema string `json:"schema"`
	Log    struct {
		Head                int64      `json:"head"`
		Unsequenced         *int64     `json:"unsequenced"`
		OldestUnsequencedAt *time.Time `json:"oldest_unsequenced_at"`
		UnsequencedError    string     `json:"unsequenced_error"`
	} `json:"log"`
	Subscriptions []struct {
		Subscription   string     `json:"subscription"`
		Partition      int        `json:"partition"`
		Partitions     int        `json:"partitions"`
		Leader         string     `json:"leader"`
		LeaseExpiresAt *time.Time `json:"lease_expires_at"`
		FenceToken     int64      `json:"fence_token"`
		Checkpoint     int64      `json:"checkpoint"`
		Lag            int64      `json:"lag"`
		State          string     `json:"state"`
		ParkedStreams  int        `json:"parked_streams"`
		LastError      string     `json:"last_error"`
	} `json:"subscriptions"`
}

func TestCLIStatusAndSequence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	for i := range 5 {
		appendDeposit(t, es, fmt.Sprintf("account-%d", i%2), int64(i))
	}
	// Appended, not yet numbered: nothing sequences here.
	var s cliStatus
	mireJSON(t, es, &s, 0, "status")
	if s.Schema != es.Schema() || s.Log.Head != 0 || s.Log.Unsequenced == nil || *s.Log.Unsequenced != 5 ||
		s.Log.OldestUnsequencedAt == nil || len(s.Subscriptions) != 0 {
		t.Fatalf("status before sequencing = %+v", s)
	}
	if r := mireOK(t, es, "status"); !strings.Contains(r.stdout, "unsequenced: 5 events, the oldest recorded") {
		t.Errorf("status:\n%s", r.stdout)
	}

	var once struct {
		Assigned int64 `json:"assigned"`
		Head     int64 `json:"head"`
	}
	mireJSON(t, es, &once, 0, "sequence", "--once")
	if once.Assigned != 5 || once.Head != 5 {
		t.Errorf("sequence --once = %+v, want 5 assigned, head 5", once)
	}

	// Continuously, until interrupted.
	p := startMire(t, es, "sequence", "--interval", "10ms", "--report-interval", "50ms")
	p.waitStderr(t, "Ctrl-C stops")
	for i := range 3 {
		appendDeposit(t, es, "account-9", int64(i))
	}
	eventually(t, 30*time.Second, "the command's sequencer numbers the events", func() bool {
		head, err := es.Head(ctx)
		return err == nil && head == 8
	})
	// Reports count what was numbered since the last one: the three events
	// may come in more than one.
	p.waitStderr(t, "head 8 (+")
	if code := p.interrupt(t); code != 0 || !strings.Contains(p.stderrText(), "stopped; head 8 (+3 since start)") {
		t.Errorf("sequence: exit %d, stderr %q", code, p.stderrText())
	}

	// A subscription's partitions, as its runner leaves them.
	model := newBalances(t, es)
	r := startRunner(t, es, fastRunner("worker-a"), runner.Subscription{Name: "balances", Category: "account",
		Partitions: 2, TxHandler: model.handler()})
	waitFor(t, r, "balances", appendDeposit(t, es, "account-1", 1))
	eventually(t, 30*time.Second, "both partitions are led and caught up", func() bool {
		s = cliStatus{}
		mireJSON(t, es, &s, 0, "status")
		for _, sub := range s.Subscriptions {
			if sub.Leader == "" || sub.Lag != 0 {
				return false
			}
		}
		return len(s.Subscriptions) == 2
	})
	for i, sub := range s.Subscriptions {
		if sub.Subscription != "balances" || sub.Partition != i || sub.Partitions != 2 || sub.Leader != "worker-a" ||
			sub.FenceToken < 1 || sub.LeaseExpiresAt == nil || sub.Checkpoint != 9 || sub.State != "running" {
			t.Errorf("partition %d: %+v", i, sub)
		}
	}
	human := mireOK(t, es, "status").stdout
	for _, want := range []string{"head 9", "unsequenced: none", "SUBSCRIPTION  PARTITION  STATE", "balances      0/2        running  worker-a"} {
		if !strings.Contains(human, want) {
			t.Errorf("status lacks %q:\n%s", want, human)
		}
	}

	// Pause and resume, seen in the status.
	mireOK(t, es, "subscription", "pause", "balances", "--partition", "1")
	mireJSON(t, es, &s, 0, "status")
	if s.Subscriptions[0].State != "running" || s.Subscriptions[1].State != "paused" {
		t.Errorf("after pausing partition 1: %+v", s.Subscriptions)
	}
	var resumed struct {
		Subscription string `json:"subscription"`
		Action       string `json:"action"`
		Partition    *int   `json:"partition"`
	}
	mireJSON(t, es, &resumed, 0, "subscription", "resume", "balances")
	if resumed.Subscription != "balances" || resumed.Action != "resumed" || resumed.Partition != nil {
		t.Errorf("resume: %+v", resumed)
	}
	mireJSON(t, es, &s, 0, "status")
	if s.Subscriptions[1].State != "running" {
		t.Errorf("after resuming: %+v", s.Subscriptions)
	}
}

// As the runtime role, status shows everything but the sequencer's
// backlog, which only the owner may read.
func TestCLIStatusAsRuntimeRole(t *testing.T) {
	t.Parallel()
	owner, _, role, _ := runtimeStore(t, 2)
	u, err := url.Parse(pgenv.URL(t))
	if err != nil || !strings.HasPrefix(u.Scheme, "postgres") {
		t.Fatalf("the test server's URL %q is not a URL to log in to as another role", pgenv.URL(t))
	}
	u.User = url.UserPassword(role, role)
	appendDeposit(t, owner, "account-1", 1)
	r := runMireAs(t, owner, u.String(), "--json", "status")
	var s cliStatus
	if err := json.Unmarshal([]byte(r.stdout), &s); r.code != 0 || err != nil {
		t.Fatalf("status as %s: exit %d, %v\n%s%s", role, r.code, err, r.stdout, r.stderr)
	}
	if s.Log.Unsequenced != nil || !strings.Contains(s.Log.UnsequencedError, "owner") {
		t.Errorf("status as the runtime role: %+v", s.Log)
	}
	// verify reads what the runtime role may read.
	if r := runMireAs(t, owner, u.String(), "verify", "-q"); r.code != 0 {
		t.Errorf("verify as the runtime role: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The sagas' index: read, and updated by a retry (none to retry here).
	if r := runMireAs(t, owner, u.String(), "saga", "list"); r.code != 0 || r.stdout != "no sagas\n" {
		t.Errorf("saga list as the runtime role: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runMireAs(t, owner, u.String(), "saga", "retry", "order", "o-1"); r.code != 4 {
		t.Errorf("saga retry as the runtime role: exit %d, want 4 (no such saga)\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestCLIStreams(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	correlation := uuid.New()
	e := core.NewEvent(Opened{Owner: "ada"})
	e.Metadata.CorrelationID, e.Metadata.Headers = correlation, map[string]string{"user": "ada"}
	if _, err := es.Append(ctx, "account-1", core.NoStream, e, core.NewEvent(Deposited{Amount: 10})); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"account-2", "account-3", "other-1", "accounts-1"} {
		appendDeposit(t, es, id, 5)
	}

	type stream struct {
		StreamID string `json:"stream_id"`
		Version  int64  `json:"version"`
		Events   int64  `json:"events"`
	}
	var listing struct {
		Streams   []stream `json:"streams"`
		NextAfter string   `json:"next_after"`
	}
	mireJSON(t, es, &listing, 0, "streams", "--category", "account")
	want := []stream{{"account-1", 2, 2}, {"account-2", 1, 1}, {"account-3", 1, 1}}
	if diff := cmp.Diff(want, listing.Streams); diff != "" || listing.NextAfter != "" {
		t.Errorf("streams --category account (-want +got):\n%s next_after %q", diff, listing.NextAfter)
	}
	// Paging: --limit stops and says where to go on.
	listing.Streams, listing.NextAfter = nil, ""
	mireJSON(t, es, &listing, 0, "streams", "--category", "account", "--limit", "2")
	if len(listing.Streams) != 2 || listing.NextAfter != "account-2" {
		t.Errorf("first page: %+v", listing)
	}
	listing.Streams, listing.NextAfter = nil, ""
	mireJSON(t, es, &listing, 0, "streams", "--category", "account", "--limit", "2", "--after", "account-2")
	if len(listing.Streams) != 1 || listing.Streams[0].StreamID != "account-3" || listing.NextAfter != "" {
		t.Errorf("second page: %+v", listing)
	}
	listing.Streams = nil
	mireJSON(t, es, &listing, 0, "streams")
	if len(listing.Streams) != 5 {
		t.Errorf("streams: %+v", listing.Streams)
	}
	if r := mireOK(t, es, "streams", "--category", "account"); !regexp.MustCompile(`(?m)^account-1\s+2\s+(now|\d+s ago)\s+(now|\d+s ago)$`).MatchString(r.stdout) {
		t.Errorf("streams:\n%s", r.stdout)
	}
	if r := mireOK(t, es, "streams", "--category", "none"); !strings.Contains(r.stdout, "no streams") {
		t.Errorf("streams of an empty category:\n%s", r.stdout)
	}

	if _, err := es.Sequence(ctx); err != nil {
		t.Fatal(err)
	}
	var shown struct {
		StreamID string `json:"stream_id"`
		Version  int64  `json:"version"`
		Events   []struct {
			GlobalPosition int64             `json:"global_position"`
			StreamVersion  int64             `json:"stream_version"`
			EventType      string            `json:"event_type"`
			EventID        string            `json:"event_id"`
			CorrelationID  string            `json:"correlation_id"`
			Headers        map[string]string `json:"headers"`
			Data           json.RawMessage   `json:"data"`
		} `json:"events"`
	}
	mireJSON(t, es, &shown, 0, "stream", "show", "account-1")
	if shown.StreamID != "account-1" || shown.Version != 2 || len(shown.Events) != 2 {
		t.Fatalf("stream show: %+v", shown)
	}
	first := shown.Events[0]
	if first.StreamVersion != 1 || first.GlobalPosition != 1 || first.EventType != "account.opened" || first.EventID == "" ||
		first.CorrelationID != correlation.String() || first.Headers["user"] != "ada" || string(first.Data) != `{"owner":"ada"}` {
		t.Errorf("first event: %+v", first)
	}
	r := mireOK(t, es, "stream", "show", "account-1", "--from-version", "2")
	for _, want := range []string{"stream account-1: version 2", "version 2  position 2  account.deposited", `data      {"amount":10}`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stream show lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "account.opened") {
		t.Errorf("stream show --from-version 2 shows version 1:\n%s", r.stdout)
	}
}

// cliEvent is an event as tail --json prints it.
type cliEvent struct {
	GlobalPosition int64  `json:"global_position"`
	StreamID       string `json:"stream_id"`
	StreamVersion  int64  `json:"stream_version"`
	EventType      string `json:"event_type"`
}

func parseEvents(t *testing.T, lines []string) []cliEvent {
	t.Helper()
	events := make([]cliEvent, 0, len(lines))
	for _, line := range lines {
		var e cliEvent
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		events = append(events, e)
	}
	return events
}

func TestCLITail(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	for i := range 6 {
		appendDeposit(t, es, fmt.Sprintf("account-%d", i%3), int64(i))
	}
	appendDeposit(t, es, "other-1", 1)
	if _, err := es.Append(ctx, "account-0", core.Any, core.NewEvent(Withdrawn{Amount: 1})); err != nil {
		t.Fatal(err)
	}
	if _, err := es.Sequence(ctx); err != nil {
		t.Fatal(err)
	}

	// The last -n events, oldest first.
	r := mireOK(t, es, "--json", "tail", "-n", "3")
	events := parseEvents(t, strings.Split(strings.TrimSpace(r.stdout), "\n"))
	if got := positions(events); !cmp.Equal(got, []int64{6, 7, 8}) {
		t.Errorf("tail -n 3: positions %v", got)
	}
	// From a position, of one category and type.
	r = mireOK(t, es, "--json", "tail", "--from", "2", "--category", "account", "--type", "account.deposited")
	events = parseEvents(t, strings.Split(strings.TrimSpace(r.stdout), "\n"))
	if got := positions(events); !cmp.Equal(got, []int64{2, 3, 4, 5, 6}) {
		t.Errorf("tail --from 2 --category account --type account.deposited: positions %v", got)
	}
	r = mireOK(t, es, "tail", "-n", "1")
	if !regexp.MustCompile(`^8  \d{4}-\d\d-\d\dT[0-9:.]+Z  account-0@3  account.withdrawn  \{"amount":1\}\n$`).MatchString(r.stdout) {
		t.Errorf("tail -n 1: %q", r.stdout)
	}

	// -f prints what is appended after it started, in order, and stops
	// on SIGINT with 0.
	p := startMire(t, es, "--json", "tail", "-f", "--category", "account", "--poll-interval", "200ms")
	p.waitStderr(t, "from position 9")
	var appended []int64
	for i := range 20 {
		id := fmt.Sprintf("account-%d", i%4)
		if i%5 == 4 {
			id = "other-2" // not printed
		}
		appendDeposit(t, es, id, int64(i))
		if i%3 == 0 {
			if _, err := es.Sequence(ctx); err != nil { // notifies
				t.Fatal(err)
			}
		}
		if id != "other-2" {
			appended = append(appended, int64(9+i))
		}
	}
	events = parseEvents(t, p.readLines(t, len(appended)))
	if got := positions(events); !cmp.Equal(got, appended) {
		t.Errorf("tail -f printed positions %v, want %v", got, appended)
	}
	if code := p.interrupt(t); code != 0 {
		t.Errorf("tail -f exited with %d on SIGINT\nstderr: %s", code, p.stderrText())
	}
}

func positions(events []cliEvent) []int64 {
	out := make([]int64, 0, len(events))
	for _, e := range events {
		out = append(out, e.GlobalPosition)
	}
	return out
}

// cliFinding is one finding of `mire verify --json`.
type cliFinding struct {
	Kind           string `json:"kind"`
	StreamID       string `json:"stream_id"`
	StreamVersion  int64  `json:"stream_version"`
	FromVersion    int64  `json:"from_version"`
	ToVersion      int64  `json:"to_version"`
	GlobalPosition int64  `json:"global_position"`
	FromPosition   int64  `json:"from_position"`
	ToPosition     int64  `json:"to_position"`
}

type cliVerify struct {
	OK            bool         `json:"ok"`
	Head          int64        `json:"head"`
	Streams       int64        `json:"streams"`
	Events        int64        `json:"events"`
	Positions     int64        `json:"positions"`
	Findings      []cliFinding `json:"findings"`
	FindingsTotal int          `json:"findings_total"`
}

func TestCLIVerify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	for i := range 30 {
		appendDeposit(t, es, fmt.Sprintf("account-%d", i%3), int64(i))
	}
	if _, err := es.Sequence(ctx); err != nil {
		t.Fatal(err)
	}
	var v cliVerify
	mireJSON(t, es, &v, 0, "verify")
	if !v.OK || v.Head != 30 || v.Streams != 3 || v.Events != 30 || v.Positions != 30 || len(v.Findings) != 0 {
		t.Fatalf("verify of a sound store: %+v", v)
	}
	r := mireOK(t, es, "verify", "--progress-interval", "1ms")
	if !strings.Contains(r.stdout, "3 streams, 30 events, 30 positions (head 30) checked in") || !strings.Contains(r.stdout, "no findings") ||
		!strings.Contains(r.stderr, "verify log [========================] 100% 30/30 positions") {
		t.Errorf("verify:\nstdout: %s\nstderr: %s", r.stdout, r.stderr)
	}

	// A broken stream: account-1's version 4 (position 11) deleted, which
	// also leaves its run in the log without its event.
	superuserExec(t, fmt.Sprintf(`DELETE FROM %s.events WHERE stream_id = 'account-1' AND stream_version = 4`, es.Schema()))
	// A gap in the log: position 20's run deleted (account-1 version 7),
	// and its event, an hour old, left without a position.
	superuserExec(t, fmt.Sprintf(`DELETE FROM %s.event_log WHERE global_position = 20`, es.Schema()))
	superuserExec(t, fmt.Sprintf(`UPDATE %s.events SET recorded_at = now() - interval '1 hour' WHERE stream_id = 'account-1' AND stream_version = 7`, es.Schema()))
	// A run that disagrees with its events' category.
	superuserExec(t, fmt.Sprintf(`UPDATE %s.event_log SET category = 'acount' WHERE global_position = 25`, es.Schema()))

	v = cliVerify{}
	mireJSON(t, es, &v, 3, "verify")
	want := []cliFinding{
		{Kind: "version_gap", StreamID: "account-1", FromVersion: 4, ToVersion: 4},
		{Kind: "unsequenced", StreamID: "account-1", StreamVersion: 7},
		{Kind: "log_without_event", StreamID: "account-1", FromVersion: 4, ToVersion: 4, GlobalPosition: 11},
		{Kind: "position_gap", FromPosition: 20, ToPosition: 20},
		{Kind: "category_mismatch", StreamID: "account-0", StreamVersion: 9, GlobalPosition: 25},
	}
	if diff := cmp.Diff(want, v.Findings); diff != "" || v.OK || v.FindingsTotal != len(want) {
		t.Errorf("findings (-want +got):\n%s\n%+v", diff, v)
	}
	// For people: one line per finding, then the summary; exit 3.
	r = runMire(t, es, "verify", "-q")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 3 || len(lines) != len(want)+2 || r.stderr != "" ||
		!strings.Contains(r.stdout, `version_gap         stream "account-1": version 4 missing (the stream goes from 3 to 5)`) ||
		!strings.Contains(r.stdout, "position_gap        position 20 missing from the log (it goes from 19 to 21)") ||
		!strings.HasSuffix(lines[len(lines)-1], ": 5 findings") {
		t.Errorf("verify: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	// --max-findings lists fewer and counts all.
	v = cliVerify{}
	mireJSON(t, es, &v, 3, "verify", "--max-findings", "2")
	if len(v.Findings) != 2 || v.FindingsTotal != 5 {
		t.Errorf("--max-findings 2: %d listed of %d", len(v.Findings), v.FindingsTotal)
	}
	// A younger unsequenced event is not a finding until it is older than
	// --max-unsequenced-age.
	v = cliVerify{}
	superuserExec(t, fmt.Sprintf(`UPDATE %s.events SET recorded_at = now() - interval '10 seconds' WHERE stream_id = 'account-1' AND stream_version = 7`, es.Schema()))
	mireJSON(t, es, &v, 3, "verify")
	if v.FindingsTotal != 4 {
		t.Errorf("with a 10s old unsequenced event: %d findings, want 4: %+v", v.FindingsTotal, v.Findings)
	}
	v = cliVerify{}
	mireJSON(t, es, &v, 3, "verify", "--max-unsequenced-age", "5s")
	if v.FindingsTotal != 5 {
		t.Errorf("with --max-unsequenced-age 5s: %d findings, want 5: %+v", v.FindingsTotal, v.Findings)
	}
}

// The log's runs checked against each other: a batch is one run, and
// verify finds runs that number another run's events again, that start
// inside the run before them, or whose bucket is not their stream's.
func TestCLIVerifyRuns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	for stream, n := range map[string]int{"account-a": 5, "account-b": 3} {
		batch := make([]core.Event, n)
		for i := range batch {
			batch[i] = core.NewEvent(Deposited{Amount: int64(i)})
		}
		if _, err := es.Append(ctx, stream, core.NoStream, batch...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := es.Sequence(ctx); err != nil {
		t.Fatal(err)
	}
	var runs int
	if err := pgenv.Pool(t).QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s.event_log", es.Schema())).Scan(&runs); err != nil || runs != 2 {
		t.Fatalf("two batches make %d runs (%v), want 2", runs, err)
	}
	var v cliVerify
	mireJSON(t, es, &v, 0, "verify")
	if !v.OK || v.Head != 8 || v.Events != 8 || v.Positions != 8 {
		t.Fatalf("verify of a sound store: %+v", v)
	}
	var first string
	if err := pgenv.Pool(t).QueryRow(ctx, fmt.Sprintf("SELECT stream_id FROM %s.event_log WHERE global_position = 1", es.Schema())).Scan(&first); err != nil {
		t.Fatal(err)
	}
	second := map[string]string{"account-a": "account-b", "account-b": "account-a"}[first]
	firstCount := map[string]int64{"account-a": 5, "account-b": 3}[first]

	// The second batch's run with a bucket its stream id does not hash to.
	superuserExec(t, fmt.Sprintf(`UPDATE %s.event_log SET bucket = (bucket + 1) %% 1024 WHERE global_position = %d`,
		es.Schema(), firstCount+1))
	// After the head, a run numbering the first stream's version 2 onward
	// again, and a run of a stream without events starting inside it.
	superuserExec(t, fmt.Sprintf(`INSERT INTO %[1]s.event_log (global_position, event_count, stream_id, first_version, category, bucket)
		SELECT 9, 2, stream_id, 2, category, bucket FROM %[1]s.event_log WHERE global_position = 1
		UNION ALL SELECT 10, 1, 'account-none', 1, 'account', 0`, es.Schema()))

	v = cliVerify{}
	mireJSON(t, es, &v, 3, "verify")
	want := []cliFinding{
		{Kind: "bucket_mismatch", StreamID: second, StreamVersion: 1, GlobalPosition: firstCount + 1},
		{Kind: "event_logged_twice", StreamID: first, StreamVersion: 2, GlobalPosition: 9, FromPosition: 2},
		{Kind: "position_taken", GlobalPosition: 10, FromPosition: 10, ToPosition: 10},
		{Kind: "log_without_event", StreamID: "account-none", FromVersion: 1, ToVersion: 1, GlobalPosition: 10},
	}
	if diff := cmp.Diff(want, v.Findings); diff != "" || v.OK || v.Head != 10 {
		t.Errorf("findings (-want +got):\n%s\n%+v", diff, v)
	}
}

// newBalancesTable is newBalances with a table of another name, for a
// second read model in one schema.
func newBalancesTable(t *testing.T, es *store.EventStore, name string) *balances {
	t.Helper()
	b := &balances{es: es, table: pgx.Identifier{es.Schema(), name}.Sanitize()}
	superuserExec(t, fmt.Sprintf(`CREATE TABLE %s (account text PRIMARY KEY, balance bigint NOT NULL, events bigint NOT NULL, last_version bigint NOT NULL)`, b.table))
	return b
}

func (b *balances) rows(t *testing.T) map[string][2]int64 {
	t.Helper()
	rows, err := b.es.Pool().Query(context.Background(), fmt.Sprintf(`SELECT account, balance, events FROM %s`, b.table))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][2]int64{}
	for rows.Next() {
		var account string
		var balance, events int64
		if err := rows.Scan(&account, &balance, &events); err != nil {
			t.Fatal(err)
		}
		out[account] = [2]int64{balance, events}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// rebuild shows progress and leaves the read model as a fresh build: the
// same events handled once each.
func TestCLIRebuild(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	model := newBalances(t, es)
	fresh := newBalancesTable(t, es, "balances_fresh")
	var last *core.CommittedEvents
	for i := range 40 {
		events := make([]core.Event, 50)
		for j := range events {
			events[j] = core.NewEvent(Deposited{Amount: int64(i*50 + j)})
		}
		var err error
		if last, err = es.Append(ctx, fmt.Sprintf("account-%d", i%8), core.Any, events...); err != nil {
			t.Fatal(err)
		}
	}
	config := fastRunner("rebuilder")
	config.BatchSize = 20 // a replay long enough to watch
	r := startRunner(t, es, config,
		runner.Subscription{Name: "balances", Category: "account", Partitions: 2, TxHandler: model.handler()},
		runner.Subscription{Name: "fresh", Category: "account", TxHandler: fresh.handler()})
	waitFor(t, r, "balances", last)
	waitFor(t, r, "fresh", last)
	want := fresh.rows(t)
	if len(want) != 8 {
		t.Fatalf("fresh build: %v", want)
	}

	res := mireOK(t, es, "subscription", "rebuild", "balances", "--wait", "--truncate", es.Schema()+".balances",
		"--progress-interval", "20ms")
	if !strings.Contains(res.stdout, "balances: reached position 2,000, 2,000 events in") {
		t.Errorf("rebuild summary: %q", res.stdout)
	}
	progress := regexp.MustCompile(`(?m)^balances \[[= ]+\] +\d+% [\d,]+/2,000 events, ([\d,]+|-) events/s, (ETA \S+|done in \S+)$`)
	if lines := progress.FindAllString(res.stderr, -1); len(lines) < 2 || !strings.Contains(lines[len(lines)-1], "100% 2,000/2,000 events") {
		t.Errorf("rebuild progress:\n%s", res.stderr)
	}
	if diff := cmp.Diff(want, model.rows(t)); diff != "" {
		t.Errorf("rebuilt read model differs from a fresh build (-fresh +rebuilt):\n%s", diff)
	}

	// Again, with --json: the summary parsed back.
	var summary struct {
		Subscription    string  `json:"subscription"`
		Target          int64   `json:"target"`
		Checkpoint      int64   `json:"checkpoint"`
		Events          int64   `json:"events"`
		Done            bool    `json:"done"`
		EventsPerSecond float64 `json:"events_per_second"`
	}
	mireJSON(t, es, &summary, 0, "subscription", "rebuild", "balances", "--wait", "--truncate", es.Schema()+".balances")
	if summary.Subscription != "balances" || summary.Target != 2000 || summary.Checkpoint < 2000 || !summary.Done ||
		summary.Events != 2000 || summary.EventsPerSecond <= 0 {
		t.Errorf("rebuild --json: %+v", summary)
	}
	if diff := cmp.Diff(want, model.rows(t)); diff != "" {
		t.Errorf("read model after a second rebuild (-fresh +rebuilt):\n%s", diff)
	}

	// Without --wait it returns after the reset; wait then watches it.
	if res := mireOK(t, es, "subscription", "rebuild", "balances", "--truncate", es.Schema()+".balances"); !strings.Contains(res.stdout, "reset balances to 0") {
		t.Errorf("rebuild without --wait: %q", res.stdout)
	}
	mireOK(t, es, "subscription", "wait", "balances")
	if diff := cmp.Diff(want, model.rows(t)); diff != "" {
		t.Errorf("read model after rebuild and wait (-fresh +rebuilt):\n%s", diff)
	}

	// A reset to a position, seen in the status.
	if res := mireOK(t, es, "subscription", "reset", "fresh", "--to", "2000", "--partition", "0"); res.stdout != "reset to 2000 fresh (partition 0)\n" {
		t.Errorf("reset: %q", res.stdout)
	}
	if res := mireOK(t, es, "subscription", "wait", "fresh"); !strings.Contains(res.stdout, "fresh: reached position 2,000, 0 events in") {
		t.Errorf("wait: %q", res.stdout)
	}
}

func TestCLIParked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	model := newBalances(t, es)
	inner := model.handler()
	handler := func(ctx context.Context, scope *store.Scope, e runner.HandledEvent) error {
		if e.Recorded.StreamID == "account-bad" && e.Recorded.StreamVersion == 1 {
			return fmt.Errorf("bad event")
		}
		return inner(ctx, scope, e)
	}
	config := fastRunner("a")
	config.MaxAttempts = 2
	r := startRunner(t, es, config, runner.Subscription{Name: "balances", TxHandler: handler, OnFailure: runner.Park})
	appendDeposit(t, es, "account-bad", 1)
	appendDeposit(t, es, "account-bad", 2)
	waitFor(t, r, "balances", appendDeposit(t, es, "account-good", 3))

	type parked struct {
		Subscription  string `json:"subscription"`
		StreamID      string `json:"stream_id"`
		StreamVersion int64  `json:"stream_version"`
		Error         string `json:"error"`
	}
	var list struct {
		Parked []parked `json:"parked"`
	}
	mireJSON(t, es, &list, 0, "parked", "list")
	if diff := cmp.Diff([]parked{{"balances", "account-bad", 1, "bad event"}}, list.Parked); diff != "" {
		t.Errorf("parked list (-want +got):\n%s", diff)
	}
	if res := mireOK(t, es, "parked", "list", "balances"); !regexp.MustCompile(`(?m)^balances\s+0\s+account-bad\s+1\s+1\s+(now|\d+s ago)\s+-\s+bad event$`).MatchString(res.stdout) {
		t.Errorf("parked list:\n%s", res.stdout)
	}
	if res := mireOK(t, es, "status"); !regexp.MustCompile(`balances\s+0/1\s+running\s+a\s+\d+\s+(in \d+s|now)\s+3\s+0\s+1\s`).MatchString(res.stdout) {
		t.Errorf("status with a parked stream:\n%s", res.stdout)
	}
	mireOK(t, es, "parked", "skip", "balances", "account-bad", "--reason", "refunded by hand")
	eventually(t, 30*time.Second, "the skipped event is recorded", func() bool {
		skipped, err := r.Control().SkippedEvents(ctx, "balances")
		return err == nil && len(skipped) == 1
	})
	var skipped struct {
		Skipped []struct {
			StreamID      string `json:"stream_id"`
			StreamVersion int64  `json:"stream_version"`
			Reason        string `json:"reason"`
			Error         string `json:"error"`
		} `json:"skipped"`
	}
	mireJSON(t, es, &skipped, 0, "parked", "skipped", "balances")
	if len(skipped.Skipped) != 1 || skipped.Skipped[0].StreamID != "account-bad" || skipped.Skipped[0].Reason != "refunded by hand" ||
		skipped.Skipped[0].Error != "bad event" {
		t.Errorf("parked skipped: %+v", skipped)
	}
	eventually(t, 30*time.Second, "account-bad's later event is handled", func() bool {
		balance, events := model.get(t, "account-bad")
		return balance == 2 && events == 1
	})
	if res := mireOK(t, es, "parked", "list"); res.stdout != "no parked streams\n" {
		t.Errorf("parked list after the skip: %q", res.stdout)
	}
}
