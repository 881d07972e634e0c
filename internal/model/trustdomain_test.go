package model

import (
	"strings"
	"testing"
)

// Istio's trust-domain rule: what it accepts is accepted, what it refuses
// (the hostile review's 'td/x' and 'evil"domain' among them) is refused.
func TestValidateTrustDomain(t *testing.T) {
	for _, td := range []string{"cluster.local", "cluster.local.", "example.com", "Example-1.org", "td", "a.b.c.d", strings.Repeat("a", 63) + ".x",
		strings.TrimSuffix(strings.Repeat(strings.Repeat("a", 63)+".", 4), ".")} {
		if err := ValidateTrustDomain(td); err != nil {
			t.Errorf("ValidateTrustDomain(%q) = %v, want nil", td, err)
		}
	}
	for _, td := range []string{"", "td/x", `evil"domain`, "a b", "a..b", ".a", ".", "a.-b", "b-.a", "a_b", "host:1", "u@h", "spiffe://x",
		"t\x00d", "é.com", strings.Repeat("a", 64), strings.Repeat("a.", 127) + "aa", strings.Repeat("x", 100<<10)} {
		err := ValidateTrustDomain(td)
		if err == nil {
			t.Errorf("ValidateTrustDomain(%q) = nil, want an error", td)
			continue
		}
		if len(err.Error()) > 400 {
			t.Errorf("ValidateTrustDomain of %d bytes: error of %d bytes echoes the value", len(td), len(err.Error()))
		}
	}
}
