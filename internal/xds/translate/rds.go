package translate

import (
	"net/netip"
	"sort"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	previousprioritiesv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/priority/previous_priorities/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/horizonmesh/horizon/internal/model"
)

// RDS returns one route configuration per HTTP service port (and port of
// unknown protocol, for the connections on it detected as HTTP), named by
// the port: a virtual host per service on that port whose domains are every
// name a client may use (host, host:port, name.namespace[:port],
// name.namespace.svc[:port], the ClusterIPs of the proxy's cluster[:port],
// an IPv6 one in brackets as a Host header writes it), plus a catch-all
// for destinations outside the mesh: to the passthrough cluster, or with
// REGISTRY_ONLY to BlackHoleCluster.
//
// The bare service name (and name:port) is among them, as in Istio's, for
// the services of the proxy's own namespace only (v.Namespace): a
// client's "web" means its own namespace's. That is why RDS views are
// keyed by (cluster, namespace), the namespace being one the mesh
// verified (ProxyOf; none: no bare names, and a Host "web" goes, like any
// host the routes do not name, to the catch-all).
//
// Envoy rejects a route configuration that names a domain twice (in any of
// its virtual hosts), so no form can repeat: a bare name has no dot, every
// other name form has one, an IP literal is never a DNS label, and two
// services' ClusterIPs differ. Should input break that (two services
// listing one ClusterIP), a domain is kept by the first service (by
// hostname) rather than losing the port's every route.
func RDS(m *model.Mesh, v SidecarView) []*routev3.RouteConfiguration {
	byPort := map[uint32][]*routev3.VirtualHost{}
	seen := map[uint32]map[string]bool{} // per port: the domains named so far
	for _, svc := range m.Services() {
		for _, p := range svc.Ports {
			if proto := p.Selected(); !proto.IsHTTP() && proto != model.ProtocolUnknown {
				continue // not HTTP (a port of unknown protocol may be)
			}
			port := itoa(p.Port)
			short := svc.Name + "." + svc.Namespace
			names := []string{svc.Hostname, short, short + ".svc"}
			if v.Namespace != "" && svc.Namespace == v.Namespace {
				names = append(names, svc.Name)
			}
			for _, ip := range validIPs(svc.ClusterIPs[v.Cluster]) {
				if netip.MustParseAddr(ip).Is6() { // validIPs
					ip = "[" + ip + "]"
				}
				names = append(names, ip)
			}
			if seen[p.Port] == nil {
				seen[p.Port] = map[string]bool{}
			}
			var domains []string
			for _, n := range names {
				for _, d := range []string{n, n + ":" + port} {
					if !seen[p.Port][d] {
						seen[p.Port][d] = true
						domains = append(domains, d)
					}
				}
			}
			byPort[p.Port] = append(byPort[p.Port], &routev3.VirtualHost{
				Name: svc.Hostname + ":" + port, Domains: domains,
				Routes: []*routev3.Route{serviceRoute(ClusterName(p.Port, svc.Hostname), m.Policy(svc.Hostname).LocalityAware())},
			})
		}
	}
	out := make([]*routev3.RouteConfiguration, 0, len(byPort))
	for port, vhosts := range byPort {
		catchAll := &routev3.VirtualHost{Name: "allow_any", Domains: []string{"*"},
			Routes: []*routev3.Route{routeTo(PassthroughCluster)}}
		if v.RegistryOnly {
			catchAll = &routev3.VirtualHost{Name: "block_all", Domains: []string{"*"},
				Routes: []*routev3.Route{routeTo(BlackHoleCluster)}}
		}
		vhosts = append(vhosts, catchAll)
		out = append(out, &routev3.RouteConfiguration{Name: itoa(port), VirtualHosts: vhosts, ValidateClusters: falseValue()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// serviceRoute routes to a mesh service's cluster and retries, on another
// endpoint, a request that found no connection or an unavailable upstream
// (Istio's default policy, which users of the walkthrough rely on): an
// endpoint that went away while the news travelled to this proxy (a pod
// scaled down, a remote cluster's endpoints withdrawn through its gateway)
// costs a retry, not a failed request.
//
// For a service in priorities (a locality-aware policy) retries also move
// on to the next priority (Envoy's previous_priorities): after every 2
// attempts the priorities tried are set aside, so a request failing in the
// local zone reaches the next one before outlier detection has ejected
// anything, while one retry still stays close (another host of the zone).
func serviceRoute(cluster string, prioritized bool) *routev3.Route {
	r := routeTo(cluster)
	r.GetRoute().RetryPolicy = &routev3.RetryPolicy{
		RetryOn:              "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
		NumRetries:           wrapperspb.UInt32(2),
		RetriableStatusCodes: []uint32{503},
		RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{Name: "envoy.retry_host_predicates.previous_hosts",
			ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: mustAny(&previoushostsv3.PreviousHostsPredicate{})}}},
		HostSelectionRetryMaxAttempts: 5,
	}
	if prioritized {
		r.GetRoute().RetryPolicy.RetryPriority = &routev3.RetryPolicy_RetryPriority{Name: "envoy.retry_priorities.previous_priorities",
			ConfigType: &routev3.RetryPolicy_RetryPriority_TypedConfig{TypedConfig: mustAny(&previousprioritiesv3.PreviousPrioritiesConfig{UpdateFrequency: 2})}}
	}
	return r
}

func falseValue() *wrapperspb.BoolValue { return wrapperspb.Bool(false) }
