package store

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestScanJSONB(t *testing.T) {
	t.Parallel()
	const (
		nul       = "NUL"
		surrogate = "surrogate"
		number    = "number"
		utf8      = "UTF-8"
	)
	tests := []struct {
		doc      string
		reject   string // a word of the reason, "" to accept
		replaced bool
	}{
		{`{}`, "", false},
		{``, "", false},
		{`{"a":"b","n":[1,-2.5,3e10,0,true,false,null]}`, "", false},
		{`{"a":"x\u0000y"}`, nul, false},
		{`{"a":"\u0000"}`, nul, false},
		{`{"a":"x\\u0000y"}`, "", false}, // an escaped backslash, then literal text
		{`{"a":"x\\\u0000y"}`, nul, false},
		{`{"a":"\u00001"}`, nul, false},
		{`{"\u0000":1}`, nul, false},
		{`{"a":"\u0001"}`, "", false},
		{`{"a":"\ud800"}`, surrogate, false},
		{`{"a":"\uD800"}`, surrogate, false},
		{`{"a":"\udc00"}`, surrogate, false},
		{`{"a":"\udfff x"}`, surrogate, false},
		{`{"a":"\ud800x"}`, surrogate, false},
		{`{"a":"\ud800\u0041"}`, surrogate, false},
		{`{"a":"\ud800\ud800"}`, surrogate, false},
		{`{"a":"\ud800\n"}`, surrogate, false},
		{`{"a":"\udc00\ud800"}`, surrogate, false},
		{`{"a":"\ud800\udc00\udc00"}`, surrogate, false},
		{`{"\ud800":1}`, surrogate, false},
		{`{"a":"\\\ud800"}`, surrogate, false},
		{`{"a":"\ud800\udc00"}`, "", false},
		{`{"a":"\uDBFF\uDFFF\uD83D\uDE00"}`, "", false},
		{`{"a":"\\ud800"}`, "", false},
		{`{"a":"\\\\ud800"}`, "", false},
		{`{"a":"\ud7ff\ue000\uffff"}`, "", false},
		{`{"a":"\ufffd"}`, "", true},
		{`{"a":"\uFFFD"}`, "", true},
		{`{"\ufffd":"b"}`, "", true},
		{`{"a":"\\ufffd"}`, "", false},
		{`{"a":"` + "\uFFFD" + `"}`, "", false}, // a genuine U+FFFD is written as itself
		{`{"a":"é 🙂"}`, "", false},
		{"{\"a\":\"\xff\"}", utf8, false},
		{"{\"a\":\"\xc3\x28\"}", utf8, false},
		{"{\"a\":\"\xed\xa0\x80\"}", utf8, false}, // an encoded surrogate
		{"{\"a\":\"\xf0\x9f\x99\"}", utf8, false},
		{"{\"\xfe\":1}", utf8, false},
		{`[1e131071,9.99e131071,0.1e131072,100e131069,-1e131071]`, "", false},
		{`[1e-16383,0e-16383,0.5e-16382,1E+5,-0,0.0,0e1073741822,1e+0000000000000000000000001]`, "", false},
		{`[1e131072]`, number, false},
		{`[10e131071]`, number, false},
		{`[-1e131072]`, number, false},
		{`{"a":1e1000000}`, number, false},
		{`[1e-16384]`, number, false},
		{`[0e-16384]`, number, false},
		{`[1.0e-16383]`, number, false},
		{`[0e1073741823]`, number, false},
		{`[1e99999999999999999999999999]`, number, false},
		{`[1e-99999999999999999999999999]`, number, false},
		{`["1e1000000"]`, "", false},
		{`[1` + strings.Repeat("0", 131071) + `]`, "", false},
		{`[1` + strings.Repeat("0", 131072) + `]`, number, false},
		{`[0.` + strings.Repeat("0", 16383) + `]`, "", false},
		{`[0.` + strings.Repeat("0", 16384) + `]`, number, false},
		{`[0.` + strings.Repeat("0", 16382) + `1]`, "", false},
	}
	for _, tt := range tests {
		reason, replaced := scanJSONB([]byte(tt.doc))
		name := tt.doc
		if len(name) > 60 {
			name = name[:60] + "…"
		}
		switch {
		case tt.reject == "" && reason != "":
			t.Errorf("scanJSONB(%q) rejects: %s", name, reason)
		case tt.reject != "" && !strings.Contains(reason, tt.reject):
			t.Errorf("scanJSONB(%q) = %q, want a reason about %s", name, reason, tt.reject)
		}
		if tt.reject == "" && replaced != tt.replaced {
			t.Errorf("scanJSONB(%q) replaced = %v, want %v", name, replaced, tt.replaced)
		}
	}
}

type utf8Text string

func (s utf8Text) MarshalText() ([]byte, error) { return []byte(s), nil }

type utf8Raw struct{ inner string }

func (r utf8Raw) MarshalJSON() ([]byte, error) { return json.Marshal(r.inner) }

type utf8Struct struct {
	Name    string
	Skipped string `json:"-"`
	hidden  string
	Tags    []string
	Attrs   map[string]any
	Text    utf8Text
	Ptr     *string
	Bytes   []byte
	Raw     json.RawMessage
	Nested  *utf8Struct
	Embedded
}

type Embedded struct{ Inner string }

func TestInvalidUTF8(t *testing.T) {
	t.Parallel()
	bad := "a\xffb"
	tests := []struct {
		name  string
		value any
		want  string // "" for none found
	}{
		{"nil", nil, ""},
		{"valid string", "a\uFFFDb", ""},
		{"string", bad, "the value"},
		{"field", utf8Struct{Name: bad}, ".Name"},
		{"skipped field", utf8Struct{Skipped: bad}, ""},
		{"unexported field", utf8Struct{hidden: bad}, ""},
		{"slice", utf8Struct{Tags: []string{"ok", bad}}, ".Tags[1]"},
		{"map value", utf8Struct{Attrs: map[string]any{"k": bad}}, `.Attrs["k"]`},
		{"map key", map[string]int{bad: 1}, `["a\xffb"]`},
		{"nested map", map[string]any{"k": []any{map[string]string{"x": bad}}}, `["k"][0]["x"]`},
		{"text marshaler", utf8Struct{Text: utf8Text(bad)}, ".Text"},
		{"text marshaler key", map[utf8Text]int{utf8Text(bad): 1}, `["a\xffb"]`},
		{"pointer", utf8Struct{Ptr: &bad}, ".Ptr"},
		{"bytes are base64", utf8Struct{Bytes: []byte(bad)}, ""},
		{"raw JSON passes through", utf8Struct{Raw: json.RawMessage(`"\ufffd"`)}, ""},
		{"inside a MarshalJSON type", []utf8Raw{{inner: bad}}, ""}, // unexported: not looked into
		{"nested", &utf8Struct{Nested: &utf8Struct{Name: bad}}, ".Nested.Name"},
		{"embedded", utf8Struct{Embedded: Embedded{Inner: bad}}, ".Embedded.Inner"},
		{"array", [2]string{"", bad}, "[1]"},
	}
	for _, tt := range tests {
		if got := invalidUTF8(reflect.ValueOf(tt.value)); got != tt.want {
			t.Errorf("%s: invalidUTF8 = %q, want %q", tt.name, got, tt.want)
		}
	}
	cyclic := &utf8Struct{}
	cyclic.Nested = cyclic
	if got := invalidUTF8(reflect.ValueOf(cyclic)); got != "" {
		t.Errorf("cyclic: invalidUTF8 = %q", got)
	}
}

// BenchmarkScanJSONB measures the common case: an ordinary event.
func BenchmarkScanJSONB(b *testing.B) {
	doc, err := json.Marshal(map[string]any{
		"account_id": "account-4711", "amount": 12345, "currency": "EUR", "rate": 1.0825,
		"memo": strings.Repeat("ordinary text, ", 20), "tags": []string{"a", "b", "c"}, "name": "Zoë",
	})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if reason, _ := scanJSONB(doc); reason != "" {
			b.Fatal(reason)
		}
	}
}
