package translate

import (
	"math"
	"net/netip"
	"sort"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/horizonmesh/horizon/internal/model"
)

// EDSView is what decides a proxy's endpoints: its network and, for the
// services whose policy is locality-aware (model.TrafficPolicy), where its
// workload runs. Every proxy of one network receives the same load
// assignments of the other services.
type EDSView struct {
	Network string
	// Located reports that the mesh knows the proxy's workload: Cluster
	// and Locality are then its. An unlocated proxy matches no locality.
	Located  bool
	Cluster  model.ClusterID
	Locality model.Locality
}

// TransportSocketMatchKey is the endpoint metadata namespace Envoy's
// transport_socket_matches read; TLSModeIstio marks an mTLS-capable endpoint.
const (
	TransportSocketMatchKey = "envoy.transport_socket_match"
	TLSModeIstio            = "istio"
)

// mtlsMetadata is shared by every mTLS endpoint: protos are only read once
// built, so one copy saves an allocation per endpoint.
var mtlsMetadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
	TransportSocketMatchKey: {Fields: map[string]*structpb.Value{"tlsMode": structpb.NewStringValue(TLSModeIstio)}},
}}

// EDS returns the load assignment of every service port, sorted by cluster
// name, as a proxy in view v receives them.
func EDS(m *model.Mesh, v EDSView) []*endpointv3.ClusterLoadAssignment {
	var out []*endpointv3.ClusterLoadAssignment
	for _, svc := range m.Services() {
		for _, p := range svc.Ports {
			out = append(out, LoadAssignment(m, v, svc, p.Port))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ClusterName < out[j].ClusterName })
	return out
}

// localityGroup collects what one locality's LocalityLbEndpoints will hold.
type localityGroup struct {
	priority uint32
	locality model.Locality
	// weight, when set, replaces the sum of the members (distribute).
	weight   uint64
	direct   []*model.Endpoint
	weights  []uint32 // weights[i] is direct[i]'s scaled weight
	gateways map[*model.Gateway]uint64
}

// LoadAssignment applies the split-horizon rule to one service port for a
// proxy in view v:
//   - without any gateway in the mesh, every endpoint goes out as is;
//   - otherwise every weight is multiplied by the mesh's scale factor S;
//   - an endpoint on the proxy's network, on no network, or on a network
//     without gateways goes out directly;
//   - an endpoint on another network that is not mTLS-capable is dropped,
//     since crossing networks is always mutual TLS;
//   - otherwise its weight is split evenly over the gateways that reach it,
//     which go out, in its locality, in its stead.
//
// A service whose policy is locality-aware is then ordered into priorities
// by where the proxy stands (see prioritize).
func LoadAssignment(m *model.Mesh, v EDSView, svc *model.Service, port uint32) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: ClusterName(port, svc.Hostname)}
	eps := svc.Endpoints[port]
	if len(eps) == 0 {
		return cla
	}
	split := m.HasGateways()
	scale := uint64(m.ScaleFactor())
	groups := map[model.Locality]*localityGroup{}
	group := func(l model.Locality) *localityGroup {
		g := groups[l]
		if g == nil {
			g = &localityGroup{locality: l}
			groups[l] = g
		}
		return g
	}
	// Endpoints come sorted by cluster, so the previous lookup usually answers.
	var lastNet string
	var lastCluster model.ClusterID
	var lastGWs []*model.Gateway
	for _, e := range eps {
		if !split {
			g := group(e.Locality)
			g.direct = append(g.direct, e)
			g.weights = append(g.weights, e.EffectiveWeight())
			continue
		}
		w := min(uint64(e.EffectiveWeight())*scale, math.MaxUint32)
		var gws []*model.Gateway
		if e.Network != "" && e.Network != v.Network {
			if e.Network != lastNet || e.Cluster != lastCluster || lastGWs == nil {
				lastNet, lastCluster, lastGWs = e.Network, e.Cluster, m.GatewaysFor(e.Network, e.Cluster)
			}
			gws = lastGWs
		}
		if len(gws) == 0 {
			g := group(e.Locality)
			g.direct = append(g.direct, e)
			g.weights = append(g.weights, uint32(w))
			continue
		}
		if !e.MTLS {
			continue
		}
		g := group(e.Locality)
		if g.gateways == nil {
			g.gateways = map[*model.Gateway]uint64{}
		}
		share := w / uint64(len(gws))
		for _, gw := range gws {
			g.gateways[gw] += share
		}
	}
	ordered := make([]*localityGroup, 0, len(groups))
	for _, g := range groups {
		ordered = append(ordered, g)
	}
	if pol := m.Policy(svc.Hostname); pol.LocalityAware() {
		ordered = applyLocality(pol.Locality, v, ordered)
		// A priority's health is its healthy hosts' share of its weight,
		// not of its host count: an ejected gateway takes the weight of
		// every endpoint it stands for with it.
		cla.Policy = &endpointv3.ClusterLoadAssignment_Policy{WeightedPriorityHealth: true}
	}
	cla.Endpoints = emitGroups(ordered)
	return cla
}

func emitGroups(ordered []*localityGroup) []*endpointv3.LocalityLbEndpoints {
	sort.Slice(ordered, func(i, j int) bool {
		if ordered[i].priority != ordered[j].priority {
			return ordered[i].priority < ordered[j].priority
		}
		return ordered[i].locality.Less(ordered[j].locality)
	})

	total := 0
	for _, g := range ordered {
		total += len(g.direct) + len(g.gateways)
	}
	arena := newLBArena(total)
	out := make([]*endpointv3.LocalityLbEndpoints, 0, len(ordered))
	for _, g := range ordered {
		lbs := make([]*endpointv3.LbEndpoint, 0, len(g.direct)+len(g.gateways))
		var total uint64
		for i, e := range g.direct {
			lbs = append(lbs, arena.lbEndpoint(e.Address, e.Port, g.weights[i], e.MTLS))
			total += uint64(g.weights[i])
		}
		for _, gw := range sortedGateways(g.gateways) {
			w := uint32(max(1, min(g.gateways[gw], math.MaxUint32)))
			lbs = append(lbs, arena.lbEndpoint(gw.Address, gw.Port, w, true))
			total += uint64(w)
		}
		if g.weight != 0 {
			total = g.weight
		}
		out = append(out, &endpointv3.LocalityLbEndpoints{
			Locality:            &corev3.Locality{Region: g.locality.Region, Zone: g.locality.Zone, SubZone: g.locality.Subzone},
			LbEndpoints:         lbs,
			LoadBalancingWeight: wrapperspb.UInt32(uint32(min(total, math.MaxUint32))),
			Priority:            g.priority,
		})
	}
	return out
}

// sortedGateways orders a group's gateways by address and port; the same
// address:port may stand for several clusters' gateways only once, as the
// model deduplicates per network, so ties fall back to network and cluster.
func sortedGateways(acc map[*model.Gateway]uint64) []*model.Gateway {
	out := make([]*model.Gateway, 0, len(acc))
	for g := range acc {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return gatewayEndpointLess(out[i], out[j]) })
	return out
}

// gatewayEndpointLess is the order of gateways in a locality: address,
// port, then network and cluster.
func gatewayEndpointLess(a, b *model.Gateway) bool {
	if c := a.Address.Compare(b.Address); c != 0 {
		return c < 0
	}
	if a.Port != b.Port {
		return a.Port < b.Port
	}
	if a.Network != b.Network {
		return a.Network < b.Network
	}
	return a.Cluster < b.Cluster
}

// lbArena allocates the messages of many LbEndpoints in a few slices rather
// than eight small objects each: EDS for a 10,000-endpoint service is built
// once per view on every change, so allocation count matters.
type lbArena struct {
	lbs     []endpointv3.LbEndpoint
	hosts   []endpointv3.LbEndpoint_Endpoint
	eps     []endpointv3.Endpoint
	addrs   []corev3.Address
	sockets []corev3.Address_SocketAddress
	sas     []corev3.SocketAddress
	ports   []corev3.SocketAddress_PortValue
	weights []wrapperspb.UInt32Value
	next    int
}

func newLBArena(n int) *lbArena {
	return &lbArena{
		lbs: make([]endpointv3.LbEndpoint, n), hosts: make([]endpointv3.LbEndpoint_Endpoint, n),
		eps: make([]endpointv3.Endpoint, n), addrs: make([]corev3.Address, n),
		sockets: make([]corev3.Address_SocketAddress, n), sas: make([]corev3.SocketAddress, n),
		ports: make([]corev3.SocketAddress_PortValue, n), weights: make([]wrapperspb.UInt32Value, n),
	}
}

func (a *lbArena) lbEndpoint(addr netip.Addr, port, weight uint32, mtls bool) *endpointv3.LbEndpoint {
	i := a.next
	a.next++
	a.ports[i].PortValue = port
	a.sas[i].Address = addr.String()
	a.sas[i].PortSpecifier = &a.ports[i]
	a.sockets[i].SocketAddress = &a.sas[i]
	a.addrs[i].Address = &a.sockets[i]
	a.eps[i].Address = &a.addrs[i]
	a.hosts[i].Endpoint = &a.eps[i]
	a.weights[i].Value = weight
	lb := &a.lbs[i]
	lb.HostIdentifier = &a.hosts[i]
	lb.LoadBalancingWeight = &a.weights[i]
	if mtls {
		lb.Metadata = mtlsMetadata
	}
	return lb
}
