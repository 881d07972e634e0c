package controlplane

import (
	"net/netip"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/xds/server"
)

// A sidecar's clusters and listeners depend on the ports its workload
// serves (its view's Inbound), and its routes on its workload's namespace,
// read from the endpoints at its IPs. Those
// change after the proxy connected when a Service selecting the workload is
// added or removed, or the workload's endpoint appears (a Pod listed once
// it has an IP): reclassify moves exactly the streams of workloads whose
// endpoints changed to their new views. Only services whose endpoints
// changed are looked at (by pointer, as the EDS build does), so a push
// still costs what changed. A namespace that gains its first service or
// loses its last moves the streams of its proved proxies too: only a
// namespace with services keys routes (translate.ProxyOf).
//
// A proxy at addresses no endpoint has is classified by its Pod
// (model.Mesh.WorkloadAt's fallback: its Node's locality keys its EDS
// view, its namespace its routes). A Pod appearing, getting its IP,
// changing or going moves the streams at its addresses only: the Pod
// tables record which addresses changed (model.ChangedPodAddrs), and such
// a change touches no Service, so no load assignment is built again.

// endpointAddr is one workload address of one cluster.
type endpointAddr struct {
	cluster model.ClusterID
	addr    netip.Addr
}

func (cp *ControlPlane) reclassify(prev, m *model.Mesh) {
	if prev == nil {
		return // the first mesh: no stream can have connected before it
	}
	if prev.PeerAuth() != m.PeerAuth() {
		// The PeerAuthentications changed (SetPeerAuthentications keeps
		// the same pointer for an equal set): any sidecar's inbound modes
		// may have, which its view carries. Rare; O(streams).
		if n := cp.Views.Reclassify(func(p server.Proxy) bool { return !p.Router }); n > 0 {
			cp.metrics.reclassified.Add(float64(n))
		}
		return
	}
	touched := changedEndpointAddrs(prev, m)
	model.ChangedPodAddrs(prev, m, func(c model.ClusterID, a netip.Addr) { touched[endpointAddr{c, a}] = true })
	namespaces := changedNamespaces(prev, m)
	if len(touched) == 0 && len(namespaces) == 0 {
		return
	}
	n := cp.Views.Reclassify(func(p server.Proxy) bool {
		if p.Router {
			return false // a gateway's views do not depend on its endpoints
		}
		if namespaces[p.Namespace] {
			// Its namespace gained its first service or lost its last: a
			// proved one may now key its routes, or no longer. (A stated
			// one never does; classifying it again costs only the time.)
			return true
		}
		for _, ip := range p.IPs {
			if touched[endpointAddr{p.Cluster, ip}] {
				return true
			}
		}
		return false
	})
	if n > 0 {
		cp.metrics.reclassified.Add(float64(n))
	}
}

// changedEndpointAddrs returns the addresses of every endpoint, in either
// mesh, of the services whose endpoints or ports' protocols differ between
// prev and m (a workload's inbound ports carry their protocol).
func changedEndpointAddrs(prev, m *model.Mesh) map[endpointAddr]bool {
	out := map[endpointAddr]bool{}
	add := func(s *model.Service) {
		if s == nil {
			return
		}
		for _, eps := range s.Endpoints {
			for _, e := range eps {
				out[endpointAddr{e.Cluster, e.Address}] = true
			}
		}
	}
	for _, s := range m.Services() {
		if old := prev.Service(s.Hostname); !model.SameEndpoints(old, s) || !samePortProtocols(old, s) {
			add(s)
			add(old)
		}
	}
	for _, s := range prev.Services() {
		if m.Service(s.Hostname) == nil {
			add(s)
		}
	}
	return out
}

// samePortProtocols reports whether a and b have the same port numbers with
// the same selected protocols.
func samePortProtocols(a, b *model.Service) bool {
	if a == nil || b == nil || len(a.Ports) != len(b.Ports) {
		return a == b
	}
	for i := range a.Ports {
		if a.Ports[i].Port != b.Ports[i].Port || a.Ports[i].Selected() != b.Ports[i].Selected() {
			return false
		}
	}
	return true
}

// changedNamespaces returns the namespaces that have services in one of
// prev and m only (translate.ProxyOf keys routes by those that have some).
func changedNamespaces(prev, m *model.Mesh) map[string]bool {
	out := map[string]bool{}
	for _, pair := range [][2]*model.Mesh{{prev, m}, {m, prev}} {
		for _, s := range pair[0].Services() {
			if !pair[1].HasNamespace(s.Namespace) {
				out[s.Namespace] = true
			}
		}
	}
	return out
}
