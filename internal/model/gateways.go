package model

import (
	"fmt"
	"net/netip"
	"strconv"
)

// gatewayBuilder resolves gateways from their three sources: meshNetworks
// address entries, meshNetworks registryServiceName entries, and Services
// labelled with a network.
type gatewayBuilder struct {
	names    NameTable
	asked    map[string]bool // the DNS names looked up
	diags    *Diagnostics
	suffix   string
	clusters []*ClusterSnapshot
}

type gatewayKey struct {
	network string
	addr    netip.Addr
	port    uint32
}

func (b *gatewayBuilder) build(nets *MeshNetworks) []Gateway {
	var out []Gateway
	for _, n := range nets.Networks {
		obj := "network " + n.Name
		for i, spec := range n.Gateways {
			field := fmt.Sprintf("gateways[%d]", i)
			switch {
			case spec.Address != "":
				found := "meshNetworks address"
				if _, err := netip.ParseAddr(spec.Address); err != nil {
					found += ", DNS " + spec.Address
				}
				for _, a := range b.resolve(spec.Address, obj, field+".address") {
					out = append(out, Gateway{Network: n.Name, Address: a, Port: spec.Port, Found: found})
				}
			case spec.RegistryServiceName != "":
				out = append(out, b.fromRegistryService(n, spec, obj, field+".registryServiceName")...)
			}
		}
	}
	out = append(out, b.fromLabelledServices()...)
	return dedupGateways(out)
}

// fromRegistryService finds the named Service in the clusters the network's
// fromRegistry entries name and turns its load-balancer addresses into
// gateways of that cluster.
func (b *gatewayBuilder) fromRegistryService(n *NetworkConfig, spec GatewaySpec, obj, field string) []Gateway {
	var out []Gateway
	found := false
	for _, c := range b.clusters {
		if !contains(n.Registries, c.ID) {
			continue
		}
		s := findClusterService(c, spec.RegistryServiceName, b.suffix)
		if s == nil {
			continue
		}
		found = true
		for _, a := range b.serviceAddresses(c, s, obj, field) {
			out = append(out, Gateway{Network: n.Name, Cluster: c.ID, Address: a.addr, Port: spec.Port,
				Found: "meshNetworks registryServiceName, " + spec.RegistryServiceName + ", " + a.found})
		}
	}
	if !found {
		b.diags.AddWarning("", obj, field, fmt.Sprintf("service %s not found in the network's registries %v; no gateway", spec.RegistryServiceName, n.Registries))
	}
	return out
}

// fromLabelledServices turns every Service labelled topology.istio.io/network
// into gateways of that network and of its cluster.
func (b *gatewayBuilder) fromLabelledServices() []Gateway {
	var out []Gateway
	for _, c := range b.clusters {
		for _, s := range c.Services {
			network := s.Labels[NetworkLabel]
			if network == "" {
				continue
			}
			obj := fmt.Sprintf("cluster %s: Service %s/%s", c.ID, s.Namespace, s.Name)
			port := uint32(DefaultGatewayPort)
			if v, ok := s.Labels[GatewayPortLabel]; ok {
				p, err := strconv.ParseUint(v, 10, 16)
				if err != nil || p == 0 {
					b.diags.AddWarning("", obj, "metadata.labels["+GatewayPortLabel+"]",
						fmt.Sprintf("invalid port %q; using %d", v, DefaultGatewayPort))
				} else {
					port = uint32(p)
				}
			}
			for _, a := range b.serviceAddresses(c, s, obj, "status.loadBalancer.ingress") {
				out = append(out, Gateway{Network: network, Cluster: c.ID, Address: a.addr, Port: port,
					Found: "label " + NetworkLabel + ", Service " + s.Namespace + "/" + s.Name + ", " + a.found})
			}
		}
	}
	return out
}

// foundAddr is an address of a gateway Service and where it came from.
type foundAddr struct {
	addr  netip.Addr
	found string
}

// serviceAddresses returns the IPs of a gateway Service: its load-balancer
// ingress IPs and hostnames (resolved), then its external IPs.
func (b *gatewayBuilder) serviceAddresses(c *ClusterSnapshot, s *ClusterService, obj, field string) []foundAddr {
	var out []foundAddr
	for _, a := range s.LoadBalancer {
		found := "LoadBalancer status"
		if _, err := netip.ParseAddr(a); err != nil {
			found += ", DNS " + a
		}
		for _, ip := range b.resolve(a, obj, field) {
			out = append(out, foundAddr{ip, found})
		}
	}
	for _, a := range s.ExternalIPs {
		for _, ip := range b.resolve(a, obj, "spec.externalIPs") {
			out = append(out, foundAddr{ip, "externalIPs"})
		}
	}
	if len(out) == 0 {
		b.diags.AddWarning("", obj, field, "gateway service has no load-balancer address or external IP yet; no gateway")
	}
	return out
}

// resolve returns the IPs of an address that is an IP or a DNS name. The
// unspecified addresses (the walkthrough's 0.0.0.0 placeholder) are never
// gateways.
func (b *gatewayBuilder) resolve(addr, obj, field string) []netip.Addr {
	if ip, err := netip.ParseAddr(addr); err == nil {
		if ip.IsUnspecified() {
			b.diags.AddWarning("", obj, field, fmt.Sprintf("placeholder address %s is not a gateway; ignored", addr))
			return nil
		}
		return []netip.Addr{ip.Unmap()}
	}
	b.asked[addr] = true
	var ips []netip.Addr
	var err error
	known := false
	if b.names != nil {
		ips, err, known = b.names.Lookup(addr)
	}
	if !known {
		b.diags.AddWarning("", obj, field, fmt.Sprintf("%q is not resolved yet; no gateway until it is", addr))
		return nil
	}
	if err != nil || len(ips) == 0 {
		msg := fmt.Sprintf("%q does not resolve", addr)
		if err != nil {
			msg += ": " + err.Error()
		}
		b.diags.AddWarning("", obj, field, msg+"; no gateway")
		return nil
	}
	out := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		if !ip.IsUnspecified() {
			out = append(out, ip.Unmap())
		}
	}
	return out
}

// dedupGateways keeps one gateway per (network, address, port), preferring
// one that belongs to a cluster: it says more about which endpoints the
// gateway reaches.
func dedupGateways(in []Gateway) []Gateway {
	idx := map[gatewayKey]int{}
	var out []Gateway
	for _, g := range in {
		k := gatewayKey{g.Network, g.Address, g.Port}
		if i, ok := idx[k]; ok {
			if out[i].Cluster == "" && g.Cluster != "" {
				out[i] = g
			}
			continue
		}
		idx[k] = len(out)
		out = append(out, g)
	}
	return out
}

func contains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
