package main

import (
	"strings"
	"unicode"
)

// kebab turns a Go identifier into the kebab-case part of an event name:
// MoneyDeposited → money-deposited. Words start at an upper-case letter that
// follows a lower-case letter or a digit, and at the last capital of an
// acronym followed by lower case (HTTPRequestFailed → http-request-failed).
// Underscores separate words too.
//
// Two choices need stating, because event names are wire format:
//   - Digits end a word rather than start one, so they stay with what
//     precedes them: OpenedV2 → opened-v2, OrderID2Set → order-id2-set,
//     Base64Encoded → base64-encoded. The price is that an acronym with a
//     digit inside is split after the digit (E2EVerified → e2-e-verified);
//     pin such names with //mire:event name=....
//   - A lower-case "s" ending a word after an acronym is a plural, not the
//     start of a word: UserIDsAssigned → user-ids-assigned, not
//     user-i-ds-assigned.
func kebab(name string) string {
	runes := []rune(name)
	var b strings.Builder
	sep := false // an underscore asked for a '-' before the next rune
	for i, r := range runes {
		if r == '_' {
			sep = b.Len() > 0
			continue
		}
		if sep || (b.Len() > 0 && startsWord(runes, i)) {
			b.WriteByte('-')
		}
		sep = false
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// startsWord reports whether runes[i], not the first rune, begins a word.
func startsWord(runes []rune, i int) bool {
	if !unicode.IsUpper(runes[i]) {
		return false
	}
	prev := runes[i-1]
	if prev == '_' {
		return false // kebab has already separated the words
	}
	if !unicode.IsUpper(prev) {
		return true // moneyDeposited, ID2Set
	}
	// Inside a run of capitals only the last one can start a word, when
	// lower case follows: HTTPRequest → HTTP Request, but IDs stays whole.
	next := i + 1
	if next >= len(runes) || !unicode.IsLower(runes[next]) {
		return false
	}
	pluralS := runes[next] == 's' && (next+1 == len(runes) || !unicode.IsLower(runes[next+1]))
	return !pluralS
}
