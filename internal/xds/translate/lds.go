package translate

import (
	"net/netip"
	"sort"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	originaldstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/xds/envoyconf"
)

// Listener names.
const (
	OutboundListener = "virtualOutbound"
	InboundListener  = "virtualInbound"
)

// AccessLogFormat is the sidecar's per-request line: the walkthrough's
// fields plus the peer's identity.
const AccessLogFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% ` +
	`%BYTES_RECEIVED% %BYTES_SENT% %DURATION% "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" ` +
	`upstream_host=%UPSTREAM_HOST% upstream_cluster=%UPSTREAM_CLUSTER% downstream_local=%DOWNSTREAM_LOCAL_ADDRESS% ` +
	`peer_san=%DOWNSTREAM_PEER_URI_SAN%` + "\n"

// SidecarView is what decides a sidecar's listeners and clusters besides the
// shared outbound part: its cluster (whose ClusterIPs it routes on) and the
// ports its own workload serves.
type SidecarView struct {
	Cluster      model.ClusterID
	InboundPorts []uint32 // sorted
}

// LDS returns a sidecar's two listeners: outbound on 15001 (captured
// traffic, dispatched on the original destination port) and inbound on
// 15006 (mutual TLS terminated, forwarded to the workload on localhost).
func LDS(m *model.Mesh, v SidecarView) []*listenerv3.Listener {
	if len(v.InboundPorts) == 0 {
		// A workload serving nothing through the mesh gets no inbound
		// listener (Envoy rejects one without filter chains): captured
		// inbound connections are refused.
		return []*listenerv3.Listener{outboundListener(m, v)}
	}
	return []*listenerv3.Listener{outboundListener(m, v), inboundListener(v)}
}

func outboundListener(m *model.Mesh, v SidecarView) *listenerv3.Listener {
	var chains []*listenerv3.FilterChain
	httpPorts := map[uint32]bool{}
	for _, svc := range m.Services() {
		for _, p := range svc.Ports {
			if isHTTP(p) {
				httpPorts[p.Port] = true
				continue
			}
			// TCP: one chain per service address and port.
			var ranges []*corev3.CidrRange
			for _, ip := range svc.ClusterIPs[v.Cluster] {
				if a, err := netip.ParseAddr(ip); err == nil {
					ranges = append(ranges, &corev3.CidrRange{AddressPrefix: a.String(), PrefixLen: wrapperspb.UInt32(uint32(a.BitLen()))})
				}
			}
			if len(ranges) == 0 {
				continue // not addressable from this cluster
			}
			chains = append(chains, &listenerv3.FilterChain{
				Name:             ClusterName(p.Port, svc.Hostname),
				FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(p.Port), PrefixRanges: ranges},
				Filters:          []*listenerv3.Filter{tcpProxy("outbound_"+itoa(p.Port)+"_"+svc.Hostname, ClusterName(p.Port, svc.Hostname))},
			})
		}
	}
	for _, port := range sortedPorts(httpPorts) {
		chains = append(chains, &listenerv3.FilterChain{
			Name:             "outbound_http_" + itoa(port),
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port)},
			Filters:          []*listenerv3.Filter{httpManager("outbound_"+itoa(port), itoa(port), nil)},
		})
	}
	return &listenerv3.Listener{
		Name:            OutboundListener,
		Address:         envoyconf.SocketAddress("0.0.0.0", OutboundPort),
		ListenerFilters: []*listenerv3.ListenerFilter{originalDst()},
		FilterChains:    chains,
		DefaultFilterChain: &listenerv3.FilterChain{Name: PassthroughCluster,
			Filters: []*listenerv3.Filter{tcpProxy(PassthroughCluster, PassthroughCluster)}},
	}
}

func inboundListener(v SidecarView) *listenerv3.Listener {
	var chains []*listenerv3.FilterChain
	tls := envoyconf.DownstreamTLS(&tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext:         meshTLSContext(nil),
	})
	for _, port := range v.InboundPorts {
		cluster := "inbound|" + itoa(port) + "||"
		route := &routev3.RouteConfiguration{Name: cluster, VirtualHosts: []*routev3.VirtualHost{{
			Name: "inbound|http|" + itoa(port), Domains: []string{"*"},
			Routes: []*routev3.Route{routeTo(cluster)},
		}}}
		chains = append(chains, &listenerv3.FilterChain{
			Name:             cluster,
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port)},
			TransportSocket:  tls,
			Filters:          []*listenerv3.Filter{httpManager("inbound_"+itoa(port), "", route)},
		})
	}
	return &listenerv3.Listener{
		Name:            InboundListener,
		Address:         envoyconf.SocketAddress("0.0.0.0", InboundPort),
		ListenerFilters: []*listenerv3.ListenerFilter{originalDst()},
		FilterChains:    chains,
		// A port the workload does not serve through the mesh: refuse rather
		// than forward unauthenticated traffic.
	}
}

// InboundClusters are the clusters of a sidecar's own ports.
func InboundClusters(v SidecarView) []*clusterv3.Cluster {
	out := make([]*clusterv3.Cluster, 0, len(v.InboundPorts))
	for _, p := range v.InboundPorts {
		out = append(out, InboundCluster(p))
	}
	return out
}

func originalDst() *listenerv3.ListenerFilter {
	return &listenerv3.ListenerFilter{Name: "envoy.filters.listener.original_dst",
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&originaldstv3.OriginalDst{})}}
}

func tcpProxy(stat, cluster string) *listenerv3.Filter {
	return &listenerv3.Filter{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(
		&tcpproxyv3.TcpProxy{StatPrefix: stat, ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster}, AccessLog: accessLog()})}}
}

// httpManager is an HTTP connection manager with routes from RDS (rds set)
// or inline.
func httpManager(stat, rds string, inline *routev3.RouteConfiguration) *listenerv3.Filter {
	m := &hcmv3.HttpConnectionManager{StatPrefix: stat}
	if rds != "" {
		m.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: envoyconf.ADSSource(), RouteConfigName: rds}}
	} else {
		m.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: inline}
	}
	return httpManagerFilter(m)
}

func httpManagerFilter(m *hcmv3.HttpConnectionManager) *listenerv3.Filter {
	m.HttpFilters = []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router",
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}}}
	m.AccessLog = accessLog()
	m.UseRemoteAddress = wrapperspb.Bool(false)
	m.GenerateRequestId = wrapperspb.Bool(true)
	return &listenerv3.Filter{Name: "envoy.filters.network.http_connection_manager",
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(m)}}
}

func accessLog() []*accesslogv3.AccessLog {
	return []*accesslogv3.AccessLog{{Name: "envoy.access_loggers.stdout", ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(
		&streamv3.StdoutAccessLog{AccessLogFormat: &streamv3.StdoutAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
			Format: &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{
				Specifier: &corev3.DataSource_InlineString{InlineString: AccessLogFormat}}}}}})}}}
}

func routeTo(cluster string) *routev3.Route {
	return &routev3.Route{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
	}
}

func sortedPorts(set map[uint32]bool) []uint32 {
	out := make([]uint32, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
