package envoyconf

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// validator is what the go-control-plane messages generate from Envoy's
// protoc-gen-validate rules.
type validator interface{ ValidateAll() error }

func valid(t *testing.T, m validator) {
	t.Helper()
	if err := m.ValidateAll(); err != nil {
		t.Errorf("%T: %v", m, err)
	}
}

func TestADSSource(t *testing.T) {
	s := ADSSource()
	valid(t, s)
	if s.GetAds() == nil || s.ResourceApiVersion != corev3.ApiVersion_V3 {
		t.Fatalf("ADSSource = %v", s)
	}
	if ADSSource() == s {
		t.Fatal("ADSSource returned a shared message")
	}
}

func TestSDSSource(t *testing.T) {
	s := SDSSource("sds-grpc")
	valid(t, s)
	api := s.GetApiConfigSource()
	if s.ResourceApiVersion != corev3.ApiVersion_V3 || api.GetApiType() != corev3.ApiConfigSource_GRPC ||
		api.GetTransportApiVersion() != corev3.ApiVersion_V3 || len(api.GetGrpcServices()) != 1 ||
		api.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() != "sds-grpc" {
		t.Fatalf("SDSSource = %v", s)
	}
	sec := SDSSecret("ROOTCA", "sds-grpc")
	valid(t, sec)
	if sec.Name != "ROOTCA" || !proto.Equal(sec.SdsConfig, s) {
		t.Fatalf("SDSSecret = %v", sec)
	}
	if a := GRPCAPIConfigSource("xds-grpc"); a.SetNodeOnFirstMessageOnly || a.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() != "xds-grpc" {
		t.Fatalf("GRPCAPIConfigSource = %v", a)
	}
}

func TestAddresses(t *testing.T) {
	a := SocketAddress("127.0.0.1", 15000)
	valid(t, a)
	if sa := a.GetSocketAddress(); sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != 15000 || sa.GetProtocol() != corev3.SocketAddress_TCP {
		t.Fatalf("SocketAddress = %v", a)
	}
	p := PipeAddress("/etc/istio/proxy/SDS")
	valid(t, p)
	if p.GetPipe().GetPath() != "/etc/istio/proxy/SDS" {
		t.Fatalf("PipeAddress = %v", p)
	}
	cla := StaticLoadAssignment("sds-grpc", p)
	valid(t, cla)
	if cla.ClusterName != "sds-grpc" || len(cla.Endpoints) != 1 || len(cla.Endpoints[0].LbEndpoints) != 1 ||
		cla.Endpoints[0].LbEndpoints[0].GetEndpoint().GetAddress() != p {
		t.Fatalf("StaticLoadAssignment = %v", cla)
	}
}

func TestMustAny(t *testing.T) {
	a := MustAny(&corev3.Pipe{Path: "/x"})
	var p corev3.Pipe
	if err := a.UnmarshalTo(&p); err != nil || p.Path != "/x" {
		t.Fatalf("MustAny round trip: %v, %v", &p, err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("MustAny did not panic on an unmarshalable message")
		}
	}()
	MustAny(&corev3.Pipe{Path: "\xff"}) // invalid UTF-8 in a proto3 string
}

func TestTransportSockets(t *testing.T) {
	up := UpstreamTLS(&tlsv3.UpstreamTlsContext{Sni: "outbound_.80_._.a.ns.svc.cluster.local"})
	valid(t, up)
	var uctx tlsv3.UpstreamTlsContext
	if up.Name != "envoy.transport_sockets.tls" || up.GetTypedConfig().UnmarshalTo(&uctx) != nil || uctx.Sni != "outbound_.80_._.a.ns.svc.cluster.local" {
		t.Fatalf("UpstreamTLS = %v", up)
	}
	down := DownstreamTLS(&tlsv3.DownstreamTlsContext{})
	valid(t, down)
	if down.Name != "envoy.transport_sockets.tls" || !down.GetTypedConfig().MessageIs(&tlsv3.DownstreamTlsContext{}) {
		t.Fatalf("DownstreamTLS = %v", down)
	}
	raw := RawBuffer()
	valid(t, raw)
	if raw.Name != "envoy.transport_sockets.raw_buffer" || !raw.GetTypedConfig().MessageIs(&rawbufferv3.RawBuffer{}) {
		t.Fatalf("RawBuffer = %v", raw)
	}
}

func TestHTTP2ProtocolOptions(t *testing.T) {
	opts := HTTP2ProtocolOptions()
	if len(opts) != 1 {
		t.Fatalf("HTTP2ProtocolOptions has %d entries", len(opts))
	}
	a := opts[HTTPProtocolOptionsKey]
	// The key is the type's full name: Envoy looks the options up by it.
	if a == nil || !strings.HasSuffix(a.TypeUrl, "/"+HTTPProtocolOptionsKey) {
		t.Fatalf("HTTP2ProtocolOptions = %v", opts)
	}
	var o upstreamsv3.HttpProtocolOptions
	if err := anypb.UnmarshalTo(a, &o, proto.UnmarshalOptions{}); err != nil {
		t.Fatal(err)
	}
	valid(t, &o)
	if o.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Fatalf("not HTTP/2: %v", &o)
	}
}
