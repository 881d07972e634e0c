package translate

import (
	"net/netip"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/horizonmesh/horizon/internal/model"
)

// twoWebsMesh has a service "web" in namespaces a and b (one pod each, in
// cluster c1), and "api" in a.
func twoWebsMesh(t *testing.T) *model.Mesh {
	t.Helper()
	svc := func(name, ns, clusterIP, podIP string) *model.ClusterService {
		return &model.ClusterService{Name: name, Namespace: ns, ClusterIPs: []string{clusterIP},
			Ports: []model.ServicePort{{Name: "http", Port: 8080, Protocol: "TCP"}},
			Endpoints: map[uint32][]*model.Endpoint{8080: {{Address: netip.MustParseAddr(podIP), Port: 8080,
				Namespace: ns, PodName: name + "-0", ServiceAccount: name, MTLS: true}}}}
	}
	m, diags := model.Build(model.BuildInput{Clusters: []*model.ClusterSnapshot{{ID: "c1", Services: []*model.ClusterService{
		svc("web", "a", "10.96.0.1", "10.1.0.1"), svc("web", "b", "10.96.0.2", "10.1.0.2"), svc("api", "a", "fd00::3", "10.1.0.3"),
	}}}})
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// routeOf returns the cluster the route configuration sends a request with
// Host host to, as Envoy picks the virtual host: an exact domain, else the
// catch-all "*" (no other wildcards are generated). It fails the test if a
// domain is named twice, which Envoy rejects.
func routeOf(t *testing.T, rc *routev3.RouteConfiguration, host string) string {
	t.Helper()
	seen := map[string]bool{}
	var exact, star string
	for _, vh := range rc.VirtualHosts {
		for _, d := range vh.Domains {
			if seen[d] {
				t.Fatalf("route configuration %s names domain %q twice", rc.Name, d)
			}
			seen[d] = true
			c := vh.Routes[0].GetRoute().GetCluster()
			switch d {
			case host:
				exact = c
			case "*":
				star = c
			}
		}
	}
	if exact != "" {
		return exact
	}
	return star
}

// Two namespaces each have a "web": a sidecar's bare "web" (and
// "web:8080") means its own namespace's; without a namespace there are no
// bare names. Every other form names the same service from anywhere.
func TestBareNamesMeanTheProxysNamespace(t *testing.T) {
	m := twoWebsMesh(t)
	rds := func(ns string) *routev3.RouteConfiguration {
		res := Build(Input{Mesh: m}, resource.RouteType, View{Cluster: "c1", Namespace: ns})
		rc, ok := res["8080"].(*routev3.RouteConfiguration)
		if !ok {
			t.Fatalf("namespace %q: no route configuration 8080 in %v", ns, res)
		}
		return rc
	}
	webA, webB, api := ClusterName(8080, "web.a.svc.cluster.local"), ClusterName(8080, "web.b.svc.cluster.local"), ClusterName(8080, "api.a.svc.cluster.local")
	for _, c := range []struct{ ns, host, want string }{
		{"a", "web", webA}, {"a", "web:8080", webA}, {"a", "api", api}, {"a", "web.b", webB},
		{"b", "web", webB}, {"b", "web:8080", webB}, {"b", "api", PassthroughCluster}, {"b", "web.a:8080", webA},
		{"", "web", PassthroughCluster}, {"", "web.b.svc.cluster.local:8080", webB},
		// IPv6 ClusterIPs as a Host header writes them.
		{"b", "[fd00::3]:8080", api}, {"b", "[fd00::3]", api}, {"a", "10.96.0.2:8080", webB},
	} {
		if got := routeOf(t, rds(c.ns), c.host); got != c.want {
			t.Errorf("namespace %q, Host %q: routed to %q, want %q", c.ns, c.host, got, c.want)
		}
	}
}

// A sidecar's namespace comes from what the mesh verifies: the proved
// identity's, else its workload's, and only one with services; what a
// node states (its NAMESPACE metadata is not even part of a Claim without
// proof) never makes a view.
func TestRouteViewNamespaceIsVerified(t *testing.T) {
	m := twoWebsMesh(t)
	view := func(c Claim) View {
		p, _ := ProxyOf(m, c)
		v, ok := ViewOf(resource.RouteType, p)
		if !ok {
			t.Fatal("no route view")
		}
		return v
	}
	pod := func(ip string) []netip.Addr { return []netip.Addr{netip.MustParseAddr(ip)} }
	for _, c := range []struct {
		name  string
		claim Claim
		want  string
	}{
		{"workload at its address", Claim{Cluster: "c1", IPs: pod("10.1.0.2")}, "b"},
		{"no workload at its address", Claim{Cluster: "c1", IPs: pod("10.9.9.9")}, ""},
		{"workload of another cluster", Claim{Cluster: "c2", IPs: pod("10.1.0.2")}, ""},
		{"proved identity", Claim{Cluster: "c1", IPs: pod("10.9.9.9"), Namespace: "a", ServiceAccount: "x"}, "a"},
		{"proved identity wins over the address", Claim{Cluster: "c1", IPs: pod("10.1.0.2"), Namespace: "a", ServiceAccount: "web"}, "a"},
		{"proved namespace without services", Claim{Cluster: "c1", IPs: pod("10.1.0.2"), Namespace: "kube-system", ServiceAccount: "x"}, ""},
	} {
		if v := view(c.claim); v.Namespace != c.want || v.Cluster != c.claim.Cluster {
			t.Errorf("%s: view %q, want namespace %q", c.name, v, c.want)
		}
	}
	if got := view(Claim{Cluster: "c1", IPs: pod("10.1.0.1")}).String(); got != "sidecar;cluster=c1;inbound=;namespace=a" {
		t.Errorf("view string %q", got)
	}
	if m.HasNamespace("") || !m.HasNamespace("b") || m.HasNamespace("c") {
		t.Error("HasNamespace")
	}
}
