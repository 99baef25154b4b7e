package core

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

const (
	// MaxStreamIDLength is the longest stream ID accepted, in bytes.
	MaxStreamIDLength = 255

	// MaxEventTypeLength is the longest event type accepted, in bytes.
	MaxEventTypeLength = 255

	// CategorySeparator separates a stream's category from the aggregate ID
	// in a stream ID: "account-42" is in category "account".
	CategorySeparator = "-"
)

// ValidateStreamID reports an [InvalidInputError] unless id is a usable
// stream ID: not empty, at most [MaxStreamIDLength] bytes of valid UTF-8,
// without NUL bytes (which PostgreSQL text cannot hold).
func ValidateStreamID(id string) error {
	return validateText("stream id", id, MaxStreamIDLength)
}

// ValidateEventType applies the same rules as [ValidateStreamID] to an event
// type, with [MaxEventTypeLength].
func ValidateEventType(eventType string) error {
	return validateText("event type", eventType, MaxEventTypeLength)
}

// ValidateCategory reports an [InvalidInputError] unless category can prefix
// stream IDs: a valid stream ID that does not contain [CategorySeparator].
func ValidateCategory(category string) error {
	if err := validateText("category", category, MaxStreamIDLength); err != nil {
		return err
	}
	if strings.Contains(category, CategorySeparator) {
		return &InvalidInputError{Field: "category", Value: category, Reason: fmt.Sprintf("must not contain %q, which separates category from id", CategorySeparator)}
	}
	return nil
}

// StreamID returns the stream ID of the aggregate id in category.
func StreamID(category, id string) string {
	return category + CategorySeparator + id
}

func validateText(field, s string, maxLen int) error {
	invalid := func(reason string) error {
		return &InvalidInputError{Field: field, Value: truncateForError(s), Reason: reason}
	}
	switch {
	case s == "":
		return invalid("must not be empty")
	case len(s) > maxLen:
		return invalid(fmt.Sprintf("is %d bytes, over the limit of %d", len(s), maxLen))
	case !utf8.ValidString(s):
		return invalid("is not valid UTF-8")
	case strings.IndexByte(s, 0) >= 0:
		return invalid("contains a NUL byte")
	}
	return nil
}

// truncateForError keeps error messages readable when the bad value is huge,
// cutting at a character boundary so valid UTF-8 stays valid.
func truncateForError(s string) string {
	const keep = 64
	if len(s) <= keep {
		return s
	}
	cut := keep
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
