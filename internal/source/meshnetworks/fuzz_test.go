package meshnetworks

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/horizonmesh/horizon/internal/model"
)

// FuzzParse checks that Parse never panics, is deterministic, returns nil
// exactly when it reports errors, and otherwise returns only valid config.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"",
		walkthrough,
		"networks:\n" + twoNetworks,
		"global:\n  meshNetworks:\n" + indent(twoNetworks, "    "),
		`{"networks": {"n1": {"endpoints": [{"fromCidr": "fd00::/64"}], "gateways": [{"address": "::", "port": 1}]}}}`,
		"kind: ConfigMap\ndata:\n  meshNetworks: |\n    networks: {n: {endpoints: [{fromRegistry: c}]}}\n",
		"networks: {a: {endpoints: [{fromRegistry: c}]}, b: {endpoints: [{fromRegistry: c}]}}",
		"networks: {n1: {gateways: [{address: 192.0.2.1, registryServiceName: x, port: 99999}]}}",
		"meshNetworks: {networks: [1, 2]}",
		"a: &x [*x]",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, ds := Parse("origin", []byte(in))
		again, ds2 := Parse("origin", []byte(in))
		if !reflect.DeepEqual(got, again) || !reflect.DeepEqual(ds, ds2) {
			t.Fatalf("not deterministic")
		}
		for _, d := range ds {
			if !strings.HasPrefix(d.File, "origin") || d.Message == "" {
				t.Fatalf("bad diagnostic %+v", d)
			}
		}
		if (ds.Err() != nil) != (got == nil) {
			t.Fatalf("result %v with errors %v", got, ds.Err())
		}
		if got == nil {
			return
		}
		owner := map[model.ClusterID]bool{}
		for i, n := range got.Networks {
			if i > 0 && got.Networks[i-1].Name >= n.Name {
				t.Fatalf("networks not sorted and unique: %q then %q", got.Networks[i-1].Name, n.Name)
			}
			if msg := checkNetworkName(n.Name); msg != "" {
				t.Fatalf("returned invalid network: %s", msg)
			}
			for _, r := range n.Registries {
				if msg := checkClusterID(string(r)); msg != "" || owner[r] {
					t.Fatalf("registry %q invalid or in two networks (%s)", r, msg)
				}
				owner[r] = true
			}
			for _, c := range n.CIDRs {
				if !c.IsValid() || c != c.Masked() {
					t.Fatalf("bad CIDR %v", c)
				}
			}
			for _, g := range n.Gateways {
				if (g.Address == "") == (g.RegistryServiceName == "") || g.Port < 1 || g.Port > 65535 {
					t.Fatalf("bad gateway %+v", g)
				}
				if a, err := netip.ParseAddr(g.Address); err == nil && a.Unmap().IsUnspecified() {
					t.Fatalf("placeholder gateway returned: %+v", g)
				}
			}
		}
	})
}
