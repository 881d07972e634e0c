package model

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// Resolver turns gateway DNS names into IPs; *net.Resolver satisfies it.
// Envoy accepts only IPs in EDS, so names are resolved before translation —
// outside Build, which only reads a NameTable.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// NameTable answers gateway DNS names from what was resolved already,
// without waiting: Build does no I/O. known is false for a name nobody has
// resolved yet; the Mesh lists the names Build asked for (GatewayNames), so
// that they get resolved and the mesh rebuilt.
type NameTable interface {
	Lookup(name string) (addrs []netip.Addr, err error, known bool)
}

// Gateway-related labels and defaults, as Istio users already write them.
const (
	// NetworkLabel marks a Pod, a Namespace or a gateway Service with its network.
	NetworkLabel = "topology.istio.io/network"
	// GatewayPortLabel overrides the port of a network-labelled gateway Service.
	GatewayPortLabel = "networking.istio.io/gatewayPort"
	// DefaultGatewayPort is the mTLS passthrough port of a network gateway.
	DefaultGatewayPort = 15443
	// DefaultDomainSuffix ends every service hostname.
	DefaultDomainSuffix = "cluster.local"
)

// BuildInput is everything Build assembles into a Mesh.
type BuildInput struct {
	Clusters []*ClusterSnapshot
	Networks *MeshNetworks // nil: no meshNetworks
	// DomainSuffix ends service hostnames; DefaultDomainSuffix when empty.
	DomainSuffix string
	// Names answers gateway DNS names; nil: every name is unknown (no
	// gateway, until resolved).
	Names NameTable
	// PeerAuth are the PeerAuthentications and the install default (nil:
	// none, DefaultMTLSMode everywhere). An endpoint whose workload port
	// resolves to DISABLE is not mTLS-capable: clients send it plaintext,
	// and no gateway stands for it.
	PeerAuth *PeerAuthentications
	// Previous, the mesh of the previous Build, lets this one reuse every
	// merged Service whose inputs are the same (the same ClusterService
	// pointers of the same clusters, the same meshNetworks and suffix):
	// sources that reuse unchanged ClusterServices make a push cost what
	// changed. The result is the same as without it.
	Previous *Mesh
	// DestinationRules are the config cluster's valid rules; their hosts
	// are resolved here (Mesh.Policy).
	DestinationRules []*DestinationRule
	// DefaultPolicy applies to every service without a DestinationRule
	// (the mesh default, e.g. DefaultLocalityPolicy); nil: none.
	DefaultPolicy *TrafficPolicy
}

// serviceInput is one cluster's part of a merged Service.
type serviceInput struct {
	cluster ClusterID
	svc     *ClusterService
}

// mergeKey is what every merged Service depends on besides its inputs.
type mergeKey struct {
	nets     *MeshNetworks
	peerAuth *PeerAuthentications
	suffix   string
	clusters string // IDs and system-namespace networks, in order
}

// Hostname returns the mesh hostname of a Service.
func Hostname(name, namespace, domainSuffix string) string {
	if domainSuffix == "" {
		domainSuffix = DefaultDomainSuffix
	}
	return name + "." + namespace + ".svc." + domainSuffix
}

// Build assembles cluster snapshots and meshNetworks into a Mesh: services
// merged across clusters, each endpoint's network resolved, and gateways
// resolved to IPs. It does not modify its input. Problems that do not stop
// the mesh from being built (an unresolvable gateway name, say) come back as
// warnings; a duplicate cluster ID is an error and its second snapshot is
// left out.
//
// Build is pure: gateway DNS names are read from in.Names, never resolved
// here (a slow resolver must not stall a push).
func Build(in BuildInput) (*Mesh, Diagnostics) {
	var diags Diagnostics
	suffix := in.DomainSuffix
	if suffix == "" {
		suffix = DefaultDomainSuffix
	}
	nets := in.Networks
	if nets == nil {
		nets = &MeshNetworks{}
	}
	clusters := uniqueClusters(in.Clusters, &diags)
	netOf := newNetworkResolver(nets)

	m := &Mesh{inputs: map[string][]serviceInput{}, peerAuth: in.PeerAuth, pods: map[ClusterID]*PodTable{}}
	var ck strings.Builder
	byID := map[ClusterID]*ClusterSnapshot{}
	var hosts []string
	for _, c := range clusters {
		fmt.Fprintf(&ck, "%q=%q;", c.ID, c.SystemNamespaceNetwork)
		byID[c.ID] = c
		if c.Pods.Len() > 0 {
			m.pods[c.ID] = c.Pods // shared: Pods change no Service (merge key)
		}
		for _, cs := range c.Services {
			host := Hostname(cs.Name, cs.Namespace, suffix)
			if _, ok := m.inputs[host]; !ok {
				hosts = append(hosts, host)
			}
			m.inputs[host] = append(m.inputs[host], serviceInput{c.ID, cs})
		}
	}
	m.merge = mergeKey{nets: in.Networks, peerAuth: in.PeerAuth, suffix: suffix, clusters: ck.String()}
	prev := in.Previous
	reuse := prev != nil && prev.merge == m.merge
	for _, host := range hosts {
		ins := m.inputs[host]
		if reuse && slices.Equal(prev.inputs[host], ins) {
			m.services = append(m.services, prev.byHost[host])
			continue
		}
		m.services = append(m.services, mergeService(host, ins, byID, netOf, in.PeerAuth))
	}

	gb := gatewayBuilder{names: in.Names, diags: &diags, suffix: suffix, clusters: clusters, asked: map[string]bool{}}
	m.gateways = gb.build(nets)
	m.gatewayNames = slices.Sorted(maps.Keys(gb.asked))
	m.networks = knownNetworks(nets, m)
	m.policies = resolvePolicies(in.DestinationRules, in.DefaultPolicy, suffix, &diags)
	m.defaultPolicy = in.DefaultPolicy
	m.index()
	return m, diags
}

// mergeService merges one hostname's ClusterServices, cluster by cluster.
func mergeService(host string, ins []serviceInput, byID map[ClusterID]*ClusterSnapshot, netOf *networkResolver, pa *PeerAuthentications) *Service {
	disabled := disabledPorts(pa)
	first := ins[0].svc
	svc := &Service{Hostname: host, Name: first.Name, Namespace: first.Namespace,
		Endpoints: map[uint32][]*Endpoint{}, ClusterIPs: map[ClusterID][]string{}}
	for _, in := range ins {
		cs, c := in.svc, byID[in.cluster]
		mergePorts(svc, cs.Ports)
		if len(cs.ClusterIPs) > 0 {
			svc.ClusterIPs[c.ID] = cs.ClusterIPs
		}
		if cs.Headless {
			svc.Headless = append(svc.Headless, c.ID) // ins are in cluster order
		}
		for port, eps := range cs.Endpoints {
			for _, e := range eps {
				cp := *e // never mutate the source's snapshot
				cp.Cluster = c.ID
				cp.Network = netOf.network(&cp, c)
				if cp.MTLS && disabled(&cp) {
					cp.MTLS = false
				}
				svc.Endpoints[port] = append(svc.Endpoints[port], &cp)
			}
		}
	}
	nets := map[string]bool{}
	for _, eps := range svc.Endpoints {
		sortEndpoints(eps)
		for _, e := range eps {
			nets[e.Network] = true
		}
	}
	svc.networks = slices.Sorted(maps.Keys(nets))
	return svc
}

// disabledPorts returns whether an endpoint's workload port resolves to
// DISABLE; without any DISABLE policy it answers no without resolving.
func disabledPorts(pa *PeerAuthentications) func(*Endpoint) bool {
	if !pa.MayDisable() {
		return func(*Endpoint) bool { return false }
	}
	return func(e *Endpoint) bool {
		return e.PodName != "" && pa.ForWorkload(e.Namespace, e.Labels).Port(e.Port) == MTLSDisable
	}
}

// uniqueClusters drops snapshots whose ID was already seen, with an error,
// and returns the rest sorted by ID.
func uniqueClusters(in []*ClusterSnapshot, diags *Diagnostics) []*ClusterSnapshot {
	seen := map[ClusterID]bool{}
	var out []*ClusterSnapshot
	for _, c := range in {
		if c == nil {
			continue
		}
		if seen[c.ID] {
			diags.AddError("", fmt.Sprintf("cluster %q", c.ID), "id", "duplicate cluster ID; the second definition is ignored")
			continue
		}
		seen[c.ID] = true
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// mergePorts adds the ports of one cluster's Service. One port per number:
// when a number is listed for two protocols (kube-dns: 53/UDP and 53/TCP),
// TCP wins, the protocol Envoy proxies, as in the cluster's endpoints.
func mergePorts(svc *Service, ports []ServicePort) {
	for _, p := range ports {
		i := slices.IndexFunc(svc.Ports, func(q ServicePort) bool { return q.Port == p.Port })
		switch {
		case i < 0:
			svc.Ports = append(svc.Ports, p)
		case p.Protocol == "TCP" && svc.Ports[i].Protocol != "TCP":
			svc.Ports[i] = p
		}
	}
	sort.Slice(svc.Ports, func(i, j int) bool { return svc.Ports[i].Port < svc.Ports[j].Port })
}

func sortEndpoints(eps []*Endpoint) {
	sort.Slice(eps, func(i, j int) bool {
		a, b := eps[i], eps[j]
		if a.Cluster != b.Cluster {
			return a.Cluster < b.Cluster
		}
		return addrPortLess(a.Address, a.Port, b.Address, b.Port)
	})
}

// networkResolver applies the rule for an endpoint's network, first match
// wins: the Pod's network label; the cluster's system namespace label;
// meshNetworks fromRegistry naming the cluster; meshNetworks fromCidr
// containing the address (the longest prefix wins); otherwise none.
type networkResolver struct {
	registry map[ClusterID]string
	cidrs    []cidrNetwork
}

type cidrNetwork struct {
	prefix  netip.Prefix
	network string
}

func newNetworkResolver(nets *MeshNetworks) *networkResolver {
	r := &networkResolver{registry: map[ClusterID]string{}}
	for _, n := range nets.Networks {
		for _, c := range n.Registries {
			if _, taken := r.registry[c]; !taken { // meshNetworks already warned
				r.registry[c] = n.Name
			}
		}
		for _, p := range n.CIDRs {
			r.cidrs = append(r.cidrs, cidrNetwork{p, n.Name})
		}
	}
	// Longest prefix first; ties keep network-name order (stable sort).
	sort.SliceStable(r.cidrs, func(i, j int) bool { return r.cidrs[i].prefix.Bits() > r.cidrs[j].prefix.Bits() })
	return r
}

func (r *networkResolver) network(e *Endpoint, c *ClusterSnapshot) string {
	if e.PodNetwork != "" {
		return e.PodNetwork
	}
	if c.SystemNamespaceNetwork != "" {
		return c.SystemNamespaceNetwork
	}
	if n, ok := r.registry[c.ID]; ok {
		return n
	}
	addr := e.Address.Unmap()
	for _, cn := range r.cidrs {
		if cn.prefix.Contains(addr) {
			return cn.network
		}
	}
	return ""
}

func knownNetworks(nets *MeshNetworks, m *Mesh) []string {
	set := map[string]bool{}
	for _, n := range nets.Networks {
		set[n.Name] = true
	}
	for _, g := range m.gateways {
		set[g.Network] = true
	}
	for _, s := range m.services {
		for _, n := range s.networks {
			set[n] = true
		}
	}
	delete(set, "")
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// serviceKey finds a service of one cluster by its hostname.
func findClusterService(c *ClusterSnapshot, host, suffix string) *ClusterService {
	for _, s := range c.Services {
		if strings.EqualFold(Hostname(s.Name, s.Namespace, suffix), host) {
			return s
		}
	}
	return nil
}

// Names is a NameTable of fixed answers: every name in it is known
// (offline loads resolve every name a first Build asked for, then build
// again).
type Names map[string]NameAnswer

// NameAnswer is what resolving a name gave.
type NameAnswer struct {
	Addrs []netip.Addr
	Err   error
}

// Lookup answers from the map.
func (n Names) Lookup(name string) ([]netip.Addr, error, bool) {
	a, ok := n[name]
	return a.Addrs, a.Err, ok
}
