package translate

import (
	"net/netip"
	"sort"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	httpinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	originaldstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
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
// ports its own workload serves, each with its protocol and mTLS mode.
type SidecarView struct {
	Cluster model.ClusterID
	// Namespace is the sidecar's verified namespace (View.Namespace), only
	// for routes: its services are routed by their bare names too.
	Namespace string
	Inbound   []WorkloadPort // sorted by port
	// RegistryOnly: unknown destinations go to BlackHoleCluster, not
	// PassthroughCluster (Options.OutboundTrafficPolicy).
	RegistryOnly bool
}

// unknownDestination is the cluster for traffic to what the mesh does not
// know: PassthroughCluster (ALLOW_ANY) or BlackHoleCluster (REGISTRY_ONLY).
func (v SidecarView) unknownDestination() string {
	if v.RegistryOnly {
		return BlackHoleCluster
	}
	return PassthroughCluster
}

// LDS returns a sidecar's two listeners: outbound on 15001 (captured
// traffic, dispatched on the original destination port) and inbound on
// 15006 (per port as its mTLS mode says: mutual TLS terminated, plaintext,
// or either; forwarded to the workload on localhost through the HTTP
// connection manager on HTTP ports, tcp_proxy on TCP ports).
func LDS(m *model.Mesh, v SidecarView) []*listenerv3.Listener {
	if len(v.Inbound) == 0 {
		// A workload serving nothing through the mesh gets no inbound
		// listener (Envoy rejects one without filter chains): captured
		// inbound connections are refused.
		return []*listenerv3.Listener{outboundListener(m, v)}
	}
	return []*listenerv3.Listener{outboundListener(m, v), inboundListener(v)}
}

// ProtocolDetectionTimeout is how long the outbound listener waits for a
// client's first bytes on a port of unknown protocol before it treats the
// connection as TCP (a server-first protocol sends nothing first).
const ProtocolDetectionTimeout = 100 * time.Millisecond

// sniffedProtocols are the application protocols http_inspector reports for
// plaintext HTTP: the HTTP chain of a port of unknown protocol matches them.
var sniffedProtocols = []string{"http/1.0", "http/1.1", "h2c"}

// outboundListener dispatches captured connections on their original
// destination, per service port's protocol (model.SelectProtocol):
//   - HTTP family (http, http2, grpc, grpc-web, h2c): one chain per port
//     number, through the HTTP connection manager with RDS route "<port>";
//   - TCP family (tcp, tls, https, mongo, mysql, redis): one chain per
//     service address and port, through tcp_proxy to the service's cluster
//     (tls and https pass through: the application's TLS inside mesh mTLS);
//   - unknown: per service address and port, an HTTP chain matched on the
//     application protocols http_inspector detects and a TCP chain for the
//     rest (or when the client sends nothing within
//     ProtocolDetectionTimeout); http_inspector runs on those ports only;
//   - UDP/SCTP: nothing (not proxied);
//   - a headless service of the proxy's cluster: per pod, chains matched on
//     the pod's address and port, to that pod only (podChains).
//
// A service's addresses are ServiceAddresses: its ClusterIPs in the
// proxy's cluster, else, for a service only other clusters have, those
// NDS answers for its name, so a remote-only TCP service is reachable by
// name. Such a borrowed address:port never displaces one of the proxy's
// own cluster (service CIDRs overlap), nor an earlier service's.
func outboundListener(m *model.Mesh, v SidecarView) *listenerv3.Listener {
	var chains []*listenerv3.FilterChain
	httpPorts := map[uint32]bool{}
	sniffPorts := map[uint32]bool{}
	taken := map[string]bool{} // ip|port
	addrChains := func(local bool) {
		for _, svc := range m.Services() {
			if isLocal := len(validIPs(svc.ClusterIPs[v.Cluster])) > 0; isLocal != local {
				continue
			}
			for _, p := range svc.Ports {
				proto := p.Selected()
				switch {
				case proto.IsHTTP():
					httpPorts[p.Port] = true
					continue
				case proto == model.ProtocolUDP:
					continue
				}
				var ranges []*corev3.CidrRange
				for _, ip := range ServiceAddresses(svc, v.Cluster) {
					a := netip.MustParseAddr(ip) // validIPs
					if key := a.String() + "|" + itoa(p.Port); !taken[key] {
						taken[key] = true
						ranges = append(ranges, &corev3.CidrRange{AddressPrefix: a.String(), PrefixLen: wrapperspb.UInt32(uint32(a.BitLen()))})
					}
				}
				if len(ranges) == 0 {
					continue // headless (see podChains), or its addresses are taken
				}
				cluster := ClusterName(p.Port, svc.Hostname)
				if proto == model.ProtocolUnknown {
					sniffPorts[p.Port] = true
					chains = append(chains, &listenerv3.FilterChain{
						Name: "outbound_sniffed_http_" + itoa(p.Port) + "_" + svc.Hostname,
						FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(p.Port), PrefixRanges: ranges,
							ApplicationProtocols: sniffedProtocols},
						Filters: []*listenerv3.Filter{httpManager("outbound_"+itoa(p.Port)+"_"+svc.Hostname, itoa(p.Port), nil)},
					})
				}
				chains = append(chains, &listenerv3.FilterChain{
					Name:             cluster,
					FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(p.Port), PrefixRanges: ranges},
					Filters:          []*listenerv3.Filter{tcpProxy("outbound_"+itoa(p.Port)+"_"+svc.Hostname, cluster)},
				})
			}
		}
	}
	addrChains(true)
	// Headless pods of the proxy's cluster: after its ClusterIPs (which
	// never are pod IPs), before other clusters' addresses, which may
	// overlap its pod CIDR.
	chains = append(chains, podChains(m, v.Cluster, taken, sniffPorts)...)
	addrChains(false)
	for _, port := range sortedPorts(httpPorts) {
		chains = append(chains, &listenerv3.FilterChain{
			Name:             "outbound_http_" + itoa(port),
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port)},
			Filters:          []*listenerv3.Filter{httpManager("outbound_"+itoa(port), itoa(port), nil)},
		})
	}
	l := &listenerv3.Listener{
		Name:            OutboundListener,
		Address:         envoyconf.SocketAddress("0.0.0.0", OutboundPort),
		ListenerFilters: []*listenerv3.ListenerFilter{originalDst()},
		FilterChains:    chains,
		DefaultFilterChain: &listenerv3.FilterChain{Name: v.unknownDestination(),
			Filters: []*listenerv3.Filter{tcpProxy(v.unknownDestination(), v.unknownDestination())}},
	}
	if len(sniffPorts) > 0 {
		l.ListenerFilters = append(l.ListenerFilters, httpInspector(sortedPorts(sniffPorts)))
		l.ListenerFiltersTimeout = durationpb.New(ProtocolDetectionTimeout)
		l.ContinueOnListenerFiltersTimeout = true
	}
	return l
}

// httpInspector detects plaintext HTTP on the given destination ports only:
// elsewhere it would delay server-first protocols for nothing.
func httpInspector(ports []uint32) *listenerv3.ListenerFilter {
	return &listenerv3.ListenerFilter{Name: "envoy.filters.listener.http_inspector",
		ConfigType:     &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&httpinspectorv3.HttpInspector{})},
		FilterDisabled: onlyOnPorts(ports)}
}

// onlyOnPorts is a listener filter's filter_disabled predicate that leaves
// it enabled on the given destination ports only.
func onlyOnPorts(ports []uint32) *listenerv3.ListenerFilterChainMatchPredicate {
	rules := make([]*listenerv3.ListenerFilterChainMatchPredicate, 0, len(ports))
	for _, p := range ports {
		rules = append(rules, &listenerv3.ListenerFilterChainMatchPredicate{Rule: &listenerv3.ListenerFilterChainMatchPredicate_DestinationPortRange{
			DestinationPortRange: &typev3.Int32Range{Start: int32(p), End: int32(p) + 1}}})
	}
	on := rules[0]
	if len(rules) > 1 {
		on = &listenerv3.ListenerFilterChainMatchPredicate{Rule: &listenerv3.ListenerFilterChainMatchPredicate_OrMatch{
			OrMatch: &listenerv3.ListenerFilterChainMatchPredicate_MatchSet{Rules: rules}}}
	}
	return &listenerv3.ListenerFilterChainMatchPredicate{Rule: &listenerv3.ListenerFilterChainMatchPredicate_NotMatch{NotMatch: on}}
}

// InboundDetectionTimeout is how long the inbound listener's TLS
// inspector waits for a client's first bytes before it gives up and the
// connection is matched as not TLS: on a PERMISSIVE port a server-first
// protocol's plaintext client then reaches the workload; on a STRICT port
// it matches no chain and is closed. (Istio's inbound default was 1 s too.)
const InboundDetectionTimeout = time.Second

// Inbound filter chain names: the mTLS chain keeps the cluster's name.
const (
	plaintextChainSuffix   = "plaintext"
	tlsPassthroughSuffix   = "tls-passthrough"
	transportProtocolTLS   = "tls"
	tlsInspectorFilterName = "envoy.filters.listener.tls_inspector"
)

// inboundListener has, per port, the chains its mTLS mode calls for. The
// TLS inspector (on the ports that are not DISABLE only) tells TLS from
// plaintext and reads the ALPN; Envoy then picks the port's chain by
// destination port, then transport protocol (an exact "tls" before a chain
// with none), then application protocols (any listed before none), with no
// fallback to a less specific transport protocol once "tls" matched:
//   - STRICT: TLS offering a mesh ALPN (MeshALPN), mutual TLS terminated
//     (a client certificate required); anything else matches nothing and
//     is closed;
//   - PERMISSIVE: that chain; TLS without a mesh ALPN (the application's
//     own TLS) passed through untouched by tcp_proxy; and a chain with no
//     transport protocol for plaintext;
//   - DISABLE: the plaintext chain only, whatever the client sends.
//
// HTTP ports get the HTTP connection manager on the mTLS and plaintext
// chains, TCP ports tcp_proxy; the access log's peer_san is the client's
// SPIFFE id under mTLS, empty otherwise.
func inboundListener(v SidecarView) *listenerv3.Listener {
	var chains []*listenerv3.FilterChain
	var inspected []uint32
	mtls := envoyconf.DownstreamTLS(&tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext:         meshTLSContext(nil),
	})
	httpTLS := inboundHTTPTLS()
	for _, p := range v.Inbound {
		port := p.Port
		cluster := "inbound|" + itoa(port) + "||"
		filters := func() []*listenerv3.Filter {
			if p.TCP {
				return []*listenerv3.Filter{tcpProxy("inbound_"+itoa(port), cluster)}
			}
			route := &routev3.RouteConfiguration{Name: cluster, VirtualHosts: []*routev3.VirtualHost{{
				Name: "inbound|http|" + itoa(port), Domains: []string{"*"},
				Routes: []*routev3.Route{routeTo(cluster)},
			}}}
			return []*listenerv3.Filter{httpManager("inbound_"+itoa(port), "", route)}
		}
		mode := p.Mode
		if mode == model.MTLSUnset {
			mode = model.DefaultMTLSMode
		}
		if mode != model.MTLSDisable {
			inspected = append(inspected, port)
			socket := mtls
			if !p.TCP {
				socket = httpTLS // see inboundHTTPTLS
			}
			chains = append(chains, &listenerv3.FilterChain{
				Name: cluster,
				FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port),
					TransportProtocol: transportProtocolTLS, ApplicationProtocols: MeshALPN},
				TransportSocket: socket,
				Filters:         filters(),
			})
		}
		if mode == model.MTLSPermissive {
			chains = append(chains, &listenerv3.FilterChain{
				Name:             cluster + tlsPassthroughSuffix,
				FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port), TransportProtocol: transportProtocolTLS},
				Filters:          []*listenerv3.Filter{tcpProxy("inbound_"+itoa(port), cluster)},
			})
		}
		if mode != model.MTLSStrict {
			chains = append(chains, &listenerv3.FilterChain{
				Name:             cluster + plaintextChainSuffix,
				FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port)},
				Filters:          filters(),
			})
		}
	}
	l := &listenerv3.Listener{
		Name:            InboundListener,
		Address:         envoyconf.SocketAddress("0.0.0.0", InboundPort),
		ListenerFilters: []*listenerv3.ListenerFilter{originalDst()},
		FilterChains:    chains,
		// A port the workload does not serve through the mesh: refuse rather
		// than forward unauthenticated traffic.
	}
	if len(inspected) > 0 {
		l.ListenerFilters = append(l.ListenerFilters, &listenerv3.ListenerFilter{Name: tlsInspectorFilterName,
			ConfigType:     &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspectorv3.TlsInspector{})},
			FilterDisabled: onlyOnPorts(inspected)})
		l.ListenerFiltersTimeout = durationpb.New(InboundDetectionTimeout)
		l.ContinueOnListenerFiltersTimeout = true
	}
	return l
}

// inboundHTTPTLS is the mutual TLS of inbound HTTP chains: as the TCP
// chains', but it negotiates no ALPN. The connection manager picks its
// codec from the negotiated ALPN when there is one, and the mesh's
// ("istio", what clients offer) would make it HTTP/1.1 even for the
// HTTP/2 a client's sidecar speaks to gRPC and http2 ports (answered 400);
// without one it reads the client's first bytes (the HTTP/2 preface or
// not).
func inboundHTTPTLS() *corev3.TransportSocket {
	common := meshTLSContext(nil)
	common.AlpnProtocols = nil
	return envoyconf.DownstreamTLS(&tlsv3.DownstreamTlsContext{RequireClientCertificate: wrapperspb.Bool(true), CommonTlsContext: common})
}

// InboundClusters are the clusters of a sidecar's own ports.
func InboundClusters(v SidecarView) []*clusterv3.Cluster {
	out := make([]*clusterv3.Cluster, 0, len(v.Inbound))
	for _, p := range v.Inbound {
		c := InboundCluster(p.Port)
		if !p.TCP {
			// HTTP: to the workload in the protocol the client spoke (the
			// client's sidecar speaks HTTP/2 to HTTP/2 and gRPC ports).
			c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsName: mustAny(useDownstreamProtocol())}
		}
		out = append(out, c)
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
