// Package envoyconf builds the Envoy protobuf shapes that the generated xDS
// config (xds/translate) and the agent's bootstrap share: config sources,
// addresses, typed-config packing, transport sockets, protocol options. Pure
// functions, no I/O; every call returns a fresh message.
package envoyconf

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Transport socket and extension names.
const (
	TransportSocketTLS       = "envoy.transport_sockets.tls"
	TransportSocketRawBuffer = "envoy.transport_sockets.raw_buffer"
	// HTTPProtocolOptionsKey is the key of a cluster's
	// typed_extension_protocol_options holding its HttpProtocolOptions.
	HTTPProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// MustAny packs a message into an Any. It panics on failure, which only a
// message type unknown to the registry can cause: use it for our own,
// statically typed messages.
func MustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

// ADSSource is a config source for resources fetched over the ADS stream.
func ADSSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

// GRPCAPIConfigSource is a v3 gRPC API served by the Envoy cluster named
// cluster (Envoy's own gRPC client).
func GRPCAPIConfigSource(cluster string) *corev3.ApiConfigSource {
	return &corev3.ApiConfigSource{
		ApiType: corev3.ApiConfigSource_GRPC, TransportApiVersion: corev3.ApiVersion_V3,
		GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
			EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: cluster}}}},
	}
}

// SDSSource is a config source for secrets served over gRPC by the Envoy
// cluster named cluster (the agent's SDS server, behind the bootstrap's
// static cluster on its Unix socket).
func SDSSource(cluster string) *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_ApiConfigSource{ApiConfigSource: GRPCAPIConfigSource(cluster)},
	}
}

// SDSSecret names the secret to fetch from the SDS server behind cluster.
func SDSSecret(name, cluster string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: SDSSource(cluster)}
}

// SocketAddress is a TCP address, host:port; host an IP literal, or a
// name where Envoy resolves one (a STRICT_DNS cluster's endpoint).
func SocketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

// PipeAddress is a Unix domain socket address.
func PipeAddress(path string) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: path}}}
}

// StaticLoadAssignment is the load assignment of a cluster with a single
// endpoint at addr.
func StaticLoadAssignment(cluster string, addr *corev3.Address) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: cluster, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
			Endpoint: &endpointv3.Endpoint{Address: addr}}}},
	}}}
}

// TransportSocket is the transport socket name configured by cfg.
func TransportSocket(name string, cfg proto.Message) *corev3.TransportSocket {
	return &corev3.TransportSocket{Name: name, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: MustAny(cfg)}}
}

// UpstreamTLS is a TLS transport socket for a cluster.
func UpstreamTLS(ctx *tlsv3.UpstreamTlsContext) *corev3.TransportSocket {
	return TransportSocket(TransportSocketTLS, ctx)
}

// DownstreamTLS is a TLS transport socket for a listener's filter chain.
func DownstreamTLS(ctx *tlsv3.DownstreamTlsContext) *corev3.TransportSocket {
	return TransportSocket(TransportSocketTLS, ctx)
}

// RawBuffer is the plaintext transport socket.
func RawBuffer() *corev3.TransportSocket {
	return TransportSocket(TransportSocketRawBuffer, &rawbufferv3.RawBuffer{})
}

// HTTP2ProtocolOptions are a cluster's typed_extension_protocol_options
// making it speak HTTP/2 to its upstreams (what a gRPC cluster needs).
func HTTP2ProtocolOptions() map[string]*anypb.Any {
	return map[string]*anypb.Any{HTTPProtocolOptionsKey: MustAny(&upstreamsv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamsv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &upstreamsv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamsv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}}})}
}
