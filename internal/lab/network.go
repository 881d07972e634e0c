package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
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

// run runs a command and returns its combined output; stdin when not nil.
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

// bridgeMAC is the fixed, locally administered address of the lab's bridge n.
func bridgeMAC(n int) string { return fmt.Sprintf("02:68:6c:00:00:%02x", n) }

// NetworkCommands are the commands that build the lab's networks.
func NetworkCommands() [][]string {
	in := func(ns string, args ...string) []string { return append([]string{"ip", "-n", ns}, args...) }
	exe := func(ns string, args ...string) []string { return append([]string{"ip", "netns", "exec", ns}, args...) }
	cmds := [][]string{
		{"ip", "netns", "add", PublicNS},
		in(PublicNS, "link", "set", "lo", "up"),
		// Each bridge gets a fixed address: one created without takes the
		// lowest of its ports' and changes it as pods come and go, and a pod
		// that resolved its gateway before kept sending to the old one.
		in(PublicNS, "link", "add", "br0", "address", bridgeMAC(0), "type", "bridge"),
		in(PublicNS, "link", "set", "br0", "up"),
	}
	for i, c := range Clusters {
		r := c.RouterNS()
		a, b := fmt.Sprintf("%sr%da", NetPrefix, i+1), fmt.Sprintf("%sr%db", NetPrefix, i+1)
		cmds = append(cmds,
			[]string{"ip", "netns", "add", r},
			in(r, "link", "set", "lo", "up"),
			in(r, "link", "add", "br0", "address", bridgeMAC(i+1), "type", "bridge"),
			in(r, "addr", "add", c.Router+"/"+strconv.Itoa(netip.MustParsePrefix(c.PodCIDR).Bits()), "dev", "br0"),
			in(r, "link", "set", "br0", "up"),
			[]string{"ip", "link", "add", a, "type", "veth", "peer", "name", b},
			[]string{"ip", "link", "set", a, "netns", PublicNS},
			[]string{"ip", "link", "set", b, "netns", r},
			in(PublicNS, "link", "set", a, "master", "br0", "up"),
			in(r, "link", "set", b, "name", "pub0"),
			in(r, "addr", "add", c.Public+"/24", "dev", "pub0"),
			in(r, "link", "set", "pub0", "up"),
			exe(r, "sysctl", "-qw", "net.ipv4.ip_forward=1"),
			exe(r, "iptables", "-w", "-t", "nat", "-N", servicesChain),
			exe(r, "iptables", "-w", "-t", "nat", "-A", "PREROUTING", "-j", servicesChain),
			// A pod reaching a Service whose endpoint is on its own
			// network through the router (hairpin): the answer must come
			// back through the router too.
			exe(r, "iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-s", c.PodCIDR, "-d", c.PodCIDR,
				"-m", "conntrack", "--ctstate", "DNAT", "-j", "MASQUERADE"),
			exe(r, "iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-o", "pub0", "-j", "MASQUERADE"),
		)
		// The API server (on this machine's loopback) calls admission
		// webhooks at their Service's ClusterIP: this machine routes the
		// cluster's Service and pod ranges to its router, over a veth
		// (link-local /30) that goes, with its routes, when the router's
		// namespace does.
		h, hr := fmt.Sprintf("%sh%d", NetPrefix, i+1), fmt.Sprintf("%sh%dr", NetPrefix, i+1)
		hostAddr, routerAddr := hostLink(i)
		cmds = append(cmds,
			[]string{"ip", "link", "add", h, "type", "veth", "peer", "name", hr},
			[]string{"ip", "link", "set", hr, "netns", r},
			in(r, "link", "set", hr, "name", "host0"),
			in(r, "addr", "add", routerAddr+"/30", "dev", "host0"),
			in(r, "link", "set", "host0", "up"),
			[]string{"ip", "addr", "add", hostAddr + "/30", "dev", h},
			[]string{"ip", "link", "set", h, "up"},
			[]string{"ip", "route", "add", c.ServiceCIDR, "via", routerAddr, "dev", h},
			[]string{"ip", "route", "add", c.PodCIDR, "via", routerAddr, "dev", h},
		)
	}
	return cmds
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
	for _, c := range NetworkCommands() {
		if _, err := runCmd(ctx, nil, c...); err != nil {
			_ = TeardownNetworks(context.WithoutCancel(ctx))
			return fmt.Errorf("building the lab's networks: %w", err)
		}
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

// LabNamespaces lists the network namespaces whose name starts with
// NetPrefix (the routers', the public segment's, the pods').
func LabNamespaces(ctx context.Context) ([]string, error) {
	out, err := runCmd(ctx, nil, "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], NetPrefix) {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// LabLinks lists this namespace's interfaces whose name starts with
// NetPrefix (veths left half-made by a crash).
func LabLinks(ctx context.Context) ([]string, error) {
	out, err := runCmd(ctx, nil, "ip", "-o", "link", "show")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if strings.HasPrefix(name, NetPrefix) {
			names = append(names, name)
		}
	}
	return names, nil
}

// TeardownNetworks kills every process in a lab namespace (pods left by a
// killed lab node) and deletes the namespaces — their interfaces and
// iptables rules go with them — and any lab interface left in this
// namespace. Nothing there is fine.
func TeardownNetworks(ctx context.Context) error {
	nss, err := LabNamespaces(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, ns := range nss {
		if pids, _ := runCmd(ctx, nil, "ip", "netns", "pids", ns); strings.TrimSpace(pids) != "" {
			_, _ = runCmd(ctx, nil, append([]string{"kill", "-KILL"}, strings.Fields(pids)...)...)
		}
		if _, err := runCmd(ctx, nil, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	links, err := LabLinks(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for _, l := range links {
		if _, err := runCmd(ctx, nil, "ip", "link", "del", l); err != nil {
			// The peer of a veth whose other end was in a namespace just
			// deleted goes with it, a moment later.
			if _, serr := runCmd(ctx, nil, "ip", "link", "show", l); serr != nil {
				continue
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
