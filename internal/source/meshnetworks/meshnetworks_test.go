package meshnetworks

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/horizonmesh/horizon/internal/model"
)

// diag is an expected diagnostic: exact Object and Field, and substrings the
// Message must contain.
type diag struct {
	object, field string
	msg           []string
}

func netCfg(name string, regs []model.ClusterID, cidrs []string, gws ...model.GatewaySpec) *model.NetworkConfig {
	n := &model.NetworkConfig{Name: name, Registries: regs, Gateways: gws}
	for _, c := range cidrs {
		n.CIDRs = append(n.CIDRs, netip.MustParsePrefix(c))
	}
	return n
}

func regs(ids ...model.ClusterID) []model.ClusterID { return ids }

func addrGW(addr string, port uint32) model.GatewaySpec {
	return model.GatewaySpec{Address: addr, Port: port}
}

func svcGW(name string, port uint32) model.GatewaySpec {
	return model.GatewaySpec{RegistryServiceName: name, Port: port}
}

const walkthrough = `meshNetworks: {network2: {endpoints: [{fromRegistry: remote_kubecfg}], gateways: [{address: 0.0.0.0, port: 443}]}}`

const twoNetworks = `
  net-b:
    endpoints:
    - fromCidr: 10.1.2.3/16
    - fromRegistry: cluster-b
    gateways:
    - address: 192.0.2.10
      port: 15443
  net-a:
    endpoints:
    - fromRegistry: cluster-a
    gateways:
    - registryServiceName: istio-eastwestgateway.istio-system.svc.cluster.local
      port: 15443
`

var twoNetworksWant = []*model.NetworkConfig{
	netCfg("net-a", regs("cluster-a"), nil, svcGW("istio-eastwestgateway.istio-system.svc.cluster.local", 15443)),
	netCfg("net-b", regs("cluster-b"), []string{"10.1.0.0/16"}, addrGW("192.0.2.10", 15443)),
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  []*model.NetworkConfig
		warns []diag
	}{
		{name: "empty input", in: ""},
		{name: "comments only", in: "# nothing here\n\n"},
		{name: "empty mapping", in: "{}"},
		{name: "empty networks", in: "networks: {}"},
		{name: "null networks", in: "networks:\n"},
		{name: "empty meshNetworks", in: "meshNetworks: {}"},
		{name: "meshNetworks with null networks", in: "meshNetworks:\n  networks:\n"},
		{name: "ConfigMap data form", in: "networks:\n" + twoNetworks, want: twoNetworksWant},
		{name: "under meshNetworks", in: "meshNetworks:\n  networks:\n" + indent(twoNetworks, "  "), want: twoNetworksWant},
		{name: "Helm values form", in: "meshNetworks:\n" + twoNetworks, want: twoNetworksWant},
		{
			name: "Helm values under global, other values ignored",
			in:   "pilot:\n  enabled: true\nglobal:\n  meshID: mesh1\n  network: net-a\n  meshNetworks:\n" + indent(twoNetworks, "  "),
			want: twoNetworksWant,
		},
		{
			name:  "walkthrough snippet",
			in:    walkthrough,
			want:  []*model.NetworkConfig{netCfg("network2", regs("remote_kubecfg"), nil)},
			warns: []diag{{"network network2", "gateways[0].address", []string{"0.0.0.0", "no gateway"}}},
		},
		{
			name:  "walkthrough under global",
			in:    "global:\n  " + walkthrough,
			want:  []*model.NetworkConfig{netCfg("network2", regs("remote_kubecfg"), nil)},
			warns: []diag{{"network network2", "gateways[0].address", []string{"0.0.0.0"}}},
		},
		{
			name:  "IPv6 placeholder dropped, later gateway kept",
			in:    "networks: {n1: {gateways: [{address: '::', port: 443}, {address: 192.0.2.1, port: 443}]}}",
			want:  []*model.NetworkConfig{netCfg("n1", nil, nil, addrGW("192.0.2.1", 443))},
			warns: []diag{{"network n1", "gateways[0].address", []string{"::", "ignored"}}},
		},
		{
			name: "JSON input",
			in:   `{"networks": {"n1": {"endpoints": [{"fromCidr": "fd00::/64"}, {"fromRegistry": "c1"}], "gateways": [{"address": "2001:DB8::1", "port": 15443}]}}}`,
			want: []*model.NetworkConfig{netCfg("n1", regs("c1"), []string{"fd00::/64"}, addrGW("2001:db8::1", 15443))},
		},
		{
			name: "DNS name address, locality accepted, quoted port",
			in:   "networks:\n  n1:\n    gateways:\n    - address: gw.example.com\n      port: \"15443\"\n      locality: us-east1/a\n",
			want: []*model.NetworkConfig{netCfg("n1", nil, nil, addrGW("gw.example.com", 15443))},
		},
		{
			name: "snake_case field names",
			in:   "networks: {n1: {endpoints: [{from_registry: c1}, {from_cidr: 10.0.0.0/8}], gateways: [{registry_service_name: gw.ns.svc.cluster.local, port: 443}]}}",
			want: []*model.NetworkConfig{netCfg("n1", regs("c1"), []string{"10.0.0.0/8"}, svcGW("gw.ns.svc.cluster.local", 443))},
		},
		{
			name: "network with nothing in it",
			in:   "networks: {n1: }",
			want: []*model.NetworkConfig{netCfg("n1", nil, nil)},
		},
		{
			name: "input order kept within a network",
			in:   "networks: {n1: {endpoints: [{fromRegistry: z}, {fromCidr: 10.2.0.0/16}, {fromRegistry: a}, {fromCidr: 10.1.0.0/16}], gateways: [{address: 192.0.2.9, port: 2}, {address: 192.0.2.1, port: 1}]}}",
			want: []*model.NetworkConfig{netCfg("n1", regs("z", "a"), []string{"10.2.0.0/16", "10.1.0.0/16"}, addrGW("192.0.2.9", 2), addrGW("192.0.2.1", 1))},
		},
		{
			name: "cluster in two networks: first by name keeps it",
			in:   "networks: {net-b: {endpoints: [{fromRegistry: c0}, {fromRegistry: shared}]}, net-a: {endpoints: [{fromRegistry: shared}]}, net-c: {endpoints: [{fromRegistry: shared}]}}",
			want: []*model.NetworkConfig{
				netCfg("net-a", regs("shared"), nil),
				netCfg("net-b", regs("c0"), nil),
				netCfg("net-c", nil, nil),
			},
			warns: []diag{
				{"network net-b", "endpoints[1].fromRegistry", []string{`"shared"`, `"net-a"`, `"net-b"`}},
				{"network net-c", "endpoints[0].fromRegistry", []string{`"shared"`, `"net-a"`, `"net-c"`}},
			},
		},
		{
			name: "duplicates within a network",
			in:   "networks: {n1: {endpoints: [{fromRegistry: c1}, {fromRegistry: c1}, {fromCidr: 10.0.0.1/8}, {fromCidr: 10.0.0.0/8}], gateways: [{address: 192.0.2.1, port: 1}, {address: 192.0.2.1, port: 1}]}}",
			want: []*model.NetworkConfig{netCfg("n1", regs("c1"), []string{"10.0.0.0/8"}, addrGW("192.0.2.1", 1))},
			warns: []diag{
				{"network n1", "endpoints[1].fromRegistry", []string{`"c1"`, "endpoints[0].fromRegistry"}},
				{"network n1", "endpoints[3].fromCidr", []string{"10.0.0.0/8", "endpoints[2].fromCidr"}},
				{"network n1", "gateways[1]", []string{"gateways[0]"}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ds := Parse("f.yaml", []byte(tc.in))
			if err := ds.Err(); err != nil {
				t.Fatalf("unexpected errors: %v", err)
			}
			if got == nil {
				t.Fatal("nil result without errors")
			}
			if !reflect.DeepEqual(got.Networks, tc.want) {
				t.Errorf("networks:\n got %s\nwant %s", dump(got.Networks), dump(tc.want))
			}
			checkDiags(t, model.Warning, ds, "f.yaml", tc.warns)
		})
	}
}

func TestParseConfigMap(t *testing.T) {
	in := `apiVersion: v1
kind: ConfigMap
metadata:
  name: istio
  namespace: istio-system
data:
  mesh: |-
    defaultConfig: {}
  meshNetworks: |-
    networks:
      network1:
        endpoints:
        - fromRegistry: Kubernetes
        gateways:
        - address: 0.0.0.0
          port: 443
`
	got, ds := Parse("cm.yaml", []byte(in))
	if err := ds.Err(); err != nil {
		t.Fatalf("unexpected errors: %v", err)
	}
	want := []*model.NetworkConfig{netCfg("network1", regs("Kubernetes"), nil)}
	if !reflect.DeepEqual(got.Networks, want) {
		t.Errorf("networks:\n got %s\nwant %s", dump(got.Networks), dump(want))
	}
	checkDiags(t, model.Warning, ds, "cm.yaml: ConfigMap istio-system/istio data.meshNetworks",
		[]diag{{"network network1", "gateways[0].address", []string{"0.0.0.0"}}})

	// Errors inside the embedded string carry the ConfigMap origin too.
	bad := strings.Replace(in, "port: 443", "port: 0", 1)
	got, ds = Parse("cm.yaml", []byte(bad))
	if got != nil {
		t.Errorf("got %s, want nil", dump(got.Networks))
	}
	checkDiags(t, model.Error, ds, "cm.yaml: ConfigMap istio-system/istio data.meshNetworks",
		[]diag{{"network network1", "gateways[0].port", []string{"port out of range", "0"}}})
}

func TestParseErrors(t *testing.T) {
	long := strings.Repeat("a", 64)
	tests := []struct {
		name string
		in   string
		errs []diag
	}{
		// Shape of the whole input.
		{"not YAML", "networks: [", []diag{{"", "", []string{"cannot parse"}}}},
		{"duplicate network", "networks:\n  n1: {}\n  n1: {}\n", []diag{{"", "", []string{`"n1" already set`}}}},
		{"top level list", "- a\n- b\n", []diag{{"", "", []string{"a list", `"networks"`, `"meshNetworks"`, `"global.meshNetworks"`, "ConfigMap"}}}},
		{"unrecognised keys", "foo: 1\nbar: 2\n", []diag{{"", "", []string{`"bar", "foo"`, `"networks"`, `"meshNetworks"`, `"global.meshNetworks"`, "ConfigMap"}}}},
		{"networks and meshNetworks", "networks: {}\nmeshNetworks: {}\n", []diag{{"", "", []string{`"networks"`, `"meshNetworks"`}}}},
		{"unknown key beside networks", "networks: {}\nfoo: 1\n", []diag{{"", "foo", []string{"unknown field", `"networks"`}}}},
		{"unknown key beside meshNetworks.networks", "meshNetworks: {networks: {}, extra: 1}", []diag{{"", "meshNetworks.extra", []string{"unknown field"}}}},
		{"networks not a mapping", "networks: [a]", []diag{{"", "networks", []string{"a list"}}}},
		{"meshNetworks not a mapping", "meshNetworks: x", []diag{{"", "meshNetworks", []string{`string "x"`}}}},
		{"global without meshNetworks", "global: {meshID: m}", []diag{{"", "global", []string{"global.meshNetworks", `"meshID"`}}}},
		{"other kind", "kind: Deployment\n", []diag{{"", "kind", []string{`"Deployment"`}}}},
		{"ConfigMap without meshNetworks", "kind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata: {mesh: x}\n",
			[]diag{{"ConfigMap istio-system/istio", "data.meshNetworks", []string{"no meshNetworks key", `"mesh"`}}}},
		{"ConfigMap meshNetworks not a string", "kind: ConfigMap\ndata: {meshNetworks: {networks: {}}}\n",
			[]diag{{"ConfigMap", "data.meshNetworks", []string{"must be a string"}}}},

		// Network names.
		{"empty network name", `networks: {"": {}}`, []diag{{`network ""`, "", []string{"must not be empty"}}}},
		{"bad network name", `networks: {"net 1": {}}`, []diag{{`network "net 1"`, "", []string{`"net 1"`, "label value"}}}},
		{"network name starts with dash", `networks: {"-net": {}}`, []diag{{`network "-net"`, "", []string{`"-net"`}}}},
		{"network name too long", "networks: {" + long + ": {}}", []diag{{`network "` + long + `"`, "", []string{"63"}}}},

		// Network shape and unknown fields.
		{"network not a mapping", "networks: {n1: [a]}", []diag{{"network n1", "", []string{"a list"}}}},
		{"unknown network field", "networks: {n1: {endpoint: []}}", []diag{{"network n1", "endpoint", []string{`unknown field "endpoint"`}}}},
		{"endpoints not a list", "networks: {n1: {endpoints: {fromRegistry: c1}}}", []diag{{"network n1", "endpoints", []string{"must be a list"}}}},
		{"gateways not a list", "networks: {n1: {gateways: 3}}", []diag{{"network n1", "gateways", []string{"must be a list", "number 3"}}}},
		{"endpoint not a mapping", "networks: {n1: {endpoints: [c1]}}", []diag{{"network n1", "endpoints[0]", []string{`string "c1"`}}}},
		{"gateway not a mapping", "networks: {n1: {gateways: [null]}}", []diag{{"network n1", "gateways[0]", []string{"null"}}}},
		{"unknown endpoint field", "networks: {n1: {endpoints: [{fromcidr: 10.0.0.0/8}]}}", []diag{{"network n1", "endpoints[0].fromcidr", []string{`unknown field "fromcidr"`, "fromCidr"}}}},
		{"unknown gateway field", "networks: {n1: {gateways: [{address: 192.0.2.1, port: 1, weight: 2}]}}", []diag{{"network n1", "gateways[0].weight", []string{`unknown field "weight"`}}}},
		{"both spellings", "networks: {n1: {endpoints: [{fromRegistry: a, from_registry: b}]}}", []diag{{"network n1", "endpoints[0].from_registry", []string{"set twice"}}}},

		// Endpoints.
		{"endpoint with neither", "networks: {n1: {endpoints: [{}]}}", []diag{{"network n1", "endpoints[0]", []string{"fromRegistry", "fromCidr", "neither"}}}},
		{"endpoint with both", "networks: {n1: {endpoints: [{fromRegistry: c1, fromCidr: 10.0.0.0/8}]}}", []diag{{"network n1", "endpoints[0]", []string{"both", `"c1"`, `"10.0.0.0/8"`}}}},
		{"CIDR without prefix length", "networks: {n1: {endpoints: [{fromRegistry: c1}, {fromCidr: 10.0.0.1}]}}", []diag{{"network n1", "endpoints[1].fromCidr", []string{"invalid CIDR", `"10.0.0.1"`}}}},
		{"CIDR bad bits", "networks: {n1: {endpoints: [{fromRegistry: c1}, {fromCidr: 10.0.0.0/33}]}}", []diag{{"network n1", "endpoints[1].fromCidr", []string{"invalid CIDR", `"10.0.0.0/33"`}}}},
		{"CIDR garbage", "networks: {n1: {endpoints: [{fromCidr: pods}]}}", []diag{{"network n1", "endpoints[0].fromCidr", []string{"invalid CIDR", `"pods"`}}}},
		{"empty registry", `networks: {n1: {endpoints: [{fromRegistry: ""}]}}`, []diag{{"network n1", "endpoints[0].fromRegistry", []string{"must not be empty"}}}},
		{"registry with slash", "networks: {n1: {endpoints: [{fromRegistry: a/b}]}}", []diag{{"network n1", "endpoints[0].fromRegistry", []string{"invalid cluster ID", `"a/b"`}}}},
		{"registry dot", `networks: {n1: {endpoints: [{fromRegistry: "."}]}}`, []diag{{"network n1", "endpoints[0].fromRegistry", []string{`"."`}}}},
		{"registry dotdot", `networks: {n1: {endpoints: [{fromRegistry: ".."}]}}`, []diag{{"network n1", "endpoints[0].fromRegistry", []string{`".."`}}}},
		{"registry too long", "networks: {n1: {endpoints: [{fromRegistry: " + strings.Repeat("c", 254) + "}]}}", []diag{{"network n1", "endpoints[0].fromRegistry", []string{"253"}}}},
		{"registry not a string", "networks: {n1: {endpoints: [{fromRegistry: 123}]}}", []diag{{"network n1", "endpoints[0].fromRegistry", []string{"must be a string", "number 123"}}}},

		// Gateways.
		{"gateway with neither", "networks: {n1: {gateways: [{port: 443}]}}", []diag{{"network n1", "gateways[0]", []string{"address", "registryServiceName", "neither"}}}},
		{"gateway with both", "networks: {n1: {gateways: [{address: 192.0.2.1, registryServiceName: gw.ns.svc.cluster.local, port: 443}]}}",
			[]diag{{"network n1", "gateways[0]", []string{"both", `"192.0.2.1"`, `"gw.ns.svc.cluster.local"`}}}},
		{"port missing", "networks: {n1: {gateways: [{address: 192.0.2.1}]}}", []diag{{"network n1", "gateways[0].port", []string{"required"}}}},
		{"port zero", "networks: {n1: {gateways: [{address: 192.0.2.1, port: 0}]}}", []diag{{"network n1", "gateways[0].port", []string{"port out of range", ": 0"}}}},
		{"port negative", "networks: {n1: {gateways: [{address: 192.0.2.1, port: -1}]}}", []diag{{"network n1", "gateways[0].port", []string{"port out of range", "-1"}}}},
		{"port too big", "networks: {n1: {gateways: [{address: 192.0.2.1, port: 65536}]}}", []diag{{"network n1", "gateways[0].port", []string{"port out of range", "65536"}}}},
		{"port huge", "networks: {n1: {gateways: [{address: 192.0.2.1, port: 99999999999999999999}]}}", []diag{{"network n1", "gateways[0].port", []string{"port out of range"}}}},
		{"port fractional", "networks: {n1: {gateways: [{address: 192.0.2.1, port: 1.5}]}}", []diag{{"network n1", "gateways[0].port", []string{"integer", "1.5"}}}},
		{"port word", "networks: {n1: {gateways: [{address: 192.0.2.1, port: https}]}}", []diag{{"network n1", "gateways[0].port", []string{"integer", `"https"`}}}},
		{"port list", "networks: {n1: {gateways: [{address: 192.0.2.1, port: [1]}]}}", []diag{{"network n1", "gateways[0].port", []string{"a list"}}}},
		{"address upper case", "networks: {n1: {gateways: [{address: GW.example.com, port: 443}]}}", []diag{{"network n1", "gateways[0].address", []string{`"GW.example.com"`, "lower-case"}}}},
		{"address bad IPv4", "networks: {n1: {gateways: [{address: 10.0.0.256, port: 443}]}}", []diag{{"network n1", "gateways[0].address", []string{"invalid IP address", `"10.0.0.256"`}}}},
		{"address with zone", "networks: {n1: {gateways: [{address: 'fe80::1%eth0', port: 443}]}}", []diag{{"network n1", "gateways[0].address", []string{"zone"}}}},
		{"address bad label", "networks: {n1: {gateways: [{address: gw_1.example.com, port: 443}]}}", []diag{{"network n1", "gateways[0].address", []string{`"gw_1"`}}}},
		{"address trailing dot", "networks: {n1: {gateways: [{address: gw.example.com., port: 443}]}}", []diag{{"network n1", "gateways[0].address", []string{"empty label"}}}},
		{"address empty", `networks: {n1: {gateways: [{address: "", port: 443}]}}`, []diag{{"network n1", "gateways[0].address", []string{"empty"}}}},
		{"registryServiceName invalid", "networks: {n1: {gateways: [{registryServiceName: Istio_Gateway, port: 443}]}}", []diag{{"network n1", "gateways[0].registryServiceName", []string{`"Istio_Gateway"`}}}},
		{"locality not a string", "networks: {n1: {gateways: [{address: 192.0.2.1, port: 1, locality: [a]}]}}", []diag{{"network n1", "gateways[0].locality", []string{"must be a string"}}}},

		// Everything is reported at once, and warnings do not hide errors.
		{
			"several errors",
			"networks:\n  a: {endpoints: [{fromCidr: x}], gateways: [{address: 0.0.0.0, port: 70000}]}\n  b: {endpoints: [{fromRegistry: c1}, {fromRegistry: 'c 2'}], gateways: [{address: 192.0.2.1}]}\n",
			[]diag{
				{"network a", "endpoints[0].fromCidr", []string{`"x"`}},
				{"network a", "gateways[0].port", []string{"70000"}},
				{"network b", "endpoints[1].fromRegistry", []string{`"c 2"`}},
				{"network b", "gateways[0].port", []string{"required"}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ds := Parse("f.yaml", []byte(tc.in))
			if got != nil {
				t.Errorf("got %s, want nil result", dump(got.Networks))
			}
			checkDiags(t, model.Error, ds, "f.yaml", tc.errs)
		})
	}
}

func TestParseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meshNetworks.yaml")
	if err := os.WriteFile(path, []byte(walkthrough), 0o600); err != nil {
		t.Fatal(err)
	}
	got, ds := ParseFile(path)
	if got == nil || len(got.Networks) != 1 || got.Networks[0].Name != "network2" {
		t.Fatalf("got %+v, %v", got, ds)
	}
	checkDiags(t, model.Warning, ds, path, []diag{{"network network2", "gateways[0].address", []string{"0.0.0.0"}}})

	missing := filepath.Join(t.TempDir(), "nope.yaml")
	got, ds = ParseFile(missing)
	if got != nil {
		t.Errorf("got %+v for a missing file", got)
	}
	checkDiags(t, model.Error, ds, missing, []diag{{"", "", []string{"cannot read"}}})
}

// checkDiags asserts that the diagnostics of severity sev are exactly want
// (in any order), all with File file.
func checkDiags(t *testing.T, sev model.Severity, ds model.Diagnostics, file string, want []diag) {
	t.Helper()
	var got model.Diagnostics
	for _, d := range ds {
		if d.Severity == sev {
			got = append(got, d)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d %ss, want %d:\n%s", len(got), sev, len(want), listDiags(got))
		return
	}
	used := make([]bool, len(got))
	for _, w := range want {
		found := false
		for i, d := range got {
			if used[i] || d.File != file || d.Object != w.object || d.Field != w.field || !containsAll(d.Message, w.msg) {
				continue
			}
			used[i], found = true, true
			break
		}
		if !found {
			t.Errorf("no %s with File %q, Object %q, Field %q and message containing %q; got:\n%s", sev, file, w.object, w.field, w.msg, listDiags(got))
		}
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func listDiags(ds model.Diagnostics) string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString("  " + d.Severity.String() + ": File=" + d.File + " Object=" + d.Object + " Field=" + d.Field + " Message=" + d.Message + "\n")
	}
	return b.String()
}

func dump(nets []*model.NetworkConfig) string {
	var parts []string
	for _, n := range nets {
		parts = append(parts, fmt.Sprintf("%+v", *n))
	}
	return "[" + strings.Join(parts, " ") + "]"
}
