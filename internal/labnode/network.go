package labnode

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/horizonmesh/horizon/internal/netns"
)

// Network gives pods a network namespace with a veth on a bridge and an
// address from the pod CIDR.
type Network struct {
	Runner netns.Runner
	// Prefix starts every namespace and interface name (at most 6 bytes).
	Prefix string
	// BridgeNS is the namespace holding Bridge ("" for this one).
	BridgeNS, Bridge string
	CIDR             netip.Prefix
	// Gateway, when valid, is the pods' default route (and not handed out).
	Gateway netip.Addr
	// Reserved addresses are not handed out either.
	Reserved []netip.Addr

	mu   sync.Mutex
	used map[netip.Addr]string // address → pod key
}

// NetnsName is the namespace of the pod with this UID: PREFIX-p + 8 hex
// digits of its hash. The host-side veth is PREFIX + the same digits + "h".
func (n *Network) NetnsName(uid string) string { return n.Prefix + "-p" + shortHash(uid) }

func (n *Network) vethName(uid string) string { return n.Prefix + shortHash(uid) + "h" }

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:4])
}

// Validate checks the configuration.
func (n *Network) Validate() error {
	switch {
	case n.Prefix == "" || len(n.Prefix) > 6 || strings.ContainsAny(n.Prefix, "/ -"):
		return fmt.Errorf("network prefix %q: want 1-6 characters without '/', ' ' or '-'", n.Prefix)
	case n.Bridge == "":
		return errors.New("no bridge given")
	case !n.CIDR.IsValid() || !n.CIDR.Addr().Is4() || n.CIDR.Bits() > 30:
		return fmt.Errorf("pod CIDR %s: want an IPv4 prefix of at most /30", n.CIDR)
	case n.Gateway.IsValid() && !n.CIDR.Contains(n.Gateway):
		return fmt.Errorf("gateway %s is not in the pod CIDR %s", n.Gateway, n.CIDR)
	}
	return nil
}

// Allocate gives key the lowest free address (not the network's, the
// broadcast, the gateway or a reserved one); the same address again if key
// already has one.
func (n *Network) Allocate(key string) (netip.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.used == nil {
		n.used = map[netip.Addr]string{}
	}
	for a, k := range n.used {
		if k == key {
			return a, nil
		}
	}
	p := n.CIDR.Masked()
	last := lastAddr(p)
	for a := p.Addr().Next(); a.IsValid() && a.Less(last); a = a.Next() {
		if _, taken := n.used[a]; taken || a == n.Gateway || containsAddr(n.Reserved, a) {
			continue
		}
		n.used[a] = key
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("pod CIDR %s is exhausted", n.CIDR)
}

// Release frees key's address.
func (n *Network) Release(key string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for a, k := range n.used {
		if k == key {
			delete(n.used, a)
		}
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func containsAddr(as []netip.Addr, a netip.Addr) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

// SetupCommands are the iproute2 commands that make the pod's namespace
// with eth0 at addr on the bridge.
func (n *Network) SetupCommands(uid string, addr netip.Addr) [][]string {
	ns, host := n.NetnsName(uid), n.vethName(uid)
	var p netns.Plan
	p.Namespace(ns)
	p.Veth(netns.End{NS: n.BridgeNS, Name: host, Bridge: n.Bridge},
		netns.End{NS: ns, Name: host[:len(host)-1] + "c", As: "eth0", CIDR: addr.String() + "/" + strconv.Itoa(n.CIDR.Bits())})
	p.Up(ns, "lo")
	if n.Gateway.IsValid() {
		p.DefaultRoute(ns, n.Gateway.String())
	}
	return p.Commands()
}

// Setup makes the pod's namespace (removing a leftover of the same name
// first).
func (n *Network) Setup(ctx context.Context, uid string, addr netip.Addr) error {
	_ = n.Teardown(ctx, uid)
	if err := netns.RunAll(ctx, n.Runner, n.SetupCommands(uid, addr)); err != nil {
		_ = n.Teardown(ctx, uid)
		return err
	}
	return nil
}

// Teardown deletes the pod's namespace, and with it eth0, its veth peer and
// every iptables rule made inside it. It kills what still runs in it first
// (a namespace lives on while a process is in it). Absent is fine.
func (n *Network) Teardown(ctx context.Context, uid string) error {
	ns := n.NetnsName(uid)
	if ok, err := netns.Exists(ctx, n.Runner, ns); err != nil || !ok {
		return err
	}
	return netns.Delete(ctx, n.Runner, ns)
}

// Leftovers deletes every pod namespace of this prefix (after a crash),
// killing what runs in them.
func (n *Network) Leftovers(ctx context.Context) error {
	return netns.DeleteAll(ctx, n.Runner, n.Prefix+"-p")
}
