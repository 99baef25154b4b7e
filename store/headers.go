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
func decodeHeaders(doc []byte) (map[string]string, error) {
	if headers, ok := decodeFlatStrings(doc); ok {
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
func decodeFlatStrings(doc []byte) (headers map[string]string, ok bool) {
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
		var key, value string
		if key, i, ok = plainString(doc, i); !ok {
			return nil, false
		}
		if i = skipSpace(doc, i); i >= len(doc) || doc[i] != ':' {
			return nil, false
		}
		if value, i, ok = plainString(doc, skipSpace(doc, i+1)); !ok {
			return nil, false
		}
		headers[key] = value
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
// the string and the index after its closing quote.
func plainString(doc []byte, i int) (s string, next int, ok bool) {
	if i >= len(doc) || doc[i] != '"' {
		return "", 0, false
	}
	ascii := true
	for j := i + 1; j < len(doc); j++ {
		switch c := doc[j]; {
		case c == '"':
			raw := doc[i+1 : j]
			if !ascii && !utf8.Valid(raw) {
				return "", 0, false
			}
			return string(raw), j + 1, true
		case c == '\\' || c < 0x20:
			return "", 0, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", 0, false
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
