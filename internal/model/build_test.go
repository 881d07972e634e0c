package model

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// fakeNames is a name table: names in ok resolve, names in failed fail.
func fakeNames(ok map[string][]string, failed ...string) Names {
	out := Names{}
	for n, addrs := range ok {
		var a []netip.Addr
		for _, s := range addrs {
			a = append(a, netip.MustParseAddr(s))
		}
		out[n] = NameAnswer{Addrs: a}
	}
	for _, n := range failed {
		out[n] = NameAnswer{Err: errors.New("no such host")}
	}
	return out
}

// mustBuild is Build of in, failing t on any diagnostic.
func mustBuild(t *testing.T, in BuildInput) *Mesh {
	t.Helper()
	m, diags := Build(in)
	if len(diags) != 0 {
		t.Fatalf("diagnostics: %v", diags)
	}
	return m
}

func svcWithEndpoint(name, ns string, e *Endpoint) *ClusterService {
	return &ClusterService{Name: name, Namespace: ns, Ports: []ServicePort{{Name: "http", Port: 80}},
		Endpoints: map[uint32][]*Endpoint{80: {e}}}
}

func TestEndpointNetworkPrecedence(t *testing.T) {
	nets := &MeshNetworks{Networks: []*NetworkConfig{
		{Name: "reg", Registries: []ClusterID{"c-reg"}},
		{Name: "wide", CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		{Name: "narrow", CIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}},
	}}
	tests := []struct {
		name      string
		cluster   ClusterID
		nsNetwork string
		pod       string
		addr      string
		want      string
	}{
		{"pod label first", "c-reg", "sysnet", "podnet", "10.1.0.1", "podnet"},
		{"system namespace label second", "c-reg", "sysnet", "", "10.1.0.1", "sysnet"},
		{"fromRegistry third", "c-reg", "", "", "10.1.0.1", "reg"},
		{"fromCidr, longest prefix", "other", "", "", "10.1.0.1", "narrow"},
		{"fromCidr, wide", "other", "", "", "10.2.0.1", "wide"},
		{"none", "other", "", "", "192.0.2.1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &Endpoint{Address: netip.MustParseAddr(tt.addr), Port: 8080, PodNetwork: tt.pod}
			snap := &ClusterSnapshot{ID: tt.cluster, SystemNamespaceNetwork: tt.nsNetwork,
				Services: []*ClusterService{svcWithEndpoint("a", "ns", e)}}
			m := mustBuild(t, BuildInput{Clusters: []*ClusterSnapshot{snap}, Networks: nets})
			got := m.Service("a.ns.svc.cluster.local").Endpoints[80][0]
			if got.Network != tt.want {
				t.Errorf("network = %q, want %q", got.Network, tt.want)
			}
			if got.Cluster != tt.cluster {
				t.Errorf("cluster = %q, want %q", got.Cluster, tt.cluster)
			}
			if e.Network != "" {
				t.Errorf("Build modified its input endpoint")
			}
		})
	}
}

func TestServicesMergeAcrossClusters(t *testing.T) {
	a := &ClusterSnapshot{ID: "c1", Services: []*ClusterService{svcWithEndpoint("hello", "sample", &Endpoint{Address: netip.MustParseAddr("10.0.0.1"), Port: 5000})}}
	b := &ClusterSnapshot{ID: "c2", Services: []*ClusterService{svcWithEndpoint("hello", "sample", &Endpoint{Address: netip.MustParseAddr("10.0.0.1"), Port: 5000})}}
	b.Services[0].Ports = append(b.Services[0].Ports, ServicePort{Name: "grpc", Port: 9090})
	m := mustBuild(t, BuildInput{Clusters: []*ClusterSnapshot{b, a}, DomainSuffix: "example.org"})
	if len(m.Services()) != 1 {
		t.Fatalf("services: %d", len(m.Services()))
	}
	s := m.Service("hello.sample.svc.example.org")
	if s == nil {
		t.Fatal("service not found under the configured domain suffix")
	}
	eps := s.Endpoints[80]
	if len(eps) != 2 || eps[0].Cluster != "c1" || eps[1].Cluster != "c2" {
		t.Errorf("endpoints of both clusters (same IP, different clusters) expected in cluster order, got %v, %v", eps[0].Cluster, eps[len(eps)-1].Cluster)
	}
	if len(s.Ports) != 2 || s.Ports[0].Port != 80 || s.Ports[1].Port != 9090 {
		t.Errorf("ports = %v", s.Ports)
	}
}

func TestDuplicateClusterID(t *testing.T) {
	a := &ClusterSnapshot{ID: "c1"}
	_, diags := Build(BuildInput{Clusters: []*ClusterSnapshot{a, {ID: "c1"}}})
	if err := diags.Err(); err == nil || !strings.Contains(err.Error(), `cluster "c1"`) {
		t.Fatalf("want duplicate cluster error, got %v", err)
	}
}

func TestGatewaySources(t *testing.T) {
	lbService := &ClusterService{Name: "istio-ingressgateway", Namespace: "istio-system",
		Ports: []ServicePort{{Port: 443}}, LoadBalancer: []string{"203.0.113.10", "gw.example.com"}}
	labelled := &ClusterService{Name: "eastwest", Namespace: "istio-system",
		Labels:      map[string]string{NetworkLabel: "n3", GatewayPortLabel: "15444"},
		Ports:       []ServicePort{{Port: 15443}},
		ExternalIPs: []string{"203.0.113.30"}}
	badPort := &ClusterService{Name: "bad", Namespace: "istio-system",
		Labels: map[string]string{NetworkLabel: "n3", GatewayPortLabel: "http"}, Ports: []ServicePort{{Port: 1}},
		LoadBalancer: []string{"203.0.113.31"}}
	noAddr := &ClusterService{Name: "pending", Namespace: "istio-system",
		Labels: map[string]string{NetworkLabel: "n3"}, Ports: []ServicePort{{Port: 1}}}
	nets := &MeshNetworks{Networks: []*NetworkConfig{
		{Name: "n1", Gateways: []GatewaySpec{
			{Address: "198.51.100.1", Port: 443},
			{Address: "0.0.0.0", Port: 443},
			{Address: "gw1.example.com", Port: 443},
			{Address: "missing.example.com", Port: 443},
		}},
		{Name: "n2", Registries: []ClusterID{"c2"}, Gateways: []GatewaySpec{
			{RegistryServiceName: "istio-ingressgateway.istio-system.svc.cluster.local", Port: 443},
			{RegistryServiceName: "absent.istio-system.svc.cluster.local", Port: 443},
			// Also named by the label below in another network: dedup is per network.
			{Address: "203.0.113.30", Port: 15444},
		}},
	}}
	clusters := []*ClusterSnapshot{
		{ID: "c2", Services: []*ClusterService{lbService}},
		// The same LB service in a cluster that is not in n2's registries is not used.
		{ID: "c9", Services: []*ClusterService{lbService, labelled, badPort, noAddr}},
	}
	res := fakeNames(map[string][]string{"gw1.example.com": {"198.51.100.2", "198.51.100.1"}, "gw.example.com": {"203.0.113.11"}}, "missing.example.com")
	m, diags := Build(BuildInput{Clusters: clusters, Networks: nets, Names: res})
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range m.Gateways() {
		got = append(got, g.String())
	}
	want := []string{
		`198.51.100.1:443 (network "n1", cluster "")`,
		`198.51.100.2:443 (network "n1", cluster "")`,
		`203.0.113.30:15444 (network "n2", cluster "")`,
		`203.0.113.10:443 (network "n2", cluster "c2")`,
		`203.0.113.11:443 (network "n2", cluster "c2")`,
		`203.0.113.30:15444 (network "n3", cluster "c9")`,
		`203.0.113.31:15443 (network "n3", cluster "c9")`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("gateways:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	warnings := diags.Warnings()
	for _, w := range []string{"0.0.0.0", "missing.example.com", "absent.istio-system", "invalid port \"http\"", "Service istio-system/pending"} {
		found := false
		for _, d := range warnings {
			if strings.Contains(d.String(), w) {
				found = true
			}
		}
		if !found {
			t.Errorf("no warning mentioning %q in %v", w, warnings)
		}
	}
	// Scale: n1 has 2, n2 has 3 (2 in c2), n3 has 2 (2 in c9) → lcm(2,3,2,2,2) = 6.
	if m.ScaleFactor() != 6 {
		t.Errorf("scale = %d, want 6", m.ScaleFactor())
	}
	if gws := m.GatewaysFor("n2", "c2"); len(gws) != 2 {
		t.Errorf("GatewaysFor(n2, c2) = %v", gws)
	}
	if gws := m.GatewaysFor("n2", "c7"); len(gws) != 3 {
		t.Errorf("GatewaysFor(n2, c7) falls back to the network: %v", gws)
	}
	if nets := m.Networks(); strings.Join(nets, ",") != "n1,n2,n3" {
		t.Errorf("networks = %v", nets)
	}
}

func TestGatewayDedupPrefersCluster(t *testing.T) {
	labelled := &ClusterService{Name: "gw", Namespace: "istio-system", Labels: map[string]string{NetworkLabel: "n1"},
		Ports: []ServicePort{{Port: 15443}}, LoadBalancer: []string{"203.0.113.1"}}
	nets := &MeshNetworks{Networks: []*NetworkConfig{{Name: "n1", Gateways: []GatewaySpec{{Address: "203.0.113.1", Port: 15443}}}}}
	m, _ := Build(BuildInput{Clusters: []*ClusterSnapshot{{ID: "c1", Services: []*ClusterService{labelled}}}, Networks: nets})
	if gws := m.Gateways(); len(gws) != 1 || gws[0].Cluster != "c1" {
		t.Errorf("gateways = %v", gws)
	}
}

func TestLCM(t *testing.T) {
	for _, tt := range []struct{ a, b, want uint32 }{{1, 1, 1}, {2, 3, 6}, {4, 6, 12}, {0, 5, 5}, {1 << 20, 1<<20 - 1, ^uint32(0)}} {
		if got := lcm(tt.a, tt.b); got != tt.want {
			t.Errorf("lcm(%d,%d) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// Build never resolves: a name the table does not know yet gives no gateway
// (a warning) and is listed for resolution; once known, it is a gateway.
func TestBuildReadsNamesOnly(t *testing.T) {
	nets := &MeshNetworks{Networks: []*NetworkConfig{{Name: "n1", Registries: []ClusterID{"c1"},
		Gateways: []GatewaySpec{{Address: "gw.example.com", Port: 15443}, {Address: "198.51.100.9", Port: 15443}}}}}
	in := BuildInput{Clusters: []*ClusterSnapshot{{ID: "c1"}}, Networks: nets}
	m, diags := Build(in)
	if got := m.GatewayNames(); len(got) != 1 || got[0] != "gw.example.com" {
		t.Errorf("GatewayNames = %v, want the one DNS name", got)
	}
	if len(m.Gateways()) != 1 || !strings.Contains(fmt.Sprint(diags), `"gw.example.com" is not resolved yet`) {
		t.Errorf("unknown name: gateways %v, diagnostics %v", m.Gateways(), diags)
	}
	in.Names = fakeNames(map[string][]string{"gw.example.com": {"203.0.113.7"}})
	if m, _ = Build(in); len(m.Gateways()) != 2 {
		t.Errorf("known name: gateways %v", m.Gateways())
	}
}

// Building with the previous mesh reuses the Services whose inputs did not
// change (the same pointer) and gives the same mesh as building afresh.
func TestBuildWithPreviousReusesUnchangedServices(t *testing.T) {
	ep := func(a string) *Endpoint { return &Endpoint{Address: netip.MustParseAddr(a), Port: 8080, MTLS: true} }
	svc := func(name, addr string) *ClusterService {
		return &ClusterService{Name: name, Namespace: "ns", Ports: []ServicePort{{Name: "http", Port: 80}},
			Endpoints: map[uint32][]*Endpoint{80: {ep(addr)}}, ClusterIPs: []string{"10.96.0.1"}}
	}
	a1, b1, b2 := svc("a", "10.1.0.1"), svc("b", "10.1.0.2"), svc("b", "10.2.0.2")
	nets := &MeshNetworks{Networks: []*NetworkConfig{{Name: "n2", Registries: []ClusterID{"c2"}}}}
	in := BuildInput{Networks: nets, Clusters: []*ClusterSnapshot{
		{ID: "c1", Services: []*ClusterService{a1, b1}}, {ID: "c2", Services: []*ClusterService{b2}}}}
	m1, _ := Build(in)

	// c2's b changes; c1's a and b are the same pointers.
	b2x := svc("b", "10.2.0.3")
	in.Clusters = []*ClusterSnapshot{{ID: "c1", Services: []*ClusterService{a1, b1}}, {ID: "c2", Services: []*ClusterService{b2x}}}
	fresh, _ := Build(in)
	in.Previous = m1
	incr, _ := Build(in)
	if !reflect.DeepEqual(fresh.Services(), incr.Services()) {
		t.Fatalf("incremental build differs from a fresh one")
	}
	if incr.Service("a.ns.svc.cluster.local") != m1.Service("a.ns.svc.cluster.local") {
		t.Error("service a, whose inputs did not change, was merged again")
	}
	if incr.Service("b.ns.svc.cluster.local") == m1.Service("b.ns.svc.cluster.local") {
		t.Error("service b, whose c2 part changed, was reused")
	}
	// Other meshNetworks: every service is merged again (networks change).
	in.Networks = &MeshNetworks{}
	in.Previous = incr
	if again, _ := Build(in); again.Service("a.ns.svc.cluster.local") == incr.Service("a.ns.svc.cluster.local") {
		t.Error("a service was reused across a meshNetworks change")
	}
}
