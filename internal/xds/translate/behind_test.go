package translate_test

import (
	"fmt"
	"net"
	"strconv"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// checkBehind holds GatewayEndpoints to LoadAssignment: every gateway
// endpoint (at a gateway's address)
// of the view's load assignments has exactly one entry, with its weight,
// and every entry is such an endpoint.
func checkBehind(t *testing.T, m *model.Mesh, network string, behind []translate.GatewayEndpoint, eds map[string]types.Resource) {
	t.Helper()
	type key struct{ cluster, locality, addr string }
	entries := map[key]translate.GatewayEndpoint{}
	for _, g := range behind {
		k := key{g.ClusterName, g.Locality, g.Address}
		if _, dup := entries[k]; dup {
			t.Errorf("network %q: two entries for %v", network, k)
		}
		var sum uint64
		for _, m := range g.Members {
			sum += m.Share
		}
		if want := uint32(max(1, min(sum, 1<<32-1))); g.Weight != want {
			t.Errorf("network %q: %v: weight %d, members' shares sum to %d", network, k, g.Weight, sum)
		}
		entries[k] = g
	}
	gateways := map[string]bool{}
	for _, g := range m.Gateways() {
		gateways[net.JoinHostPort(g.Address.String(), strconv.Itoa(int(g.Port)))] = true
	}
	seen := 0
	for name, r := range eds {
		cla := r.(*endpointv3.ClusterLoadAssignment)
		for _, le := range cla.GetEndpoints() {
			loc := ""
			if l := le.GetLocality(); l.GetRegion()+l.GetZone()+l.GetSubZone() != "" {
				loc = l.GetRegion() + "/" + l.GetZone() + "/" + l.GetSubZone()
			}
			for _, lb := range le.GetLbEndpoints() {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				addr := net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
				if !gateways[addr] {
					continue
				}
				g, ok := entries[key{name, loc, addr}]
				if !ok {
					t.Errorf("network %q: %s: gateway endpoint %s in %q has no GatewayEndpoints entry", network, name, addr, loc)
					continue
				}
				seen++
				if g.Weight != lb.GetLoadBalancingWeight().GetValue() {
					t.Errorf("network %q: %s: gateway %s in %q: weight %d in EDS, %d in GatewayEndpoints", network, name, addr, loc,
						lb.GetLoadBalancingWeight().GetValue(), g.Weight)
				}
			}
		}
	}
	if seen != len(entries) {
		t.Errorf("network %q: %d GatewayEndpoints entries, %d found in EDS: %s", network, len(entries), seen, fmt.Sprint(entries))
	}
}
