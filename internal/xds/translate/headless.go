package translate

import (
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/horizonmesh/horizon/internal/model"
)

// Headless services (clusterIP None, a StatefulSet's governing service;
// model.Service.Headless):
// kube-dns answers their names with pod IPs, and a client addresses one
// pod on purpose (web-0.web), so a sidecar must reach exactly the pod it
// was asked for, not balance over the service. Istio's way, and ours: per
// pod of a headless service in the proxy's own cluster — the pod IPs a
// client there can get from kube-dns and reach on the cluster's flat pod
// network — an outbound filter chain matched on pod IP/32 and the port
// the pod serves (the endpoint port, which is what a client dials: there
// is no ClusterIP to translate ports), proxying to an ORIGINAL_DST
// cluster of the service port, which connects to the connection's own
// original destination: that pod. Two such clusters per service port, one
// with mesh mTLS (SNI and the service's SPIFFE ids, as the service's EDS
// cluster) for pods with a sidecar (Endpoint.MTLS), one plaintext for the
// others; each pod's chain names the one its pod takes. An EDS cluster
// with a subset per pod would need a subset load balancer and per-pod
// endpoint metadata, and would carry the pods' addresses in every
// network's EDS; ORIGINAL_DST needs neither.
//
// Another cluster's headless pods get no chain: their IPs are another
// network's or an overlapping pod CIDR's, reachable, if at all, only
// through a gateway, and a gateway routes by service (SNI), not by pod.
// Istio does not route them across networks either. So the chains are
// bounded by the headless endpoints of the proxy's own cluster.

// PodClusterName is the ORIGINAL_DST cluster through which a sidecar
// reaches a headless service port's pods directly:
// outbound|PORT|pod-mtls|HOST for pods with a sidecar (mesh mTLS),
// outbound|PORT|pod|HOST for the others (plaintext). The third field is
// the one Istio uses for subsets, so the name never is a service's EDS
// cluster (ParseClusterName refuses it).
func PodClusterName(port uint32, host string, mtls bool) string {
	subset := "pod"
	if mtls {
		subset = "pod-mtls"
	}
	return "outbound|" + itoa(port) + "|" + subset + "|" + host
}

// IsPodClusterName reports whether name is a PodClusterName.
func IsPodClusterName(name string) bool {
	parts := strings.Split(name, "|")
	return len(parts) == 4 && parts[0] == "outbound" && (parts[2] == "pod" || parts[2] == "pod-mtls") && parts[3] != ""
}

// PodClusters returns the ORIGINAL_DST clusters of the headless service
// ports whose pods a sidecar in cluster c reaches directly: both variants
// of each port, so a pod gaining or losing its sidecar changes only its
// listener chain.
func PodClusters(m *model.Mesh, c model.ClusterID, opts Options) []*clusterv3.Cluster {
	var out []*clusterv3.Cluster
	for _, svc := range m.Services() {
		if !slices.Contains(svc.Headless, c) {
			continue
		}
		for _, p := range svc.Ports {
			if p.Selected() == model.ProtocolUDP {
				continue
			}
			for _, mtls := range []bool{false, true} {
				cl := &clusterv3.Cluster{
					Name:                          PodClusterName(p.Port, svc.Hostname, mtls),
					ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
					LbPolicy:                      clusterv3.Cluster_CLUSTER_PROVIDED,
					ConnectTimeout:                durationpb.New(ConnectTimeout),
					TypedExtensionProtocolOptions: upstreamHTTP(p.Selected()),
				}
				if mtls {
					cl.TransportSocket = upstreamMTLS(SNI(p.Port, svc.Hostname), spiffeIDs(svc, p.Port, opts.trustDomain()))
				}
				out = append(out, cl)
			}
		}
	}
	return out
}

// podChains returns the outbound filter chains of the headless pods of
// cluster c (see above), skipping an address:port taken (and marking
// those it takes); sniffPorts collects the ports whose chains need
// http_inspector (a port of unknown protocol).
func podChains(m *model.Mesh, c model.ClusterID, taken map[string]bool, sniffPorts map[uint32]bool) []*listenerv3.FilterChain {
	var chains []*listenerv3.FilterChain
	for _, svc := range m.Services() {
		if !slices.Contains(svc.Headless, c) {
			continue
		}
		for _, p := range svc.Ports {
			proto := p.Selected()
			if proto == model.ProtocolUDP {
				continue
			}
			for _, e := range svc.Endpoints[p.Port] {
				key := e.Address.String() + "|" + itoa(e.Port)
				if e.Cluster != c || taken[key] {
					continue
				}
				taken[key] = true
				cluster := PodClusterName(p.Port, svc.Hostname, e.MTLS)
				match := func() *listenerv3.FilterChainMatch {
					return &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(e.Port),
						PrefixRanges: []*corev3.CidrRange{{AddressPrefix: e.Address.String(), PrefixLen: wrapperspb.UInt32(uint32(e.Address.BitLen()))}}}
				}
				name := cluster + "|" + e.Address.String() + ":" + itoa(e.Port)
				stat := "outbound_" + itoa(p.Port) + "_" + svc.Hostname
				http := &listenerv3.FilterChain{Name: name, FilterChainMatch: match(),
					Filters: []*listenerv3.Filter{httpManager(stat, "", podRoute(name, cluster))}}
				switch {
				case proto.IsHTTP():
					chains = append(chains, http)
					continue
				case proto == model.ProtocolUnknown:
					sniffPorts[e.Port] = true
					http.Name = "sniffed_http|" + name
					http.FilterChainMatch.ApplicationProtocols = sniffedProtocols
					chains = append(chains, http)
				}
				chains = append(chains, &listenerv3.FilterChain{Name: name, FilterChainMatch: match(),
					Filters: []*listenerv3.Filter{tcpProxy(stat, cluster)}})
			}
		}
	}
	return chains
}

// podRoute sends every request of a pod's HTTP chain to its pod's
// ORIGINAL_DST cluster: to that pod, whatever the Host.
func podRoute(name, cluster string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{
		Name: name, Domains: []string{"*"}, Routes: []*routev3.Route{routeTo(cluster)},
	}}}
}
