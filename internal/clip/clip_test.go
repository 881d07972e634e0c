package clip

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestQuoteAndString(t *testing.T) {
	if got := Quote("short"); got != `"short"` {
		t.Errorf("Quote(short) = %s", got)
	}
	if got := String("short"); got != "short" {
		t.Errorf("String(short) = %s", got)
	}
	long := strings.Repeat("x", 200<<10)
	for name, got := range map[string]string{"Quote": Quote(long), "String": String(long)} {
		if len(got) > Max+32 || !strings.HasSuffix(got, "... (204800 bytes)") {
			t.Errorf("%s of 200 KiB: %d bytes, %q", name, len(got), got[:min(len(got), 200)])
		}
	}
	// A multi-byte character across the cut is not split.
	s := strings.Repeat("a", Max-1) + "é" + strings.Repeat("b", 10)
	if got := String(s); !utf8.ValidString(got) || !strings.HasPrefix(got, strings.Repeat("a", Max-1)+"...") {
		t.Errorf("String cut a character: %q", got)
	}
	if got := Quote(s); !strings.HasPrefix(got, `"`+strings.Repeat("a", Max-1)+`"...`) {
		t.Errorf("Quote cut a character: %q", got)
	}
}
