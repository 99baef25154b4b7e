package store

import (
	"encoding/json"
	"unicode/utf8"
)

// decodeHeaders decodes a stored headers document into a map. Headers are
// written as a JSON object of strings and come back in jsonb's plain text
// form, which decodeFlatStrings reads directly; anything it does not handle
// (escapes, other value types, malformed input) goes to encoding/json, which
// gives the same result or the error a caller should see. Reading a stream
// spent a third of its client CPU in encoding/json here.
//
// seen, if not nil, holds strings already decoded (see stringTable):
// the events of a page mostly repeat the same header names and many of
// their values.
func decodeHeaders(doc []byte, seen *stringTable) (map[string]string, error) {
	if headers, ok := decodeFlatStrings(doc, seen); ok {
		return headers, nil
	}
	var headers map[string]string
	if err := json.Unmarshal(doc, &headers); err != nil {
		return nil, err
	}
	return headers, nil
}

// decodeFlatStrings decodes a JSON object whose values are all strings with
// no escape sequences, as encoding/json would; ok is false for anything
// else, including input encoding/json would reject.
func decodeFlatStrings(doc []byte, seen *stringTable) (headers map[string]string, ok bool) {
	i := skipSpace(doc, 0)
	if i >= len(doc) || doc[i] != '{' {
		return nil, false
	}
	headers = make(map[string]string, 4)
	i = skipSpace(doc, i+1)
	if i < len(doc) && doc[i] == '}' {
		return headers, skipSpace(doc, i+1) == len(doc)
	}
	for {
		var key, value []byte
		if key, i, ok = plainString(doc, i); !ok {
			return nil, false
		}
		if i = skipSpace(doc, i); i >= len(doc) || doc[i] != ':' {
			return nil, false
		}
		if value, i, ok = plainString(doc, skipSpace(doc, i+1)); !ok {
			return nil, false
		}
		headers[seen.intern(key)] = seen.intern(value)
		if i = skipSpace(doc, i); i >= len(doc) {
			return nil, false
		}
		switch doc[i] {
		case ',':
			i = skipSpace(doc, i+1)
		case '}':
			return headers, skipSpace(doc, i+1) == len(doc)
		default:
			return nil, false
		}
	}
}

// plainString reads a JSON string starting at doc[i] that needs no
// unescaping: no backslash, no control character, valid UTF-8. It returns
// the string's bytes and the index after its closing quote.
func plainString(doc []byte, i int) (s []byte, next int, ok bool) {
	if i >= len(doc) || doc[i] != '"' {
		return nil, 0, false
	}
	ascii := true
	for j := i + 1; j < len(doc); j++ {
		switch c := doc[j]; {
		case c == '"':
			raw := doc[i+1 : j]
			if !ascii && !utf8.Valid(raw) {
				return nil, 0, false
			}
			return raw, j + 1, true
		case c == '\\' || c < 0x20:
			return nil, 0, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, 0, false
}

// stringTable hands out one string for equal byte strings, so that a page
// of events allocates each repeated header name and value once. It holds
// at most maxStrings, so a page of distinct values costs a bounded map.
// The nil table allocates every string.
type stringTable struct {
	strings map[string]string
}

const maxStrings = 256

func (t *stringTable) intern(b []byte) string {
	if t == nil {
		return string(b)
	}
	// The lookup converts without allocating.
	if s, ok := t.strings[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(t.strings) < maxStrings {
		if t.strings == nil {
			t.strings = make(map[string]string)
		}
		t.strings[s] = s
	}
	return s
}

func skipSpace(doc []byte, i int) int {
	for i < len(doc) {
		switch doc[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}
