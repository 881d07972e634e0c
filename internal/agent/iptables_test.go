package agent

import (
	"strings"
	"testing"
)

func TestCaptureRules(t *testing.T) {
	rules := CaptureRules(CaptureConfig{ProxyUID: 1337, OutboundPort: 15001, InboundPort: 15006, ExcludeInPort: []uint32{15021}})
	var lines []string
	for _, r := range rules {
		lines = append(lines, strings.Join(r, " "))
	}
	all := strings.Join(lines, "\n")
	for _, want := range []string{
		"-t nat -A HORIZON_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
		"-t nat -A HORIZON_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
		"-t nat -A HORIZON_INBOUND -p tcp --dport 15021 -j RETURN",
		"-t nat -A HORIZON_OUTPUT -m owner --uid-owner 1337 -j RETURN",
		"-t nat -A HORIZON_OUTPUT -o lo -j RETURN",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("missing rule %q in\n%s", want, all)
		}
	}
	// The proxy uid and loopback exclusions must come before the redirect.
	idx := func(s string) int { return strings.Index(all, s) }
	if idx("--uid-owner 1337") > idx("-A HORIZON_OUTPUT -j HORIZON_REDIRECT") || idx("--dport 15021") > idx("-A HORIZON_INBOUND -p tcp -j HORIZON_IN_REDIRECT") {
		t.Errorf("exclusions come after the redirects:\n%s", all)
	}
}

func TestCaptureRulesExcludeOutbound(t *testing.T) {
	rules := CaptureRules(CaptureConfig{ProxyUID: 1337, OutboundPort: 15001, InboundPort: 15006, ExcludeOutPort: []uint32{5432, 6379}})
	var lines []string
	for _, r := range rules {
		lines = append(lines, strings.Join(r, " "))
	}
	all := strings.Join(lines, "\n")
	redirect := strings.Index(all, "-A HORIZON_OUTPUT -j HORIZON_REDIRECT")
	for _, p := range []string{"5432", "6379"} {
		want := "-t nat -A HORIZON_OUTPUT -p tcp --dport " + p + " -j RETURN"
		i := strings.Index(all, want)
		if i < 0 {
			t.Fatalf("missing rule %q in\n%s", want, all)
		}
		if i > redirect {
			t.Errorf("outbound exclusion of %s comes after the redirect:\n%s", p, all)
		}
	}
	// Outbound exclusions never touch the inbound chain, and vice versa.
	if strings.Contains(all, "HORIZON_INBOUND -p tcp --dport 5432") {
		t.Errorf("outbound port excluded inbound:\n%s", all)
	}
	if n := strings.Count(all, "--dport"); n != 2 {
		t.Errorf("%d --dport rules, want 2:\n%s", n, all)
	}
}
