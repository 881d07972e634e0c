package translate

import (
	"sort"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/xds/envoyconf"
)

// ConnectTimeout is the upstream connect timeout of every outbound cluster.
const ConnectTimeout = 10 * time.Second

// CDS returns the outbound clusters every sidecar shares, sorted by name: one
// EDS cluster per service port, and the passthrough cluster. They do not
// depend on the proxy's network, and an endpoint-only change leaves them
// alone.
func CDS(m *model.Mesh, opts Options) []*clusterv3.Cluster {
	out := []*clusterv3.Cluster{Passthrough()}
	if opts.registryOnly() {
		out = append(out, BlackHole())
	}
	for _, svc := range m.Services() {
		for _, p := range svc.Ports {
			out = append(out, OutboundCluster(svc, p.Port, m.Policy(svc.Hostname), opts))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// OutboundCluster is the EDS cluster of a service port, fed over ADS. Its
// mTLS-capable endpoints (metadata tlsMode: istio, gateways included) get
// Istio mutual TLS; the others plain TCP.
//
// An HTTP/2 port (http2, h2c, grpc) speaks HTTP/2 upstream; a port of
// unknown protocol the protocol its client spoke (HTTP/1.1 or h2c, when
// the sidecar detected HTTP); the others Envoy's default, HTTP/1.1 for
// HTTP ports (TCP ports are not HTTP at all).
//
// The service's traffic policy (a DestinationRule's, or the mesh default;
// nil: none) adds outlier detection, circuit breakers and the like
// (applyPolicy).
func OutboundCluster(svc *model.Service, port uint32, pol *model.TrafficPolicy, opts Options) *clusterv3.Cluster {
	name := ClusterName(port, svc.Hostname)
	var protocolOptions map[string]*anypb.Any
	proto := model.ProtocolUnknown
	if sp, ok := svc.Port(port); ok {
		proto = sp.Selected()
		protocolOptions = upstreamHTTP(proto)
	}
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: envoyconf.ADSSource()},
		ConnectTimeout:       durationpb.New(ConnectTimeout),
		TransportSocketMatches: []*clusterv3.Cluster_TransportSocketMatch{
			{
				Name:            "tlsMode-istio",
				Match:           &structpb.Struct{Fields: map[string]*structpb.Value{"tlsMode": structpb.NewStringValue(TLSModeIstio)}},
				TransportSocket: upstreamMTLS(SNI(port, svc.Hostname), spiffeIDs(svc, port, opts.trustDomain())),
			},
			{Name: "tlsMode-disabled", Match: &structpb.Struct{}, TransportSocket: envoyconf.RawBuffer()},
		},
	}
	c.TypedExtensionProtocolOptions = applyPolicy(c, pol, proto, protocolOptions)
	return c
}

// SNI is the server name a mesh client sends for a service port; gateways
// route on it without decrypting.
func SNI(port uint32, host string) string {
	return "outbound_." + itoa(port) + "_._." + host
}

// Passthrough forwards to the original destination: traffic captured for
// an address that is not a mesh service.
func Passthrough() *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 PassthroughCluster,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:       durationpb.New(ConnectTimeout),
	}
}

// httpProtocolOptionsName is the key of Envoy's upstream HTTP options in a
// cluster's typed_extension_protocol_options.
const httpProtocolOptionsName = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// upstreamHTTP is the upstream HTTP version of a port of protocol p, as a
// cluster's typed_extension_protocol_options (nil: Envoy's default).
func upstreamHTTP(p model.Protocol) map[string]*anypb.Any {
	var o *httpv3.HttpProtocolOptions
	switch {
	case p.IsHTTP2():
		o = &httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}}}
	case p == model.ProtocolUnknown:
		o = useDownstreamProtocol()
	default:
		return nil
	}
	return map[string]*anypb.Any{httpProtocolOptionsName: mustAny(o)}
}

func useDownstreamProtocol() *httpv3.HttpProtocolOptions {
	return &httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{
		UseDownstreamProtocolConfig: &httpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
			HttpProtocolOptions: &corev3.Http1ProtocolOptions{}, Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}}
}

// BlackHole is a cluster without endpoints: a connection routed to it is
// closed, a request answered 503.
func BlackHole() *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 BlackHoleCluster,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(ConnectTimeout),
		LoadAssignment:       &endpointv3.ClusterLoadAssignment{ClusterName: BlackHoleCluster},
	}
}

// InboundCluster reaches the workload's own port on localhost.
func InboundCluster(port uint32) *clusterv3.Cluster {
	name := "inbound|" + itoa(port) + "||"
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(ConnectTimeout),
		LoadAssignment:       envoyconf.StaticLoadAssignment(name, envoyconf.SocketAddress("127.0.0.1", port)),
	}
}

// meshTLSContext is the common part of both sides: our certificate from
// SDS "default", peers validated against SDS "ROOTCA".
func meshTLSContext(sans []string) *tlsv3.CommonTlsContext {
	validation := &tlsv3.CertificateValidationContext{}
	for _, id := range sans {
		validation.MatchTypedSubjectAltNames = append(validation.MatchTypedSubjectAltNames, &tlsv3.SubjectAltNameMatcher{
			SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: id}},
		})
	}
	return &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{envoyconf.SDSSecret(SecretDefault, SDSCluster)},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext:         validation,
			ValidationContextSdsSecretConfig: envoyconf.SDSSecret(SecretRootCA, SDSCluster),
		}},
		AlpnProtocols: MeshALPN[:1],
	}
}

func upstreamMTLS(sni string, sans []string) *corev3.TransportSocket {
	return envoyconf.UpstreamTLS(&tlsv3.UpstreamTlsContext{Sni: sni, CommonTlsContext: meshTLSContext(sans)})
}

// mustAny is envoyconf.MustAny, under the name the package's files use.
func mustAny(m proto.Message) *anypb.Any { return envoyconf.MustAny(m) }
