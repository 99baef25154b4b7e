package store

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// headerDocs covers what jsonb prints for a map of strings and what other
// tooling might have stored instead.
var headerDocs = []string{
	`{}`, ` { } `, `{"a": "b"}`, `{"tenant": "acme", "user_id": "user-4711"}`,
	`{"a":"b","c":"d"}`, "{\n\t\"a\" :\r\n \"b\" }", `{"": ""}`, `{"a": "b", "a": "c"}`,
	`{"ключ": "значение", "emoji": "🙂"}`, `{"a": "with \"quote\""}`, `{"a": "tab\tescaped"}`,
	`{"a": "\u00e9"}`, `{"retries": 3}`, `{"a": null}`, `{"a": ["b"]}`, `{"a": {"b": "c"}}`,
	`null`, `[]`, `"a"`, `{`, `{"a"`, `{"a":`, `{"a": "b"`, `{"a": "b",}`, `{"a" "b"}`,
	`{"a": "b"} x`, `{"a": "b"}}`, "{\"a\": \"raw\x01control\"}", "{\"a\": \"bad\xffutf8\"}",
	`{a: "b"}`, `{"a": 'b'}`, ``, ` `,
}

// decodeHeaders must agree with encoding/json on every input: the same map,
// or an error where it gives one, with or without a table of strings seen
// (one table for all documents, as a page shares one).
func TestDecodeHeadersMatchesEncodingJSON(t *testing.T) {
	var seen stringTable
	for _, table := range []*stringTable{nil, &seen} {
		for _, doc := range headerDocs {
			checkHeadersLikeJSON(t, []byte(doc), table)
		}
	}
}

// Decoded strings own their bytes (the row's buffer is not theirs to keep),
// and the table stops growing at maxStrings.
func TestStringTable(t *testing.T) {
	var seen stringTable
	doc := []byte(`{"tenant": "acme"}`)
	first, err := decodeHeaders(doc, &seen)
	if err != nil {
		t.Fatal(err)
	}
	copy(doc, `{"tenant": "zzzz"}`)
	second, err := decodeHeaders(doc, &seen)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"tenant": "acme"}, first); diff != "" {
		t.Errorf("first document changed with its buffer (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"tenant": "zzzz"}, second); diff != "" {
		t.Errorf("second document (-want +got):\n%s", diff)
	}
	for i := range 2 * maxStrings {
		if got, want := seen.intern(fmt.Appendf(nil, "value-%d", i)), fmt.Sprintf("value-%d", i); got != want {
			t.Fatalf("intern = %q, want %q", got, want)
		}
	}
	if len(seen.strings) != maxStrings {
		t.Errorf("the table holds %d strings, want at most %d", len(seen.strings), maxStrings)
	}
}

func FuzzDecodeHeaders(f *testing.F) {
	for _, doc := range headerDocs {
		f.Add([]byte(doc))
	}
	var seen stringTable
	f.Fuzz(func(t *testing.T, doc []byte) { checkHeadersLikeJSON(t, doc, &seen) })
}

func checkHeadersLikeJSON(t *testing.T, doc []byte, seen *stringTable) {
	var want map[string]string
	wantErr := json.Unmarshal(doc, &want)
	got, err := decodeHeaders(doc, seen)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("decodeHeaders(%q) error = %v, encoding/json's = %v", doc, err, wantErr)
	}
	if err == nil && !cmp.Equal(want, got) {
		t.Fatalf("decodeHeaders(%q) = %v, encoding/json gives %v", doc, got, want)
	}
}

// headersJSON writes what encoding/json writes, byte for byte, for plain
// strings and for every string it escapes.
func TestHeadersJSONMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	samples := []string{"", "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		`quote"d`, `back\slash`, "tab\there", "new\nline", "<b>&amp;</b>", "del\x7f", "é", "日本", "\u2028\u2029",
		"\x00\x1f", "~!@#$%^*()_+`-=[]{}|;':,./?"}
	cases := []map[string]string{{"a": "b"}}
	for _, s := range samples {
		cases = append(cases, map[string]string{s: s}, map[string]string{"k": s, s + "x": "v", "z": s})
	}
	many := map[string]string{}
	for i := range 20 { // past the sorting buffer on the stack
		many[fmt.Sprintf("key-%02d", 19-i)] = samples[i%len(samples)]
	}
	cases = append(cases, many)
	for _, headers := range cases {
		want, err := json.Marshal(headers)
		if err != nil {
			t.Fatal(err)
		}
		if got := headersJSON(headers); string(got) != string(want) {
			t.Errorf("headersJSON(%q) = %s; want %s", headers, got, want)
		}
	}
}

func FuzzHeadersJSON(f *testing.F) {
	f.Add("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "k", "<&>")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		headers := map[string]string{k1: v1, k2: v2}
		want, err := json.Marshal(headers)
		if err != nil {
			t.Fatal(err)
		}
		if got := headersJSON(headers); string(got) != string(want) {
			t.Errorf("headersJSON(%q) = %s; want %s", headers, got, want)
		}
	})
}
