package translate

import (
	"slices"
	"testing"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/horizonmesh/horizon/internal/model"
)

// The inbound HTTP chains negotiate no ALPN, so that the connection
// manager reads the client's first bytes for its codec (HTTP/2 from a
// client sidecar to a gRPC port); TCP chains keep the mesh's.
func TestInboundHTTPChainsNegotiateNoALPN(t *testing.T) {
	// STRICT: every chain is a TLS one.
	v := SidecarView{Cluster: "cluster1", Inbound: []WorkloadPort{
		{Port: 5000, Mode: model.MTLSStrict}, {Port: 9000, TCP: true, Mode: model.MTLSStrict}, {Port: 50051, Mode: model.MTLSStrict}}}
	m, _ := model.Build(model.BuildInput{})
	ls := LDS(m, v)
	if len(ls) != 2 || ls[1].GetName() != InboundListener {
		t.Fatalf("listeners: %v", ls)
	}
	for _, c := range ls[1].GetFilterChains() {
		var tls tlsv3.DownstreamTlsContext
		if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(&tls); err != nil {
			t.Fatalf("%s: %v", c.GetName(), err)
		}
		alpn := tls.GetCommonTlsContext().GetAlpnProtocols()
		want := []string(nil)
		if c.GetName() == "inbound|9000||" {
			want = MeshALPN[:1]
		}
		if !slices.Equal(alpn, want) || !tls.GetRequireClientCertificate().GetValue() {
			t.Errorf("%s: ALPN %q, client certificate required %v; want ALPN %q, required", c.GetName(), alpn, tls.GetRequireClientCertificate().GetValue(), want)
		}
	}
}
