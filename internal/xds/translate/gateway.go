package translate

import (
	"sort"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/xds/envoyconf"
)

// GatewayView is what a network gateway proxy's config depends on: its
// network and the Istio Gateways that select it.
type GatewayView struct {
	Network  string
	Gateways []*model.IstioGateway
}

// GatewayLDS returns one listener per AUTO_PASSTHROUGH server port: the TLS
// inspector reads the SNI and ALPN, and one filter chain per admitted mesh
// service port, matched on SNI outbound_.p_._.H and the mesh ALPN list,
// proxies the still-encrypted connection to the cluster of that name. The
// chains carry no TLS context: the gateway never terminates mesh mTLS. An
// unknown SNI matches no chain and the connection is closed.
func GatewayLDS(m *model.Mesh, v GatewayView) []*listenerv3.Listener {
	var out []*listenerv3.Listener
	for port, snis := range passthroughSNIs(m, v) {
		if len(snis) == 0 {
			continue // Envoy rejects a listener without filter chains
		}
		var chains []*listenerv3.FilterChain
		for _, sni := range snis {
			chains = append(chains, &listenerv3.FilterChain{
				Name:             sni,
				FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: []string{sni}, ApplicationProtocols: MeshALPN},
				Filters:          []*listenerv3.Filter{tcpProxy(sni, sni)},
			})
		}
		out = append(out, &listenerv3.Listener{
			Name:    "gateway_" + itoa(port),
			Address: envoyconf.SocketAddress("0.0.0.0", port),
			ListenerFilters: []*listenerv3.ListenerFilter{{Name: tlsInspectorFilterName,
				ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspectorv3.TlsInspector{})}}},
			FilterChains: chains,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// GatewayCDS returns the SNI-named clusters the passthrough chains use: EDS,
// and no transport socket (TLS passes through untouched).
func GatewayCDS(m *model.Mesh, v GatewayView) []*clusterv3.Cluster {
	seen := map[string]bool{}
	var out []*clusterv3.Cluster
	for _, snis := range passthroughSNIs(m, v) {
		for _, sni := range snis {
			if seen[sni] {
				continue
			}
			seen[sni] = true
			out = append(out, &clusterv3.Cluster{
				Name:                 sni,
				ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
				EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: envoyconf.ADSSource()},
				ConnectTimeout:       durationpb.New(ConnectTimeout),
			})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// GatewayEDS returns, per SNI cluster, the gateway network's mTLS-capable
// endpoints of that service port: where the passthrough connections go.
// (Endpoints on other networks are not reachable from here.)
func GatewayEDS(m *model.Mesh, v GatewayView) []*endpointv3.ClusterLoadAssignment {
	var out []*endpointv3.ClusterLoadAssignment
	for _, svc := range m.Services() {
		for _, p := range svc.Ports {
			out = append(out, GatewayLoadAssignment(m, v.Network, svc, p.Port))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ClusterName < out[j].ClusterName })
	return out
}

// GatewayLoadAssignment is the load assignment of one service port's SNI
// cluster at a gateway on network: its mTLS endpoints there.
func GatewayLoadAssignment(m *model.Mesh, network string, svc *model.Service, port uint32) *endpointv3.ClusterLoadAssignment {
	local := &model.Service{Hostname: svc.Hostname, Endpoints: map[uint32][]*model.Endpoint{}}
	for _, e := range svc.Endpoints[port] {
		if e.MTLS && e.Network == network {
			local.Endpoints[port] = append(local.Endpoints[port], e)
		}
	}
	cla := LoadAssignment(m, EDSView{Network: network}, local, port)
	cla.ClusterName = SNI(port, svc.Hostname)
	return cla
}

// passthroughSNIs lists, per AUTO_PASSTHROUGH server port, the SNIs of the
// mesh service ports the servers' hosts admit.
func passthroughSNIs(m *model.Mesh, v GatewayView) map[uint32][]string {
	out := map[uint32][]string{}
	for _, g := range v.Gateways {
		for i := range g.Servers {
			s := &g.Servers[i]
			if s.TLSMode != model.TLSModeAutoPassthrough {
				continue
			}
			set := map[string]bool{}
			for _, existing := range out[s.Port] {
				set[existing] = true
			}
			for _, svc := range m.Services() {
				if !s.HostMatches(g.Namespace, svc.Namespace, svc.Hostname) {
					continue
				}
				for _, p := range svc.Ports {
					set[SNI(p.Port, svc.Hostname)] = true
				}
			}
			snis := make([]string, 0, len(set))
			for sni := range set {
				snis = append(snis, sni)
			}
			sort.Strings(snis)
			out[s.Port] = snis
		}
	}
	return out
}
