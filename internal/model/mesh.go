package model

import (
	"net/netip"
	"slices"
	"sort"
)

// Service is one mesh service: the same name and namespace in every cluster,
// with the endpoints of all clusters merged.
type Service struct {
	Hostname  string
	Name      string
	Namespace string
	// Ports is the union of the ports the clusters define, sorted by number;
	// for a number defined differently in two clusters the first cluster (by
	// ID) names it.
	Ports []ServicePort
	// Endpoints by service port number, sorted by cluster, address, port.
	Endpoints map[uint32][]*Endpoint
	// ClusterIPs per cluster, as each cluster allocated them.
	ClusterIPs map[ClusterID][]string
	// Headless are the clusters, sorted, whose Service is headless
	// (clusterIP None): their clients address its pods directly.
	Headless []ClusterID

	networks []string // of its endpoints, for Mesh.Networks without a walk
}

// Port returns the service port with the given number.
func (s *Service) Port(number uint32) (ServicePort, bool) {
	for _, p := range s.Ports {
		if p.Port == number {
			return p, true
		}
	}
	return ServicePort{}, false
}

type networkCluster struct {
	network string
	cluster ClusterID
}

// Mesh is the assembled, read-only state of the whole mesh. Build creates it;
// nothing mutates it afterwards, so translators may read it concurrently.
type Mesh struct {
	services []*Service
	byHost   map[string]*Service
	// namespaces are those with at least one service.
	namespaces map[string]bool
	gateways   []Gateway
	byNetwork  map[string][]*Gateway
	byNetClus  map[networkCluster][]*Gateway
	networks   []string
	scale      uint32
	// gatewayNames are the DNS names gateways were looked up by.
	gatewayNames []string
	// inputs and merge are what each Service was merged from, for the next
	// Build to reuse it (BuildInput.Previous).
	inputs map[string][]serviceInput
	merge  mergeKey
	// policies are the DestinationRules' effective policies by host;
	// defaultPolicy applies to the other services.
	policies      map[string]*TrafficPolicy
	defaultPolicy *TrafficPolicy
	// peerAuth resolves workloads' inbound mTLS modes.
	peerAuth *PeerAuthentications
	// pods are the clusters' Pod tables (ClusterSnapshot.Pods), by
	// cluster: WorkloadAt's fallback.
	pods map[ClusterID]*PodTable
}

// GatewayNames returns, sorted, the DNS names Build looked up for gateways
// (resolved or not): what a name table must keep resolving.
func (m *Mesh) GatewayNames() []string { return m.gatewayNames }

// PeerAuth returns the PeerAuthentications the mesh was built with (nil:
// none, the default everywhere); the pointer tells a change.
func (m *Mesh) PeerAuth() *PeerAuthentications { return m.peerAuth }

// Services returns every service, sorted by hostname.
func (m *Mesh) Services() []*Service { return m.services }

// Service returns the service with the given hostname, or nil.
func (m *Mesh) Service(hostname string) *Service { return m.byHost[hostname] }

// HasNamespace reports whether some service of the mesh is in namespace
// ns: a namespace that really exists in a cluster, and the only kind
// whose sidecars' routes differ (by the bare names of its services).
func (m *Mesh) HasNamespace(ns string) bool { return ns != "" && m.namespaces[ns] }

// Gateways returns every resolved gateway, sorted by network, cluster,
// address and port.
func (m *Mesh) Gateways() []Gateway { return m.gateways }

// HasGateways reports whether any network has a gateway. Without gateways
// split horizon is off and every endpoint is sent as is.
func (m *Mesh) HasGateways() bool { return len(m.gateways) > 0 }

// GatewaysFor returns the gateways that reach an endpoint of cluster on
// network: the gateways of that (network, cluster) pair if it has any, else
// every gateway of the network. The pointers are stable for the Mesh's life,
// so callers may key maps by them; the gateways must not be modified.
func (m *Mesh) GatewaysFor(network string, cluster ClusterID) []*Gateway {
	if gws := m.byNetClus[networkCluster{network, cluster}]; len(gws) > 0 {
		return gws
	}
	return m.byNetwork[network]
}

// ScaleFactor is the least common multiple of the gateway counts of every
// network and every (network, cluster) pair that has gateways, so that an
// endpoint's weight divides evenly among its gateways. It is 1 without
// gateways.
func (m *Mesh) ScaleFactor() uint32 { return m.scale }

// Networks returns every network the mesh knows of (from meshNetworks,
// endpoints and gateways), sorted; the empty network is not listed.
func (m *Mesh) Networks() []string { return m.networks }

// index fills the lookup tables from services and gateways.
func (m *Mesh) index() {
	sort.Slice(m.services, func(i, j int) bool { return m.services[i].Hostname < m.services[j].Hostname })
	m.byHost = make(map[string]*Service, len(m.services))
	m.namespaces = map[string]bool{}
	for _, s := range m.services {
		m.byHost[s.Hostname] = s
		m.namespaces[s.Namespace] = true
	}
	sort.Slice(m.gateways, func(i, j int) bool { return gatewayLess(m.gateways[i], m.gateways[j]) })
	m.byNetwork = map[string][]*Gateway{}
	m.byNetClus = map[networkCluster][]*Gateway{}
	for i := range m.gateways {
		g := &m.gateways[i]
		m.byNetwork[g.Network] = append(m.byNetwork[g.Network], g)
		if g.Cluster != "" {
			k := networkCluster{g.Network, g.Cluster}
			m.byNetClus[k] = append(m.byNetClus[k], g)
		}
	}
	m.scale = 1
	for _, gws := range m.byNetwork {
		m.scale = lcm(m.scale, uint32(len(gws)))
	}
	for _, gws := range m.byNetClus {
		m.scale = lcm(m.scale, uint32(len(gws)))
	}
}

func gatewayLess(a, b Gateway) bool {
	if a.Network != b.Network {
		return a.Network < b.Network
	}
	if a.Cluster != b.Cluster {
		return a.Cluster < b.Cluster
	}
	if c := a.Address.Compare(b.Address); c != 0 {
		return c < 0
	}
	return a.Port < b.Port
}

// lcm returns the least common multiple, saturating at the uint32 maximum.
func lcm(a, b uint32) uint32 {
	if a == 0 || b == 0 {
		return max(a, b)
	}
	x, y := uint64(a), uint64(b)
	for y != 0 {
		x, y = y, x%y
	}
	l := uint64(a) / x * uint64(b)
	if l > uint64(^uint32(0)) {
		return ^uint32(0)
	}
	return uint32(l)
}

// addrLess orders endpoints by address then port.
func addrPortLess(a netip.Addr, ap uint32, b netip.Addr, bp uint32) bool {
	if c := a.Compare(b); c != 0 {
		return c < 0
	}
	return ap < bp
}

// Workload is one workload of a cluster as its endpoints show it: a Pod,
// or, for endpoints whose Pod is not known, one address.
type Workload struct {
	Namespace      string
	PodName        string // empty: no known Pod, the workload is an address
	ServiceAccount string
	Labels         map[string]string
	// Locality is its Node's (that of its endpoints).
	Locality Locality
	// Ports are the ports its endpoints serve, sorted: a sidecar's inbound
	// ports.
	Ports []uint32
	// TCP are those of Ports its sidecar proxies as opaque TCP, sorted: a
	// port is HTTP only when every service port it serves says an HTTP-family
	// protocol (http, http2, grpc, grpc-web, h2c); one of unknown protocol,
	// or selected by services that disagree, is TCP, which carries any
	// protocol (HTTP included, without per-request handling).
	TCP []uint32
	// Modes are the inbound mTLS modes of Ports (never MTLSUnset), as the
	// PeerAuthentications resolve them for this workload.
	Modes map[uint32]MTLSMode
}

// WorkloadAt finds the workload of cluster at the first of ips that an
// endpoint has. With namespace and serviceAccount set, only a Pod running
// as that identity counts (an endpoint with no known Pod never does).
// When no endpoint is at any of ips, it falls back to the cluster's Pods
// (ClusterSnapshot.Pods) by the same rules: a Pod no Service selects, or
// whose endpoints are not ready yet, is a workload with its Node's
// locality, its namespace and labels, and no ports.
//
// A proxy's views are keyed by what this returns, not by the addresses it
// states: the result is one real workload, so however a client combines
// addresses, it can only ever name the views of workloads that exist.
func (m *Mesh) WorkloadAt(cluster ClusterID, ips []netip.Addr, namespace, serviceAccount string) (Workload, bool) {
	var found *Endpoint
	rank := len(ips)
	m.eachEndpoint(cluster, func(e *Endpoint) {
		if namespace != "" && (e.PodName == "" || e.Namespace != namespace || e.ServiceAccount != serviceAccount) {
			return
		}
		i := slices.Index(ips, e.Address)
		if i < 0 || i > rank || (i == rank && found != nil && !podLess(e, found)) {
			return
		}
		found, rank = e, i
	})
	if found == nil {
		return m.podAt(cluster, ips, namespace, serviceAccount)
	}
	w := Workload{Namespace: found.Namespace, PodName: found.PodName, ServiceAccount: found.ServiceAccount, Labels: found.Labels, Locality: found.Locality}
	http := map[uint32]bool{} // port: every service port it serves is HTTP
	for _, s := range m.services {
		for number, eps := range s.Endpoints {
			sp, _ := s.Port(number)
			for _, e := range eps {
				same := e.PodName == found.PodName && e.Namespace == found.Namespace
				if found.PodName == "" {
					same = e.PodName == "" && e.Address == found.Address
				}
				if e.Cluster != cluster || !same {
					continue
				}
				isHTTP, seen := http[e.Port]
				http[e.Port] = sp.Selected().IsHTTP() && (isHTTP || !seen)
			}
		}
	}
	policy := m.peerAuth.ForWorkload(found.Namespace, found.Labels)
	w.Modes = make(map[uint32]MTLSMode, len(http))
	for port, isHTTP := range http {
		w.Ports = append(w.Ports, port)
		w.Modes[port] = policy.Port(port)
		if !isHTTP {
			w.TCP = append(w.TCP, port)
		}
	}
	slices.Sort(w.Ports)
	slices.Sort(w.TCP)
	return w, true
}

// podLess orders endpoints at one address (a reused address may briefly
// be listed for two Pods) so that WorkloadAt's answer does not depend on
// map order.
func podLess(a, b *Endpoint) bool {
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.PodName < b.PodName
}

// eachEndpoint calls f with every endpoint of cluster.
func (m *Mesh) eachEndpoint(cluster ClusterID, f func(*Endpoint)) {
	for _, s := range m.services {
		for _, eps := range s.Endpoints {
			for _, e := range eps {
				if e.Cluster == cluster {
					f(e)
				}
			}
		}
	}
}
