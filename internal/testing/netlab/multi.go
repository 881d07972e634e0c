package netlab

import (
	"fmt"

	"github.com/horizonmesh/horizon/internal/netns"
)

// Bridge adds a further bridge namespace (PREFIX-name, bridge br0, no
// address) and returns its name: one per isolated network segment.
func (l *Lab) Bridge(name string) string {
	l.t.Helper()
	ns := l.prefix + "-" + name
	l.addBridge(ns, "")
	return ns
}

// Namespace adds an empty namespace PREFIX-name (loopback up).
func (l *Lab) Namespace(name string) string {
	l.t.Helper()
	ns := l.prefix + "-" + name
	l.addNS(ns)
	l.run("ip", "-n", ns, "link", "set", "lo", "up")
	return ns
}

// Attach plugs namespace ns into the bridge of bridgeNS as interface ifname
// with address cidr.
func (l *Lab) Attach(ns, bridgeNS, ifname, cidr string) {
	l.t.Helper()
	l.links++
	var p netns.Plan
	p.Veth(netns.End{NS: bridgeNS, Name: fmt.Sprintf("%sl%da", l.prefix, l.links), Bridge: "br0"},
		netns.End{NS: ns, Name: fmt.Sprintf("%sl%db", l.prefix, l.links), As: ifname, CIDR: cidr})
	l.apply(&p)
}

// AttachRoot plugs the test's own namespace into a bridge (address cidr).
func (l *Lab) AttachRoot(bridgeNS, cidr string) {
	l.t.Helper()
	var p netns.Plan
	p.Veth(netns.End{NS: bridgeNS, Name: l.prefix + "-rootp", Bridge: "br0"}, netns.End{Name: l.prefix + "-root", CIDR: cidr})
	l.apply(&p)
}

// Hosts writes /etc/netns/ns/hosts.
func (l *Lab) Hosts(ns string, lines ...string) {
	l.t.Helper()
	l.writeHosts(ns, lines)
}
