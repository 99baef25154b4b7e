package store

import (
	"cmp"
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/mire-go/mire/core"
)

// PostgreSQL's numeric limits, which jsonb applies to every number: the
// leading digit's power of ten at most 131071 (a weight of 32767 base-10000
// digits), at most 16383 digits after the point as written (trailing zeros
// and a negative exponent count), and an exponent strictly between
// -(2^31-1)/2 and (2^31-1)/2, even for zero.
const (
	numericMaxPower    = 131071
	numericMaxScale    = 16383
	numericMaxExponent = 1<<30 - 1
)

// stringStop marks the bytes that end a run of plain string content: the
// closing quote, an escape, and the start of a multi-byte UTF-8 sequence.
var stringStop = func() (stop [256]bool) {
	stop['"'], stop['\\'] = true, true
	for c := utf8.RuneSelf; c < 256; c++ {
		stop[c] = true
	}
	return stop
}()

// checkJSONB rejects data or headers that PostgreSQL's jsonb input would
// refuse (see scanJSONB) or that lost invalid UTF-8 to encoding/json.
func checkJSONB(event core.EventData, eventType string, data, headers []byte) error {
	invalid := func(reason string) error {
		return &core.InvalidInputError{Field: "event data", Value: eventType, Reason: reason}
	}
	reason, replaced := scanJSONB(data)
	if reason != "" {
		return invalid("data " + reason)
	}
	if replaced {
		if where := invalidUTF8(reflect.ValueOf(event)); where != "" {
			return invalid(fmt.Sprintf("data holds a string that is not valid UTF-8 at %s, which would be stored as U+FFFD", where))
		}
	}
	// Header keys and values were checked for UTF-8 before encoding.
	if reason, _ := scanJSONB(headers); reason != "" {
		return invalid("headers " + reason)
	}
	return nil
}

// scanJSONB reports why PostgreSQL's jsonb input would refuse doc, a
// document encoding/json produced, or "" if it would not: invalid UTF-8
// (which a MarshalJSON method can pass through), the escaped NUL, an escaped
// UTF-16 surrogate that is not part of a pair, or a number outside numeric's
// range. Catching these here gives a clear error instead of a failed
// statement, which would also abort a caller's transaction. replaced reports
// a \ufffd escape: encoding/json writes one in place of each invalid UTF-8
// sequence in a string, and writes a genuine U+FFFD as itself.
//
// It is one pass over the bytes and assumes doc is valid JSON, as
// encoding/json checks; ordinary strings and numbers cost a table lookup or
// a comparison per byte.
func scanJSONB(doc []byte) (reason string, replaced bool) {
	for i := 0; i < len(doc); {
		switch c := doc[i]; {
		case c == '"':
			i++
			for i < len(doc) {
				if !stringStop[doc[i]] {
					i++
					continue
				}
				if doc[i] == '"' {
					break
				}
				if doc[i] != '\\' {
					r, size := utf8.DecodeRune(doc[i:])
					if r == utf8.RuneError && size == 1 {
						return "is not valid UTF-8", replaced
					}
					i += size
					continue
				}
				if i+1 < len(doc) && doc[i+1] != 'u' {
					i += 2
					continue
				}
				r := escapedRune(doc, i)
				switch {
				case r == 0:
					return `contains a NUL character (\u0000), which PostgreSQL jsonb cannot store`, replaced
				case r == utf8.RuneError:
					replaced = true
				case r >= 0xd800 && r < 0xdc00:
					if low := escapedRune(doc, i+6); low >= 0xdc00 && low < 0xe000 {
						i += 6
						break
					}
					fallthrough
				case r >= 0xdc00 && r < 0xe000:
					return fmt.Sprintf(`contains an escaped UTF-16 surrogate that is not part of a pair (%s), which PostgreSQL jsonb rejects`,
						doc[i:min(i+6, len(doc))]), replaced
				case r < 0:
					return "is not valid JSON", replaced
				}
				i += 6
			}
			i++ // the closing quote
		case c == '-' || c >= '0' && c <= '9':
			start, exponent := i, false
			for i++; i < len(doc); i++ {
				c := doc[i]
				if c >= '0' && c <= '9' || c == '.' || c == '-' || c == '+' {
					continue
				}
				if c == 'e' || c == 'E' {
					exponent = true
					continue
				}
				break
			}
			// Without an exponent, a number shorter than the scale limit
			// fits; only others need a closer look.
			if (exponent || i-start > numericMaxScale) && !numericFits(doc[start:i]) {
				number := string(doc[start:i])
				if len(number) > 40 {
					number = number[:20] + "…" + number[len(number)-20:]
				}
				return fmt.Sprintf("contains the number %s, outside the range of PostgreSQL numeric that jsonb stores numbers in", number), replaced
			}
		case c >= utf8.RuneSelf:
			return "is not valid UTF-8", replaced
		default:
			i++
		}
	}
	return "", replaced
}

// escapedRune decodes the \uXXXX escape at doc[i:], or returns -1.
func escapedRune(doc []byte, i int) rune {
	if i+6 > len(doc) || doc[i] != '\\' || doc[i+1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range doc[i+2 : i+6] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return -1
		}
	}
	return r
}

// numericFits reports whether PostgreSQL's numeric input accepts the JSON
// number n; see numericMaxPower.
func numericFits(n []byte) bool {
	if len(n) > 0 && n[0] == '-' {
		n = n[1:]
	}
	mantissa, exp, _ := strings.Cut(string(n), "e")
	if len(mantissa) == len(n) {
		mantissa, exp, _ = strings.Cut(string(n), "E")
	}
	intPart, fracPart, _ := strings.Cut(mantissa, ".")
	exponent := 0 // saturates beyond the limit, as strtol does beyond its range
	if exp != "" {
		negative := exp[0] == '-'
		for _, c := range strings.TrimLeft(exp, "+-") {
			if exponent <= numericMaxExponent {
				exponent = exponent*10 + int(c-'0')
			}
		}
		if exponent >= numericMaxExponent {
			return false
		}
		if negative {
			exponent = -exponent
		}
	}
	if len(fracPart)-exponent > numericMaxScale {
		return false
	}
	if first := strings.IndexFunc(intPart, func(c rune) bool { return c != '0' }); first >= 0 {
		return len(intPart)-1-first+exponent <= numericMaxPower
	}
	if first := strings.IndexFunc(fracPart, func(c rune) bool { return c != '0' }); first >= 0 {
		return -(first+1)+exponent <= numericMaxPower
	}
	return true // zero
}

// invalidUTF8 returns where v holds a string, map key or MarshalText result
// that is not valid UTF-8, which encoding/json would have replaced by
// U+FFFD, or "" if it holds none. It looks into every exported field,
// including those of types with their own MarshalJSON (which may call
// encoding/json), skipping fields tagged "-". Only documents with a \ufffd
// escape get here, so its cost does not matter.
func invalidUTF8(v reflect.Value) string {
	return walkUTF8(v, "", make(map[uintptr]bool), 0)
}

var (
	jsonMarshalerType = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

func walkUTF8(v reflect.Value, path string, seen map[uintptr]bool, depth int) string {
	if !v.IsValid() || depth > 1000 {
		return ""
	}
	at := func() string { return cmp.Or(path, "the value") }
	t := v.Type()
	if t.Implements(textMarshalerType) && !t.Implements(jsonMarshalerType) && v.CanInterface() {
		if v.Kind() == reflect.Pointer && v.IsNil() {
			return ""
		}
		marshaler, _ := v.Interface().(encoding.TextMarshaler) // t implements it
		if text, err := marshaler.MarshalText(); err == nil && !utf8.Valid(text) {
			return at()
		}
		return ""
	}
	switch v.Kind() {
	case reflect.String:
		if !utf8.ValidString(v.String()) {
			return at()
		}
	case reflect.Pointer, reflect.Map, reflect.Slice:
		if v.IsNil() || t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
			return "" // []byte encodes as base64
		}
		if seen[v.Pointer()] && v.Kind() != reflect.Slice {
			return ""
		}
		seen[v.Pointer()] = true
		switch v.Kind() {
		case reflect.Pointer:
			return walkUTF8(v.Elem(), path, seen, depth+1)
		case reflect.Map:
			for iter := v.MapRange(); iter.Next(); {
				key := iter.Key()
				if where := walkUTF8(key, path+"[key]", seen, depth+1); where != "" {
					return fmt.Sprintf("%s[%q]", path, key)
				}
				if where := walkUTF8(iter.Value(), fmt.Sprintf("%s[%q]", path, key), seen, depth+1); where != "" {
					return where
				}
			}
			return ""
		}
		fallthrough
	case reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return ""
		}
		for i := range v.Len() {
			if where := walkUTF8(v.Index(i), fmt.Sprintf("%s[%d]", path, i), seen, depth+1); where != "" {
				return where
			}
		}
	case reflect.Interface:
		return walkUTF8(v.Elem(), path, seen, depth+1)
	case reflect.Struct:
		for i := range v.NumField() {
			field := t.Field(i)
			if !field.IsExported() && !field.Anonymous || field.Tag.Get("json") == "-" {
				continue
			}
			if where := walkUTF8(v.Field(i), path+"."+field.Name, seen, depth+1); where != "" {
				return where
			}
		}
	}
	return ""
}
