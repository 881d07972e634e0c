// Package clip bounds what a message or a log line repeats of text a
// client sent: a value of any size is quoted by its first Max bytes and
// its length, never whole.
package clip

import (
	"strconv"
	"unicode/utf8"
)

// Max is how many bytes of a value are repeated.
const Max = 64

// Quote is strconv.Quote(s) when s has at most Max bytes; otherwise the
// quoted first Max bytes (cut at a character boundary), "..." and the
// length: "\"abc...\"... (204800 bytes)".
func Quote(s string) string {
	if len(s) <= Max {
		return strconv.Quote(s)
	}
	return strconv.Quote(prefix(s)) + "... (" + strconv.Itoa(len(s)) + " bytes)"
}

// String is s when it has at most Max bytes; otherwise its first Max bytes
// (cut at a character boundary), "..." and the length. For log attributes,
// which the handler quotes itself.
func String(s string) string {
	if len(s) <= Max {
		return s
	}
	return prefix(s) + "... (" + strconv.Itoa(len(s)) + " bytes)"
}

// prefix is s cut to at most Max bytes without splitting a UTF-8 sequence.
func prefix(s string) string {
	n := Max
	for n > 0 && n < len(s) && !utf8.RuneStart(s[n]) {
		n--
	}
	if n == 0 { // no character boundary near: invalid UTF-8, cut anyway
		n = Max
	}
	return s[:n]
}
