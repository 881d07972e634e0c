package translate

import (
	"slices"
	"testing"

	"github.com/horizonmesh/horizon/internal/model"
)

// Each mode gets its chains: STRICT only mTLS (TLS with a mesh ALPN);
// PERMISSIVE mTLS, the application's own TLS passed through and plaintext;
// DISABLE plaintext only. The TLS inspector runs on the ports that are not
// DISABLE.
func TestInboundChainsPerMode(t *testing.T) {
	type chain struct {
		name      string
		transport string
		alpn      bool
		tls       bool
		filter    string
	}
	const hcm, tcp = "envoy.filters.network.http_connection_manager", "envoy.filters.network.tcp_proxy"
	v := SidecarView{Inbound: []WorkloadPort{
		{Port: 5000, Mode: model.MTLSStrict},
		{Port: 6000, TCP: true, Mode: model.MTLSPermissive},
		{Port: 7000, Mode: model.MTLSPermissive},
		{Port: 8000, Mode: model.MTLSDisable},
		{Port: 9000, TCP: true}, // unset: the default, PERMISSIVE
	}}
	want := map[uint32][]chain{
		5000: {{"inbound|5000||", "tls", true, true, hcm}},
		6000: {{"inbound|6000||", "tls", true, true, tcp}, {"inbound|6000||tls-passthrough", "tls", false, false, tcp},
			{"inbound|6000||plaintext", "", false, false, tcp}},
		7000: {{"inbound|7000||", "tls", true, true, hcm}, {"inbound|7000||tls-passthrough", "tls", false, false, tcp},
			{"inbound|7000||plaintext", "", false, false, hcm}},
		8000: {{"inbound|8000||plaintext", "", false, false, hcm}},
		9000: {{"inbound|9000||", "tls", true, true, tcp}, {"inbound|9000||tls-passthrough", "tls", false, false, tcp},
			{"inbound|9000||plaintext", "", false, false, tcp}},
	}
	l := inboundListener(v)
	got := map[uint32][]chain{}
	for _, fc := range l.FilterChains {
		m := fc.FilterChainMatch
		if m.ApplicationProtocols != nil && !slices.Equal(m.ApplicationProtocols, MeshALPN) {
			t.Errorf("%s: ALPN %v, want the mesh's", fc.Name, m.ApplicationProtocols)
		}
		port := m.DestinationPort.GetValue()
		got[port] = append(got[port], chain{fc.Name, m.TransportProtocol, len(m.ApplicationProtocols) > 0,
			fc.TransportSocket != nil, fc.Filters[0].Name})
	}
	for port, w := range want {
		if !slices.Equal(got[port], w) {
			t.Errorf("port %d chains:\n got %+v\nwant %+v", port, got[port], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("chains for ports %v", got)
	}
	// The TLS inspector: on 5000, 6000, 7000 and 9000, not 8000; a silent
	// client is matched as not TLS after InboundDetectionTimeout.
	if len(l.ListenerFilters) != 2 || l.ListenerFilters[1].Name != tlsInspectorFilterName {
		t.Fatalf("listener filters %v", l.ListenerFilters)
	}
	var on []int32
	for _, r := range l.ListenerFilters[1].FilterDisabled.GetNotMatch().GetOrMatch().GetRules() {
		on = append(on, r.GetDestinationPortRange().GetStart())
	}
	if !slices.Equal(on, []int32{5000, 6000, 7000, 9000}) {
		t.Errorf("TLS inspector on %v", on)
	}
	if l.ListenerFiltersTimeout.AsDuration() != InboundDetectionTimeout || !l.ContinueOnListenerFiltersTimeout {
		t.Errorf("listener filters timeout %v continue %v", l.ListenerFiltersTimeout, l.ContinueOnListenerFiltersTimeout)
	}

	// Only DISABLE ports: no inspector, nothing to wait for.
	l = inboundListener(SidecarView{Inbound: []WorkloadPort{{Port: 8000, Mode: model.MTLSDisable}}})
	if len(l.ListenerFilters) != 1 || l.ListenerFiltersTimeout != nil || len(l.FilterChains) != 1 {
		t.Errorf("DISABLE only: filters %v timeout %v chains %d", l.ListenerFilters, l.ListenerFiltersTimeout, len(l.FilterChains))
	}
}
