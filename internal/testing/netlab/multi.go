package netlab

import "fmt"

// Bridge adds a further bridge namespace (PREFIX-name, bridge br0, no
// address) and returns its name: one per isolated network segment.
func (l *Lab) Bridge(name string) string {
	l.t.Helper()
	ns := l.prefix + "-" + name
	l.addNS(ns)
	l.In(ns, "ip", "link", "add", "br0", "address", l.bridgeMAC(), "type", "bridge")
	l.In(ns, "ip", "link", "set", "br0", "up")
	l.In(ns, "ip", "link", "set", "lo", "up")
	return ns
}

// Namespace adds an empty namespace PREFIX-name (loopback up).
func (l *Lab) Namespace(name string) string {
	l.t.Helper()
	ns := l.prefix + "-" + name
	l.addNS(ns)
	l.In(ns, "ip", "link", "set", "lo", "up")
	return ns
}

// Attach plugs namespace ns into the bridge of bridgeNS as interface ifname
// with address cidr.
func (l *Lab) Attach(ns, bridgeNS, ifname, cidr string) {
	l.t.Helper()
	l.links++
	a, b := fmt.Sprintf("%sl%da", l.prefix, l.links), fmt.Sprintf("%sl%db", l.prefix, l.links)
	l.run("ip", "link", "add", a, "type", "veth", "peer", "name", b)
	l.run("ip", "link", "set", a, "netns", bridgeNS)
	l.run("ip", "link", "set", b, "netns", ns)
	l.In(bridgeNS, "ip", "link", "set", a, "master", "br0", "up")
	l.In(ns, "ip", "link", "set", b, "name", ifname)
	l.In(ns, "ip", "addr", "add", cidr, "dev", ifname)
	l.In(ns, "ip", "link", "set", ifname, "up")
}

// AttachRoot plugs the test's own namespace into a bridge (address cidr).
func (l *Lab) AttachRoot(bridgeNS, cidr string) {
	l.t.Helper()
	root, peer := l.prefix+"-root", l.prefix+"-rootp"
	l.run("ip", "link", "add", root, "type", "veth", "peer", "name", peer)
	l.run("ip", "link", "set", peer, "netns", bridgeNS)
	l.In(bridgeNS, "ip", "link", "set", peer, "master", "br0", "up")
	l.run("ip", "addr", "add", cidr, "dev", root)
	l.run("ip", "link", "set", root, "up")
}

// Hosts writes /etc/netns/ns/hosts.
func (l *Lab) Hosts(ns string, lines ...string) {
	l.t.Helper()
	l.writeHosts(ns, lines)
}
