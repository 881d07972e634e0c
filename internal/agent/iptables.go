package agent

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// CaptureConfig says how a workload's traffic is sent through its sidecar.
type CaptureConfig struct {
	ProxyUID      int      // the uid the agent and Envoy run as; its traffic is never captured
	OutboundPort  uint32   // Envoy's outbound listener (15001)
	InboundPort   uint32   // Envoy's inbound listener (15006)
	ExcludeInPort []uint32 // inbound ports left alone (e.g. health checks)
	// ExcludeOutPort are destination ports the workload reaches directly,
	// never through Envoy (e.g. a database speaking its own TLS).
	ExcludeOutPort []uint32
}

// Chain names, so that re-running replaces rather than duplicates.
const (
	chainOutput     = "HORIZON_OUTPUT"
	chainRedirect   = "HORIZON_REDIRECT"
	chainInbound    = "HORIZON_INBOUND"
	chainInRedirect = "HORIZON_IN_REDIRECT"
)

// CaptureRules are the iptables nat rules: inbound TCP to the inbound port,
// outbound TCP to the outbound port, except loopback and everything the
// proxy uid sends — the agent's own xDS and CSR calls and Envoy's upstream
// connections must leave as they are.
func CaptureRules(c CaptureConfig) [][]string {
	nat := func(args ...string) []string { return append([]string{"-t", "nat"}, args...) }
	uid := strconv.Itoa(c.ProxyUID)
	rules := [][]string{
		nat("-N", chainRedirect),
		nat("-A", chainRedirect, "-p", "tcp", "-j", "REDIRECT", "--to-ports", itoa(c.OutboundPort)),
		nat("-N", chainInRedirect),
		nat("-A", chainInRedirect, "-p", "tcp", "-j", "REDIRECT", "--to-ports", itoa(c.InboundPort)),
		nat("-N", chainInbound),
		nat("-A", "PREROUTING", "-p", "tcp", "-j", chainInbound),
	}
	for _, p := range c.ExcludeInPort {
		rules = append(rules, nat("-A", chainInbound, "-p", "tcp", "--dport", itoa(p), "-j", "RETURN"))
	}
	rules = append(rules,
		nat("-A", chainInbound, "-p", "tcp", "-j", chainInRedirect),
		nat("-N", chainOutput),
		nat("-A", "OUTPUT", "-p", "tcp", "-j", chainOutput),
		nat("-A", chainOutput, "-m", "owner", "--uid-owner", uid, "-j", "RETURN"),
		nat("-A", chainOutput, "-o", "lo", "-j", "RETURN"),
		nat("-A", chainOutput, "-d", "127.0.0.0/8", "-j", "RETURN"),
	)
	for _, p := range c.ExcludeOutPort {
		rules = append(rules, nat("-A", chainOutput, "-p", "tcp", "--dport", itoa(p), "-j", "RETURN"))
	}
	rules = append(rules, nat("-A", chainOutput, "-j", chainRedirect))
	return rules
}

// cleanupRules remove what CaptureRules added (errors ignored: a first run
// has nothing to remove).
func cleanupRules() [][]string {
	nat := func(args ...string) []string { return append([]string{"-t", "nat"}, args...) }
	var out [][]string
	out = append(out, nat("-D", "PREROUTING", "-p", "tcp", "-j", chainInbound), nat("-D", "OUTPUT", "-p", "tcp", "-j", chainOutput))
	for _, ch := range []string{chainOutput, chainInbound, chainRedirect, chainInRedirect} {
		out = append(out, nat("-F", ch), nat("-X", ch))
	}
	return out
}

// ApplyCapture installs the rules in the current network namespace with
// the iptables binary, replacing earlier ones.
func ApplyCapture(c CaptureConfig, iptables string) error {
	for _, r := range cleanupRules() {
		_ = exec.Command(iptables, r...).Run()
	}
	for _, r := range CaptureRules(c) {
		if out, err := exec.Command(iptables, r...).CombinedOutput(); err != nil {
			return fmt.Errorf("iptables %s: %w: %s", strings.Join(r, " "), err, out)
		}
	}
	return nil
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }
