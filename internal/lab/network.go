package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/horizonmesh/horizon/internal/netns"
)

// The lab's networks, as the cross-network test builds them: network1
// (cluster1's pods) and network2 (cluster2's), each a bridge br0 in its
// router's namespace (the pods' gateway), with no route between them; a
// public segment (TEST-NET-3, 203.0.113.0/24, bridge br0 in namespace
// hlab-pub) joins the routers (pub0 at .1, .2), which masquerade towards
// it. Load-balancer addresses are the routers' too (DNAT to the Service's
// pods), ClusterIPs are DNATed on the router for pods without a sidecar.
// This machine routes each cluster's Service and pod ranges to its router
// (the API servers call webhooks), over a veth hlabhN.
// Every namespace and interface name starts with NetPrefix, and every
// iptables rule lives inside a router namespace: deleting the namespaces
// removes everything.
const (
	// NetPrefix starts every namespace and interface the lab makes.
	NetPrefix = "hlab"
	// PublicNS holds the public segment's bridge.
	PublicNS = NetPrefix + "-pub"
	// PublicCIDR is the public segment.
	PublicCIDR = "203.0.113.0/24"
	// servicesChain is the routers' nat chain of Service DNAT rules.
	servicesChain = "HLAB-SERVICES"
)

// runCmd runs a command and returns its combined output; stdin when not nil.
func runCmd(ctx context.Context, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// bridgeMAC is the fixed address of the lab's bridge n (netns.Plan.Bridge
// says why).
func bridgeMAC(n int) string { return netns.BridgeMAC('l', n) }

// NetworkCommands are the commands that build the lab's networks.
func NetworkCommands() [][]string {
	var p netns.Plan
	p.Namespace(PublicNS)
	p.Up(PublicNS, "lo")
	p.Bridge(PublicNS, "br0", bridgeMAC(0), "")
	for i, c := range Clusters {
		r := c.RouterNS()
		p.Namespace(r)
		p.Up(r, "lo")
		p.Bridge(r, "br0", bridgeMAC(i+1), c.Router+"/"+strconv.Itoa(netip.MustParsePrefix(c.PodCIDR).Bits()))
		p.Veth(netns.End{NS: PublicNS, Name: fmt.Sprintf("%sr%da", NetPrefix, i+1), Bridge: "br0"},
			netns.End{NS: r, Name: fmt.Sprintf("%sr%db", NetPrefix, i+1), As: "pub0", CIDR: c.Public + "/24"})
		p.Exec(r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		p.Exec(r, "iptables", "-w", "-t", "nat", "-N", servicesChain)
		p.Exec(r, "iptables", "-w", "-t", "nat", "-A", "PREROUTING", "-j", servicesChain)
		// A pod reaching a Service whose endpoint is on its own network
		// through the router (hairpin): the answer must come back through
		// the router too.
		p.Exec(r, "iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-s", c.PodCIDR, "-d", c.PodCIDR,
			"-m", "conntrack", "--ctstate", "DNAT", "-j", "MASQUERADE")
		p.Exec(r, "iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-o", "pub0", "-j", "MASQUERADE")
		// The API server (on this machine's loopback) calls admission
		// webhooks at their Service's ClusterIP: this machine routes the
		// cluster's Service and pod ranges to its router, over a veth
		// (link-local /30) that goes, with its routes, when the router's
		// namespace does.
		hostAddr, routerAddr := hostLink(i)
		h := fmt.Sprintf("%sh%d", NetPrefix, i+1)
		p.Veth(netns.End{NS: r, Name: h + "r", As: "host0", CIDR: routerAddr + "/30"}, netns.End{Name: h, CIDR: hostAddr + "/30"})
		p.IP("", "route", "add", c.ServiceCIDR, "via", routerAddr, "dev", h)
		p.IP("", "route", "add", c.PodCIDR, "via", routerAddr, "dev", h)
	}
	return p.Commands()
}

// hostLink is the addresses of this machine's and the i-th router's ends
// of their link (169.254.100.4i+1 and +2).
func hostLink(i int) (host, router string) {
	return fmt.Sprintf("169.254.100.%d", 4*i+1), fmt.Sprintf("169.254.100.%d", 4*i+2)
}

// SetupNetworks builds the lab's networks (after removing leftovers). On
// failure what was made is removed.
func SetupNetworks(ctx context.Context) error {
	if err := TeardownNetworks(ctx); err != nil {
		return fmt.Errorf("removing the earlier lab's networks: %w", err)
	}
	if err := netns.RunAll(ctx, netns.ExecRunner{}, NetworkCommands()); err != nil {
		_ = TeardownNetworks(context.WithoutCancel(ctx))
		return fmt.Errorf("building the lab's networks: %w", err)
	}
	// With br_netfilter loaded, frames a router's own bridge forwards would
	// go through its iptables too, and a pod reaching itself through a
	// Service would get no answer: the routers route, they do not filter
	// bridged frames (the setting is per namespace; none without the
	// module).
	if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err == nil {
		for _, c := range Clusters {
			if _, err := runCmd(ctx, nil, "ip", "netns", "exec", c.RouterNS(), "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"); err != nil {
				_ = TeardownNetworks(context.WithoutCancel(ctx))
				return fmt.Errorf("building the lab's networks: %w", err)
			}
		}
	}
	return nil
}

// DefaultOwnerFile records which state directory's lab holds the
// machine's lab networks (Options.OwnerFile).
const DefaultOwnerFile = "/run/horizon/lab-owner"

// readOwner is the state directory the owner file names ("" without one).
func readOwner(file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// writeOwner records stateDir as the networks' owner.
func writeOwner(file, stateDir string) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	return os.WriteFile(file, []byte(stateDir+"\n"), 0o644)
}

// LabNamespaces lists the network namespaces whose name starts with
// NetPrefix (the routers', the public segment's, the pods').
func LabNamespaces(ctx context.Context) ([]string, error) {
	return netns.List(ctx, netns.ExecRunner{}, NetPrefix)
}

// LabLinks lists this namespace's interfaces whose name starts with
// NetPrefix (veths left half-made by a crash).
func LabLinks(ctx context.Context) ([]string, error) {
	return netns.Links(ctx, netns.ExecRunner{}, NetPrefix)
}

// TeardownNetworks kills every process in a lab namespace (pods left by a
// killed lab node) and deletes the namespaces — their interfaces and
// iptables rules go with them — and any lab interface left in this
// namespace. Nothing there is fine.
func TeardownNetworks(ctx context.Context) error {
	r := netns.ExecRunner{}
	return errors.Join(netns.DeleteAll(ctx, r, NetPrefix), netns.DeleteLinks(ctx, r, NetPrefix))
}
