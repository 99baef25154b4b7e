package store

import (
	"encoding/json"
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
// or an error where it gives one.
func TestDecodeHeadersMatchesEncodingJSON(t *testing.T) {
	for _, doc := range headerDocs {
		checkHeadersLikeJSON(t, []byte(doc))
	}
}

func FuzzDecodeHeaders(f *testing.F) {
	for _, doc := range headerDocs {
		f.Add([]byte(doc))
	}
	f.Fuzz(checkHeadersLikeJSON)
}

func checkHeadersLikeJSON(t *testing.T, doc []byte) {
	var want map[string]string
	wantErr := json.Unmarshal(doc, &want)
	got, err := decodeHeaders(doc)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("decodeHeaders(%q) error = %v, encoding/json's = %v", doc, err, wantErr)
	}
	if err == nil && !cmp.Equal(want, got) {
		t.Fatalf("decodeHeaders(%q) = %v, encoding/json gives %v", doc, got, want)
	}
}
