package translate

import (
	"math"
	"net/netip"
	"sort"

	"github.com/horizonmesh/horizon/internal/model"
)

// GatewayEndpoint says what one gateway endpoint of a load assignment
// stands for, as a proxy in an EDS view receives it: the endpoints of
// another network whose weight LoadAssignment moved onto that gateway in
// that locality. `horizon proxy-config endpoints` shows it next to what
// the proxy holds; /debug/gateways serves it.
type GatewayEndpoint struct {
	// ClusterName is the Envoy cluster (outbound|PORT||HOST).
	ClusterName string `json:"clusterName"`
	// Address is the gateway's address:port, as in the load assignment.
	Address  string `json:"address"`
	Locality string `json:"locality,omitempty"`
	// Weight is the gateway endpoint's weight in the load assignment: the
	// sum of Members' shares (at least 1).
	Weight uint32 `json:"weight"`
	// Network and Clusters are where the members are.
	Network  string            `json:"network"`
	Clusters []model.ClusterID `json:"clusters"`
	Members  []BehindGateway   `json:"members"`
}

// BehindGateway is one endpoint a gateway endpoint stands for.
type BehindGateway struct {
	Cluster model.ClusterID `json:"cluster"`
	// Pod is namespace/name; empty when the endpoint has no known Pod.
	Pod     string `json:"pod,omitempty"`
	Address string `json:"address"`
	// Share is the part of the gateway endpoint's weight that is this
	// endpoint's (its scaled weight over the gateways that reach it).
	Share uint64 `json:"share"`
}

// PodCount is how many distinct Pods (or, without a Pod, addresses) the
// gateway endpoint stands for.
func (g GatewayEndpoint) PodCount() int {
	seen := map[string]bool{}
	for _, m := range g.Members {
		k := string(m.Cluster) + "/" + m.Pod
		if m.Pod == "" {
			k += m.Address
		}
		seen[k] = true
	}
	return len(seen)
}

// GatewayEndpoints returns, for every service port, what each gateway
// endpoint a proxy in view v receives stands for, sorted by cluster name,
// locality and address. It applies LoadAssignment's rules (a test holds
// the two to the same weights).
func GatewayEndpoints(m *model.Mesh, v EDSView) []GatewayEndpoint {
	var out []GatewayEndpoint
	if !m.HasGateways() {
		return nil
	}
	for _, svc := range m.Services() {
		for _, p := range svc.Ports {
			out = append(out, gatewayEndpoints(m, v, svc, p.Port)...)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ClusterName < out[j].ClusterName })
	return out
}

type gatewayAt struct {
	gw       *model.Gateway
	locality model.Locality
}

func gatewayEndpoints(m *model.Mesh, v EDSView, svc *model.Service, port uint32) []GatewayEndpoint {
	scale := uint64(m.ScaleFactor())
	acc := map[gatewayAt]*GatewayEndpoint{}
	var sums = map[gatewayAt]uint64{}
	// With a locality policy in priorities (not Distribute's weights),
	// LoadAssignment puts each gateway once, in no locality, with the
	// weight of everything it stands for (applyLocality): so does this.
	pol := m.Policy(svc.Hostname)
	oneEntryPerGateway := pol.LocalityAware() && len(pol.Locality.Distribute) == 0
	for _, e := range svc.Endpoints[port] {
		if e.Network == "" || e.Network == v.Network || !e.MTLS {
			continue // direct, or dropped
		}
		gws := m.GatewaysFor(e.Network, e.Cluster)
		if len(gws) == 0 {
			continue // direct: its network has no gateway
		}
		share := min(uint64(e.EffectiveWeight())*scale, math.MaxUint32) / uint64(len(gws))
		pod := ""
		if e.PodName != "" {
			pod = e.Namespace + "/" + e.PodName
		}
		loc := e.Locality
		if oneEntryPerGateway {
			loc = model.Locality{}
		}
		for _, gw := range gws {
			k := gatewayAt{gw, loc}
			g := acc[k]
			if g == nil {
				g = &GatewayEndpoint{ClusterName: ClusterName(port, svc.Hostname),
					Address:  netip.AddrPortFrom(gw.Address, uint16(gw.Port)).String(),
					Locality: loc.String(), Network: e.Network}
				acc[k] = g
			}
			if len(g.Clusters) == 0 || g.Clusters[len(g.Clusters)-1] != e.Cluster {
				g.Clusters = append(g.Clusters, e.Cluster) // endpoints come sorted by cluster
			}
			g.Members = append(g.Members, BehindGateway{Cluster: e.Cluster, Pod: pod, Address: netip.AddrPortFrom(e.Address, uint16(e.Port)).String(), Share: share})
			sums[k] += share
		}
	}
	keys := make([]gatewayAt, 0, len(acc))
	for k := range acc {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.locality != b.locality {
			return a.locality.Less(b.locality)
		}
		return gatewayEndpointLess(a.gw, b.gw)
	})
	out := make([]GatewayEndpoint, 0, len(keys))
	for _, k := range keys {
		g := acc[k]
		g.Weight = uint32(max(1, min(sums[k], math.MaxUint32)))
		out = append(out, *g)
	}
	return out
}
