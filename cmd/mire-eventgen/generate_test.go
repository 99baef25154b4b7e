package main

import (
	"bytes"
	"flag"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenCases are the fixture packages under testdata. Each directory's
// mire_events_gen.go is its golden file: the fixture looks exactly like a
// package after go generate.
var goldenCases = []struct {
	dir string
	cfg config
}{
	{"account", config{prefix: "account"}},
	{"ledger", config{prefix: "bank.ledger", types: []string{"Credited", "Debited"}}},
	{"payment", config{prefix: "payment"}},
}

// in returns c for the package in dir, with the default output file unless
// c names another.
func (c config) in(dir string) config {
	c.dir = dir
	if c.output == "" {
		c.output = outputDefault
	}
	return c
}

func TestGolden(t *testing.T) {
	t.Parallel()

	for _, tc := range goldenCases {
		t.Run(tc.dir, func(t *testing.T) {
			t.Parallel()

			dir := filepath.Join("testdata", tc.dir)
			got, err := generate(tc.cfg.in(dir))
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join(dir, outputDefault)
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("generated code differs from %s (-want +got), rerun with -update if intended:\n%s", golden, diff)
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	t.Parallel()

	// The order of -types does not matter.
	cfg := goldenCases[1].cfg.in(filepath.Join("testdata", "ledger"))
	first, err := generate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.types = []string{"Debited", "Credited", "Debited"}
	second, err := generate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(first), string(second)); diff != "" {
		t.Errorf("-types order changed the output (-first +second):\n%s", diff)
	}
}

func TestDeterministicUnions(t *testing.T) {
	t.Parallel()

	// Unions and their seal methods are found through maps.
	cfg := goldenCases[2].cfg.in(filepath.Join("testdata", "payment"))
	first, err := generate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		again, err := generate(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(first), string(again)); diff != "" {
			t.Fatalf("a second generation differs (-first +again):\n%s", diff)
		}
	}
}

func TestSplitArgs(t *testing.T) {
	t.Parallel()

	tests := []struct {
		args    string
		want    []arg
		wantErr bool
	}{
		{args: "", want: nil},
		{args: " response", want: []arg{{text: "response", key: "response"}}},
		{
			args: "\tresponse=error  reason=Why\t",
			want: []arg{
				{text: "response=error", key: "response", value: "error", hasValue: true},
				{text: "reason=Why", key: "reason", value: "Why", hasValue: true},
			},
		},
		{
			args: ` reason="card \"declined\"" name=x`,
			want: []arg{
				{text: `reason="card \"declined\""`, key: "reason", value: `card "declined"`, hasValue: true, quoted: true},
				{text: "name=x", key: "name", value: "x", hasValue: true},
			},
		},
		{args: ` reason=""`, want: []arg{{text: `reason=""`, key: "reason", hasValue: true, quoted: true}}},
		{args: ` reason=a"b"`, want: []arg{{text: `reason=a"b"`, key: "reason", value: `a"b"`, hasValue: true}}},
		{args: ` reason="open`, wantErr: true},
		{args: ` reason="a"b`, wantErr: true},
	}
	for _, tt := range tests {
		got, err := splitArgs(tt.args)
		if (err != nil) != tt.wantErr {
			t.Errorf("splitArgs(%q) error = %v, want error: %v", tt.args, err, tt.wantErr)
			continue
		}
		if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(arg{})); diff != "" {
			t.Errorf("splitArgs(%q) (-want +got):\n%s", tt.args, diff)
		}
	}
}

func TestRunIdempotent(t *testing.T) {
	t.Parallel()

	dir := copyFixture(t, "account", t.TempDir())
	cfg := goldenCases[0].cfg.in(dir)
	output := filepath.Join(dir, outputDefault)

	// From scratch, then over the previous output.
	if err := run(cfg); err != nil {
		t.Fatal(err)
	}
	first := readFile(t, output)
	if err := run(cfg); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(first), string(readFile(t, output))); diff != "" {
		t.Errorf("second run changed the output (-first +second):\n%s", diff)
	}

	// A stale generated file is replaced.
	if err := os.WriteFile(output, []byte(header+"\npackage account\n\nfunc (Balance) EventType() string { return \"x\" }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(cfg); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(first), string(readFile(t, output))); diff != "" {
		t.Errorf("run over a stale file (-want +got):\n%s", diff)
	}
}

func TestRunKeepsForeignOutput(t *testing.T) {
	t.Parallel()

	dir := copyFixture(t, "account", t.TempDir())
	output := filepath.Join(dir, outputDefault)
	handWritten := []byte("package account\n")
	if err := os.WriteFile(output, handWritten, 0o644); err != nil {
		t.Fatal(err)
	}
	err := run(goldenCases[0].cfg.in(dir))
	if err == nil || !strings.Contains(err.Error(), "was not generated by mire-eventgen") {
		t.Errorf("run() = %v, want a refusal to overwrite", err)
	}
	if got := readFile(t, output); !bytes.Equal(got, handWritten) {
		t.Errorf("hand-written output file was changed to:\n%s", got)
	}
}

func TestParseFlags(t *testing.T) {
	t.Parallel()

	env := map[string]string{"GOPACKAGE": "account", "GOFILE": "events.go"}
	tests := []struct {
		name    string
		args    []string
		want    config
		wantErr bool
	}{
		{
			name: "go generate defaults",
			args: []string{"-prefix", "account"},
			want: config{dir: ".", prefix: "account", output: outputDefault, pkg: "account"},
		},
		{
			name: "all flags",
			args: []string{"-prefix", "bank.ledger", "-dir", "ledger", "-output", "events_gen.go", "-types", " Credited, Debited,,"},
			// -dir points away from the directive's package: $GOPACKAGE
			// does not apply.
			want: config{dir: "ledger", prefix: "bank.ledger", output: "events_gen.go", types: []string{"Credited", "Debited"}},
		},
		{name: "positional argument", args: []string{"-prefix", "account", "extra"}, wantErr: true},
		{name: "unknown flag", args: []string{"-nope"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			got, err := parseFlags(tt.args, func(k string) string { return env[k] }, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseFlags() error = %v, want error: %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(config{})); diff != "" {
				t.Errorf("parseFlags() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()

	const pkg = "package account\n\n"
	acct := config{prefix: "account"}
	type errorCase struct {
		name  string
		files map[string]string // written into a fresh package directory
		cfg   config
		want  []string // every line of the error, in order
	}
	tests := []errorCase{
		{
			name:  "marked non-struct",
			files: map[string]string{"a.go": pkg + "//mire:event\ntype Balance int64\n"},
			cfg:   acct,
			want:  []string{"a.go:4:6: Balance is marked as an event but is not a struct type (declare it as type Balance struct{...})"},
		},
		{
			name: "alias and generic",
			files: map[string]string{"a.go": pkg +
				"//mire:event\ntype Opened = struct{}\n\n" +
				"//mire:event\ntype Boxed[T any] struct{ V T }\n"},
			cfg: acct,
			want: []string{
				"a.go:4:6: Opened is an alias; declare the event as a struct type, type Opened struct{...}",
				"a.go:7:6: Boxed is generic; event types must not have type parameters",
			},
		},
		{
			name: "duplicate names",
			files: map[string]string{
				"a.go": pkg + "//mire:event\ntype Opened struct{}\n",
				"b.go": pkg + "//mire:event name=account.opened\ntype OpenedV2 struct{}\n\n" +
					"//mire:event\ntype Closed struct{}\n\n" +
					"//mire:event\ntype Shut struct{}\n\nfunc (Shut) EventType() string { return \"account.closed\" }\n",
			},
			cfg: acct,
			want: []string{
				"b.go:4:6: OpenedV2: event name \"account.opened\" is also the name of Opened (a.go:4:6)",
				"b.go:10:6: Shut: event name \"account.closed\" is also the name of Closed (b.go:7:6)",
			},
		},
		{
			name: "bad directive arguments",
			files: map[string]string{"a.go": pkg +
				"//mire:event name=\ntype A struct{}\n\n" +
				"//mire:event nam=account.b\ntype B struct{}\n\n" +
				"//mire:event name=account.c name=account.cc\ntype C struct{}\n\n" +
				"//mire:event\n//mire:event\ntype D struct{}\n\n" +
				"// mire:event\ntype E struct{}\n"},
			cfg: acct,
			want: []string{
				`a.go:3:1: A: bad //mire:event argument "name=": want name=<event name>, response, response=error or reason=<field or "text">`,
				`a.go:6:1: B: bad //mire:event argument "nam=account.b": want name=<event name>, response, response=error or reason=<field or "text">`,
				"a.go:9:1: C: name= given twice",
				"a.go:13:1: D: more than one //mire:event line",
				"a.go:16:1: write //mire:event without a space after //, as Go directives are written",
			},
		},
		{
			name: "detached directives",
			files: map[string]string{"a.go": pkg +
				"//mire:event\n\ntype A struct{}\n\n" +
				"//mire:event\ntype (\n\tB struct{}\n)\n\n" +
				"func f() {\n\t//mire:event\n\ttype C struct{}\n\t_ = C{}\n}\n"},
			cfg: acct,
			want: []string{
				"a.go:3:1: //mire:event must be in the doc comment directly above a type declaration (in a type ( ... ) group, above the type itself)",
				"a.go:7:1: //mire:event must be in the doc comment directly above a type declaration (in a type ( ... ) group, above the type itself)",
				"a.go:13:2: //mire:event must be in the doc comment directly above a type declaration (in a type ( ... ) group, above the type itself)",
			},
		},
		{
			name: "hand-written methods",
			files: map[string]string{"a.go": pkg +
				"//mire:event\ntype A struct{}\n\nfunc (*A) EventType() string { return \"account.a\" }\n\n" +
				"//mire:event name=account.b\ntype B struct{}\n\nfunc (B) EventType() string { return \"account.b\" }\n"},
			cfg: acct,
			want: []string{
				"a.go:6:11: A: EventType has a pointer receiver; use a value receiver, func (A) EventType() string, so that A{} is an EventData",
				"a.go:11:10: B has both a hand-written EventType method and a name= override; keep one",
			},
		},
		{
			name: "invalid names",
			files: map[string]string{"a.go": pkg +
				"//mire:event name=" + strings.Repeat("x", 256) + "\ntype A struct{}\n"},
			cfg:  acct,
			want: []string{`a.go:4:6: A: event name "` + strings.Repeat("x", 256) + `" is 256 bytes, over the limit of 255`},
		},
		{
			name:  "generated name too long",
			files: map[string]string{"a.go": pkg + "//mire:event\ntype Opened struct{}\n"},
			cfg:   config{prefix: strings.Repeat("a", 250)},
			want:  []string{`a.go:4:6: Opened: event name "` + strings.Repeat("a", 250) + `.opened" is 257 bytes, over the limit of 255`},
		},
		{
			name:  "register function clash",
			files: map[string]string{"a.go": pkg + "//mire:event\ntype Opened struct{}\n\nfunc RegisterAccountEvents() {}\n"},
			cfg:   acct,
			want:  []string{"a.go:6:6: RegisterAccountEvents is declared here, but mire-eventgen generates a function of that name for -prefix account"},
		},
		{
			name:  "no event types",
			files: map[string]string{"a.go": pkg + "type Opened struct{}\n"},
			cfg:   acct,
			want:  []string{"no event types found in DIR: mark struct types with a //mire:event line in their doc comment, or pass -types"},
		},
		{
			name:  "unknown and non-struct -types",
			files: map[string]string{"a.go": pkg + "type Opened struct{}\n\ntype Balance int\n"},
			cfg:   config{prefix: "account", types: []string{"Opened", "Closed", "Balance"}},
			want: []string{
				"-types: type Closed is not declared in package directory DIR",
				"a.go:5:6: Balance is marked as an event but is not a struct type (declare it as type Balance struct{...})",
			},
		},
		{
			name:  "annotated type outside -types is still checked",
			files: map[string]string{"a.go": pkg + "type Opened struct{}\n\n//mire:event\ntype Balance int\n"},
			cfg:   config{prefix: "account", types: []string{"Opened"}},
			want:  []string{"a.go:6:6: Balance is marked as an event but is not a struct type (declare it as type Balance struct{...})"},
		},
		{
			name:  "external test package",
			files: map[string]string{"a.go": pkg + "//mire:event\ntype Opened struct{}\n"},
			cfg:   config{prefix: "account", pkg: "account_test"},
			want:  []string{"$GOPACKAGE is account_test but the package in DIR is account: put the go:generate line in a file of package account"},
		},
		{name: "missing prefix", cfg: config{}, want: []string{"-prefix is required, e.g. -prefix account"}},
		{
			name: "bad response arguments",
			files: map[string]string{"a.go": pkg +
				"//mire:event response=maybe\ntype A struct{}\n\n" +
				"//mire:event response response=error\ntype B struct{}\n\n" +
				"//mire:event reason=Why\ntype C struct{ Why string }\n\n" +
				"//mire:event response=error reason=\"a\" reason=\"b\"\ntype D struct{}\n\n" +
				"//mire:event name=\"account.e\" response=error reason=\"unterminated\ntype E struct{}\n\n" +
				"//mire:event response=error reason=\"a\"b\ntype F struct{}\n\n" +
				"//mire:event response=error reason=Not-a-field\ntype G struct{}\n"},
			cfg: acct,
			want: []string{
				`a.go:3:1: A: bad //mire:event argument "response=maybe": want name=<event name>, response, response=error or reason=<field or "text">`,
				"a.go:6:1: B: response given twice",
				"a.go:9:1: C: reason= applies only to response=error",
				"a.go:12:1: D: reason= given twice",
				`a.go:15:1: E: bad //mire:event line: unterminated or malformed string in reason="unterminated`,
				`a.go:18:1: F: bad //mire:event line: no space after the string in reason="a"b`,
				`a.go:21:1: G: bad //mire:event argument "reason=Not-a-field": want name=<event name>, response, response=error or reason=<field or "text">`,
			},
		},
		{
			name: "bad reason fields",
			files: map[string]string{"a.go": pkg +
				"//mire:event response=error reason=Why\ntype A struct{ Because string }\n\n" +
				"//mire:event response=error reason=why\ntype B struct{ why string }\n\n" +
				"//mire:event response=error reason=Why\ntype C struct {\n\tWhy string `json:\"-\"`\n}\n\n" +
				"//mire:event response=error reason=Why\ntype D struct{ Why int }\n\n" +
				"//mire:event response=error reason=Why\ntype E struct{ Why *string }\n\n" +
				"type Reasons struct{ Why string }\n\n" +
				"//mire:event response=error reason=Why\ntype F struct{ Reasons }\n"},
			cfg: acct,
			want: []string{
				`a.go:3:1: A: reason=Why: A has no field Why (name a field declared in the struct itself, or give a text: reason="...")`,
				"a.go:7:16: B: reason field why is unexported, so it is not encoded and a saga would read an empty reason; export it",
				`a.go:11:2: C: reason field Why is tagged json:"-", so it is not encoded and a saga would read an empty reason`,
				"a.go:15:16: D: reason field Why is a int; want a string (or a string type declared in this package)",
				"a.go:18:16: E: reason field Why is a *string; want a string (or a string type declared in this package)",
				`a.go:22:1: F: reason=Why: F has no field Why (name a field declared in the struct itself, or give a text: reason="...")`,
			},
		},
		{
			name: "hand-written IntoResponse methods",
			files: map[string]string{"a.go": pkg + "import \"github.com/mire-go/mire/core\"\n\n" +
				"//mire:event\ntype A struct{}\n\nfunc (*A) IntoResponse() core.ResponseValue { return core.ResponseValue{} }\n\n" +
				"//mire:event response\ntype B struct{}\n\nfunc (B) IntoResponse() core.ResponseValue { return core.ResponseValue{} }\n"},
			cfg: acct,
			want: []string{
				"a.go:8:11: A: IntoResponse has a pointer receiver; use a value receiver, func (e A) IntoResponse() core.ResponseValue, so that the A a saga decodes is an IntoResponse",
				"a.go:13:10: B has both a hand-written IntoResponse method and response in its //mire:event line; keep one",
			},
		},
		{
			name: "bad union declarations",
			files: map[string]string{"a.go": pkg + "import \"github.com/mire-go/mire/core\"\n\n" +
				"//mire:event response\ntype Taken struct{}\n\n" +
				"//mire:response\ntype A struct{}\n\n" +
				"//mire:event\ntype B interface{ core.IntoResponse }\n\n" +
				"//mire:response\ntype C = interface{ core.IntoResponse }\n\n" +
				"//mire:response\ntype D[T any] interface{ core.IntoResponse }\n\n" +
				"//mire:response\ntype E interface{ Taken }\n\n" +
				"//mire:response\ntype F interface {\n\tcore.IntoResponse\n\tTaken | *Taken\n}\n\n" +
				"//mire:response\ntype G interface{ core.EventData }\n\n" +
				"type events interface{ EventType() string }\n\n" +
				"//mire:response\ntype H interface{ events }\n"},
			cfg: acct,
			want: []string{
				"a.go:9:6: A is marked //mire:response but is not an interface type: a union of responses is declared as type A interface{ core.IntoResponse; isA() }, and its members are marked //mire:event response",
				"a.go:12:6: B is marked as an event but is an interface; mark a union of response events with //mire:response",
				"a.go:15:6: C is an alias; declare the union as an interface type, type C interface{...}",
				"a.go:18:6: D is generic; a union of responses must not have type parameters",
				"a.go:21:6: E has type elements (such as A | B): such an interface is only a constraint and cannot hold a reply; embed core.IntoResponse instead, and mark the members //mire:event response or list them with members=",
				"a.go:24:6: F has type elements (such as A | B): such an interface is only a constraint and cannot hold a reply; embed core.IntoResponse instead, and mark the members //mire:event response or list them with members=",
				"a.go:30:6: G must embed core.IntoResponse, so that its members answer sagas and a saga can await it",
				"a.go:35:6: H must embed core.IntoResponse, so that its members answer sagas and a saga can await it",
			},
		},
		{
			name: "bad union members",
			files: map[string]string{"a.go": pkg + "import mc \"github.com/mire-go/mire/core\"\n\n" +
				"//mire:event\ntype Requested struct{}\n\n" +
				"type Balance struct{}\n\n" +
				"//mire:response members=Requested,Balance,Missing\ntype A interface{ mc.IntoResponse }\n\n" +
				"//mire:response\ntype B interface{ mc.IntoResponse }\n\n" +
				"//mire:response members=Requested,Requested,1x members=Requested\ntype C interface{ mc.IntoResponse }\n\n" +
				"//mire:response members=\"Requested\" size=2\n//mire:response\ntype D interface{ mc.IntoResponse }\n\n" +
				"//mire:response\n\ntype E interface{ mc.IntoResponse }\n\n" +
				"// mire:response\ntype F interface{ mc.IntoResponse }\n"},
			cfg: acct,
			want: []string{
				"a.go:10:1: A: member Requested has no IntoResponse method: mark it //mire:event response (or response=error), or write the method",
				"a.go:10:1: A: member Balance is not one of the event types generated for (mark it //mire:event response, or list it in -types)",
				"a.go:10:1: A: member Missing is not a type declared in this package",
				"a.go:13:1: B has no members: mark its event types //mire:event response (or response=error), or list them with members=",
				"a.go:16:1: C: members=: Requested is listed twice",
				`a.go:16:1: C: members=: "1x" is not a type name`,
				"a.go:16:1: C: members= given twice",
				`a.go:19:1: D: bad //mire:response argument "members=\"Requested\"": the only argument is members=<type>,<type>,..., e.g. //mire:response members=PaymentTaken,PaymentDeclined`,
				`a.go:19:1: D: bad //mire:response argument "size=2": the only argument is members=<type>,<type>,..., e.g. //mire:response members=PaymentTaken,PaymentDeclined`,
				"a.go:20:1: D: more than one //mire:response line",
				"a.go:23:1: //mire:response must be in the doc comment directly above a type declaration (in a type ( ... ) group, above the type itself)",
				"a.go:27:1: write //mire:response without a space after //, as Go directives are written",
			},
		},
		{
			name: "union function clash",
			files: map[string]string{"a.go": pkg + "import \"github.com/mire-go/mire/core\"\n\n" +
				"//mire:event response\ntype Taken struct{}\n\n" +
				"//mire:response\ntype Reply interface{ core.IntoResponse }\n\nvar ReplyTypes = 1\n"},
			cfg:  acct,
			want: []string{"a.go:11:5: ReplyTypes is declared here, but mire-eventgen generates a function of that name for the union Reply"},
		},
	}
	for _, prefix := range []string{"Account", "account.", ".account", "bank..account", "account-", "acc ount", "account_v2"} {
		tests = append(tests, errorCase{
			name: "bad prefix " + prefix,
			cfg:  config{prefix: prefix},
			want: []string{`invalid -prefix "` + prefix + `": want lower-case kebab-case words, dot-separated for namespaces, e.g. account or bank.savings-account`},
		})
	}
	for _, output := range []string{"gen/events.go", "events_test.go", "_events.go", "events.txt"} {
		tests = append(tests, errorCase{
			name: "bad output " + output,
			cfg:  config{prefix: "account", output: output},
			want: []string{`invalid -output "` + output + `": want the name of a .go file in the package directory, not a _test.go file, not starting with _ or a dot`},
		})
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			dir := t.TempDir()
			for _, name := range slices.Sorted(maps.Keys(tt.files)) {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(tt.files[name]), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := generate(tt.cfg.in(dir))
			if err == nil {
				t.Fatal("generate() succeeded, want an error")
			}
			// Paths in messages are dir/file: compare them relative to dir.
			got := strings.Split(strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), ""), "\n")
			for i := range got {
				got[i] = strings.ReplaceAll(got[i], dir, "DIR")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("error lines (-want +got):\n%s", diff)
			}
		})
	}
}

// copyFixture copies the .go files of testdata/name, except the golden
// file, into dir and returns dir.
func copyFixture(t *testing.T, name, dir string) string {
	t.Helper()
	src := filepath.Join("testdata", name)
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || e.Name() == outputDefault || !strings.HasSuffix(e.Name(), ".go") {
			continue
		}
		writeFile(t, filepath.Join(dir, e.Name()), readFile(t, filepath.Join(src, e.Name())))
	}
	return dir
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
