// Package netns builds networks from Linux network namespaces, bridges and
// veth pairs with iproute2, removes them, and opens sockets inside a
// namespace. The lab's networks (internal/lab: its routers and public
// segment), the lab node's pod namespaces (internal/labnode) and the
// tests' networks (internal/testing/netlab) are all made of these pieces:
// a Plan of commands (pure, so that what is built can be tested without
// root), a Runner that runs them, and a teardown that kills what still runs
// in a namespace before deleting it.
package netns

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Runner runs a command (iproute2, iptables, sysctl, kill) and returns its
// combined output.
type Runner interface {
	Run(ctx context.Context, args ...string) (string, error)
}

// ExecRunner runs commands on this machine.
type ExecRunner struct{}

// Run runs args[0] with args[1:]; a failure names the command and its
// output.
func (ExecRunner) Run(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// RunAll runs cmds in order and stops at the first that fails.
func RunAll(ctx context.Context, r Runner, cmds [][]string) error {
	for _, c := range cmds {
		if _, err := r.Run(ctx, c...); err != nil {
			return err
		}
	}
	return nil
}

// Plan is a list of commands that build part of a network, in order.
type Plan struct {
	cmds [][]string
}

// Commands are the plan's commands.
func (p *Plan) Commands() [][]string { return p.cmds }

// Add appends a command as it is.
func (p *Plan) Add(args ...string) { p.cmds = append(p.cmds, args) }

// Namespace adds network namespace ns (its loopback stays down: Up(ns,
// "lo")).
func (p *Plan) Namespace(ns string) { p.Add("ip", "netns", "add", ns) }

// IP runs ip with args in namespace ns ("" for this one).
func (p *Plan) IP(ns string, args ...string) { p.Add(ipIn(ns, args...)...) }

// Exec runs a program inside namespace ns (sysctl, iptables).
func (p *Plan) Exec(ns string, args ...string) {
	p.Add(append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// Up sets link up in namespace ns.
func (p *Plan) Up(ns, link string) { p.IP(ns, "link", "set", link, "up") }

// DefaultRoute routes namespace ns's traffic via gateway.
func (p *Plan) DefaultRoute(ns, gateway string) { p.IP(ns, "route", "add", "default", "via", gateway) }

// Bridge adds bridge name in namespace ns with the fixed address mac
// (BridgeMAC), with address cidr unless "", and sets it up.
//
// The address is fixed because a bridge made without one takes the lowest
// address of its ports and changes it as ports come and go: a namespace
// that resolved its gateway (the bridge) before another was plugged in
// kept sending to the old address, and its routed traffic was dropped
// until its neighbour entry expired (tens of seconds).
func (p *Plan) Bridge(ns, name, mac, cidr string) {
	p.IP(ns, "link", "add", name, "address", mac, "type", "bridge")
	if cidr != "" {
		p.IP(ns, "addr", "add", cidr, "dev", name)
	}
	p.Up(ns, name)
}

// BridgeMAC is a fixed, locally administered address for bridge n of a
// family (one byte per user of this package, so that their bridges never
// share an address): 02:68:FAMILY:00:NN:NN.
func BridgeMAC(family byte, n int) string {
	return fmt.Sprintf("02:68:%02x:00:%02x:%02x", family, n>>8&0xff, n&0xff)
}

// End is one end of a veth pair.
type End struct {
	// NS is the namespace the end goes to ("" stays in this one).
	NS string
	// Name is the end's name when made: at most 15 bytes, and unique in
	// this namespace while the pair is made here.
	Name string
	// Bridge, when set, makes the end a port of that bridge in NS (up, no
	// address). Otherwise the end is renamed As (when set), given CIDR
	// (when set) and set up.
	Bridge   string
	As, CIDR string
}

// Veth adds a veth pair with ends a and b: made here (b moved to its
// namespace as it is made), a moved to its namespace, then each end set up
// as it says.
func (p *Plan) Veth(a, b End) {
	add := []string{"ip", "link", "add", a.Name, "type", "veth", "peer", "name", b.Name}
	if b.NS != "" {
		add = append(add, "netns", b.NS)
	}
	p.Add(add...)
	if a.NS != "" {
		p.Add("ip", "link", "set", a.Name, "netns", a.NS)
	}
	p.end(a)
	p.end(b)
}

func (p *Plan) end(e End) {
	if e.Bridge != "" {
		p.IP(e.NS, "link", "set", e.Name, "master", e.Bridge, "up")
		return
	}
	name := e.Name
	if e.As != "" && e.As != name {
		p.IP(e.NS, "link", "set", name, "name", e.As)
		name = e.As
	}
	if e.CIDR != "" {
		p.IP(e.NS, "addr", "add", e.CIDR, "dev", name)
	}
	p.Up(e.NS, name)
}

func ipIn(ns string, args ...string) []string {
	if ns == "" {
		return append([]string{"ip"}, args...)
	}
	return append([]string{"ip", "-n", ns}, args...)
}
