//go:build integration

package integration

import (
	"context"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/horizonmesh/horizon/internal/agent"
	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/offline"
	"github.com/horizonmesh/horizon/internal/source/manifest"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// envoyBinary is the real Envoy (scripts/envoy.sh); without it the test is
// skipped locally and fails under CI=true or HORIZON_REQUIRE_E2E=1 (what
// `make integration` sets).
func envoyBinary(t *testing.T) string {
	t.Helper()
	p := os.Getenv("HORIZON_ENVOY")
	if _, err := os.Stat(p); p == "" || err != nil {
		msg := "HORIZON_ENVOY is not set to the Envoy binary: run `export HORIZON_ENVOY=$(scripts/envoy.sh | tail -1)` (or `make integration`)"
		if kubeharness.Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// TestEnvoyAcceptsGeneratedConfig puts everything a sidecar receives — the
// agent's bootstrap, and the listeners, routes' users and clusters the
// control plane generates for the walkthrough — into one static config and
// has the real Envoy validate it (--mode validate builds every object as
// Envoy would at run time).
func TestEnvoyAcceptsGeneratedConfig(t *testing.T) {
	envoy := envoyBinary(t)
	walkthrough := walkthroughMesh(t)
	protocols, strict := goldenMesh(t, "protocols", "cluster1", "cluster2"), goldenMesh(t, "protocols-strict", "cluster1", "cluster2")
	names, headless := goldenMesh(t, "namespace-local-names", "cluster1"), goldenMesh(t, "headless", "cluster1", "cluster2")
	inbound := func(ports ...translate.WorkloadPort) translate.Ports { return translate.PortsOf(ports) }
	http := func(ports ...uint32) []translate.WorkloadPort {
		var out []translate.WorkloadPort
		for _, p := range ports {
			out = append(out, translate.WorkloadPort{Port: p, Mode: model.DefaultMTLSMode})
		}
		return out
	}
	// The golden protocols cases' sidecar (the workload at 10.1.0.5): its
	// ports' protocols and mTLS modes as discovery resolves them.
	goldenSidecar := func(m *model.Mesh) translate.View {
		p, _ := translate.ProxyOf(m, translate.Claim{Cluster: "cluster1", IPs: []netip.Addr{netip.MustParseAddr("10.1.0.5")}})
		if len(p.Inbound) != 6 {
			t.Fatalf("the golden protocols workload serves %v, want 6 ports", p.Inbound)
		}
		return translate.View{Cluster: "cluster1", Namespace: p.Namespace, Inbound: translate.PortsOf(p.Inbound)}
	}
	tcpStrict := translate.WorkloadPort{Port: 9080, TCP: true, Mode: model.MTLSStrict}
	for _, c := range []struct {
		m    *model.Mesh
		view translate.View
		opts translate.Options
		// unusedRoutes are route configurations no listener asks for:
		// those of a port of unknown protocol only a headless service has
		// (its pods' chains route inline), which Envoy never asks RDS for.
		unusedRoutes int
	}{
		{walkthrough, translate.View{Cluster: "cluster1", Inbound: inbound(http(5000)...)}, translate.Options{}, 0},
		{walkthrough, translate.View{Cluster: "cluster1"}, translate.Options{}, 0}, // a client-only workload, like sleep
		// A TCP service (the gateway) too, STRICT beside PERMISSIVE.
		{walkthrough, translate.View{Cluster: "remote_kubecfg", Inbound: inbound(append(http(5000), tcpStrict)...)}, translate.Options{}, 0},
		// The golden cases with a port of every protocol family:
		// PERMISSIVE with a DISABLE HTTP port, STRICT with a DISABLE TCP
		// port; from the cluster that has the service and from the one
		// that does not.
		{protocols, goldenSidecar(protocols), translate.Options{}, 0},
		{strict, goldenSidecar(strict), translate.Options{}, 0},
		{protocols, translate.View{Cluster: "cluster2"}, translate.Options{}, 0},
		// REGISTRY_ONLY: unknown destinations to BlackHoleCluster.
		{protocols, translate.View{Cluster: "cluster1"}, translate.Options{OutboundTrafficPolicy: translate.RegistryOnly}, 0},
		// Bare names of a namespace (two namespaces have a "web"), IPv6
		// ClusterIPs in brackets.
		{names, translate.View{Cluster: "cluster1", Namespace: "a", Inbound: inbound(http(8080)...)}, translate.Options{}, 0},
		{names, translate.View{Cluster: "cluster1", Namespace: "b", Inbound: inbound(http(8080)...)}, translate.Options{}, 0},
		// A headless service's pods, one with a sidecar and one without,
		// on TCP, HTTP and unknown-protocol ports.
		{headless, translate.View{Cluster: "cluster1", Namespace: "sample", Inbound: inbound(http(5000)...)}, translate.Options{}, 1},
	} {
		view := c.view
		b, err := agent.Bootstrap(agent.BootstrapConfig{NodeID: "sidecar~10.10.0.5~sleep.sample~sample.svc.cluster.local",
			Cluster: string(view.Cluster), Network: "network1", Namespace: "sample", ServiceAccount: "sleep",
			Labels: map[string]string{"app": "sleep"}, IPs: []netip.Addr{netip.MustParseAddr("10.10.0.5")},
			Discovery: "127.0.0.1:15012", DiscoverySNI: "localhost", SDSSocket: filepath.Join(t.TempDir(), "sds.sock"), AdminPort: 15000})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.ValidateAll(); err != nil {
			t.Fatalf("bootstrap: %v", err)
		}
		// What translate.Build gives the view, as discovery serves it.
		in := translate.Input{Mesh: c.m, Options: c.opts}
		for _, r := range sortedByName(translate.Build(in, resource.ListenerType, view)) {
			b.StaticResources.Listeners = append(b.StaticResources.Listeners, r.(*listenerv3.Listener))
		}
		for _, r := range sortedByName(translate.Build(in, resource.ClusterType, view)) {
			b.StaticResources.Clusters = append(b.StaticResources.Clusters, r.(*clusterv3.Cluster))
		}
		routes := map[string]*routev3.RouteConfiguration{}
		for name, r := range translate.Build(in, resource.RouteType, view) {
			routes[name] = r.(*routev3.RouteConfiguration)
		}
		// The routes each listener asks RDS for go inline, so that Envoy
		// builds them too (retry predicates and all).
		if n := inlineRoutes(t, b.StaticResources.Listeners, routes); n != len(routes)-c.unusedRoutes {
			t.Fatalf("view %s: %d of %d route configurations used by a listener", view, n, len(routes))
		}
		validate(t, envoy, b)
	}
}

// sortedByName returns a view's resources in name order.
func sortedByName(res map[string]types.Resource) []types.Resource {
	out := make([]types.Resource, 0, len(res))
	for _, name := range slices.Sorted(maps.Keys(res)) {
		out = append(out, res[name])
	}
	return out
}

// inlineRoutes replaces each HTTP connection manager's RDS reference by the
// route configuration of that name; it returns how many were used.
func inlineRoutes(t *testing.T, listeners []*listenerv3.Listener, routes map[string]*routev3.RouteConfiguration) int {
	t.Helper()
	used := map[string]bool{}
	for _, l := range listeners {
		for _, fc := range l.FilterChains {
			for _, f := range fc.Filters {
				hcm := &hcmv3.HttpConnectionManager{}
				if f.GetTypedConfig() == nil || f.GetTypedConfig().UnmarshalTo(hcm) != nil || hcm.GetRds() == nil {
					continue
				}
				name := hcm.GetRds().RouteConfigName
				r, ok := routes[name]
				if !ok {
					t.Fatalf("listener %s asks RDS for %q, which translate.RDS does not build", l.Name, name)
				}
				used[name] = true
				hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: r}
				a, err := anypb.New(hcm)
				if err != nil {
					t.Fatal(err)
				}
				f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
			}
		}
	}
	return len(used)
}

// TestEnvoyAcceptsGatewayConfig validates a network gateway's
// AUTO_PASSTHROUGH listeners and SNI clusters with the real Envoy.
func TestEnvoyAcceptsGatewayConfig(t *testing.T) {
	envoy := envoyBinary(t)
	m := walkthroughMesh(t)
	v := translate.GatewayView{Network: "network2", Gateways: []*model.IstioGateway{{Name: "helloworld-gateway", Namespace: "sample",
		Selector: map[string]string{"istio": "ingressgateway"},
		Servers:  []model.GatewayServer{{Port: 15443, Protocol: "TLS", TLSMode: model.TLSModeAutoPassthrough, Hosts: []string{"*"}}}}}}
	b, err := agent.Bootstrap(agent.BootstrapConfig{NodeID: "router~203.0.113.20~gw.istio-system", Cluster: "remote_kubecfg",
		Network: "network2", Namespace: "istio-system", ServiceAccount: "istio-ingressgateway",
		Discovery: "127.0.0.1:15012", DiscoverySNI: "localhost", SDSSocket: filepath.Join(t.TempDir(), "sds.sock"), AdminPort: 15000})
	if err != nil {
		t.Fatal(err)
	}
	b.StaticResources.Listeners = translate.GatewayLDS(m, v)
	if len(b.StaticResources.Listeners) == 0 {
		t.Fatal("no gateway listener")
	}
	b.StaticResources.Clusters = append(b.StaticResources.Clusters, translate.GatewayCDS(m, v)...)
	validate(t, envoy, b)
}

func validate(t *testing.T, envoy string, b *bootstrapv3.Bootstrap) {
	t.Helper()
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("ValidateAll: %v", err)
	}
	js, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "envoy.json")
	if err := os.WriteFile(path, js, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(envoy, "--mode", "validate", "-c", path, "--disable-hot-restart", "-l", "warning").CombinedOutput()
	if err != nil {
		t.Fatalf("Envoy rejected the config: %v\n%s", err, out)
	}
}

// goldenMesh is the mesh of a translate golden case, of the named clusters
// (with the case's PeerAuthentications, if it has any).
func goldenMesh(t *testing.T, name string, clusters ...string) *model.Mesh {
	t.Helper()
	dir := "../xds/translate/testdata/golden/" + name + "/"
	var srcs []manifest.ClusterSource
	for _, c := range clusters {
		srcs = append(srcs, manifest.ClusterSource{ID: model.ClusterID(c), Path: dir + "clusters/" + c})
	}
	opts := offline.Options{Clusters: srcs}
	if _, err := os.Stat(dir + "peerauthentications.yaml"); err == nil {
		opts.PeerAuthenticationsFile = dir + "peerauthentications.yaml"
	}
	m, diags := offline.Load(context.Background(), opts)
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// walkthroughMesh is the mesh of examples/walkthrough.
func walkthroughMesh(t *testing.T) *model.Mesh {
	t.Helper()
	m, diags := offline.Load(context.Background(), offline.Options{Clusters: []manifest.ClusterSource{
		{ID: "cluster1", Path: "../../examples/walkthrough/cluster1"},
		{ID: "remote_kubecfg", Path: "../../examples/walkthrough/remote"},
	}, MeshNetworksFile: "../../examples/walkthrough/meshnetworks.yaml"})
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestEnvoyAcceptsLocalityFailover validates with the real Envoy what the
// locality-failover golden case gives a located sidecar: clusters with
// outlier detection, circuit breakers and locality-weighted load balancing,
// routes retrying on previous priorities, and — each cluster made static
// with it inline — the view's load assignments in priorities.
func TestEnvoyAcceptsLocalityFailover(t *testing.T) {
	envoy := envoyBinary(t)
	dir := "../xds/translate/testdata/golden/locality-failover"
	opts := offline.Options{MeshNetworksFile: dir + "/meshnetworks.yaml", DestinationRulesFile: dir + "/destinationrules.yaml"}
	for _, id := range []model.ClusterID{"cluster1a", "cluster1b", "cluster2a", "cluster2b", "cluster3", "cluster4"} {
		opts.Clusters = append(opts.Clusters, manifest.ClusterSource{ID: id, Path: dir + "/clusters/" + string(id)})
	}
	m, diags := offline.Load(context.Background(), opts)
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	for _, ev := range []translate.EDSView{
		{Network: "network1", Located: true, Cluster: "cluster1a", Locality: model.Locality{Region: "region1", Zone: "zone1"}},
		{Network: "network2", Located: true, Cluster: "cluster2b", Locality: model.Locality{Region: "region2", Zone: "zone4"}},
		{Network: "network3"},
	} {
		cluster := ev.Cluster
		if cluster == "" {
			cluster = "cluster3" // a workload the mesh does not know
		}
		view := translate.SidecarView{Cluster: cluster, Inbound: []translate.WorkloadPort{{Port: 8080, Mode: model.DefaultMTLSMode}}}
		b, err := agent.Bootstrap(agent.BootstrapConfig{NodeID: "sidecar~10.0.0.1~app.ns~ns.svc.cluster.local",
			Cluster: string(cluster), Network: ev.Network, Namespace: "ns", ServiceAccount: "app",
			IPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}, Discovery: "127.0.0.1:15012", DiscoverySNI: "localhost",
			SDSSocket: filepath.Join(t.TempDir(), "sds.sock"), AdminPort: 15000})
		if err != nil {
			t.Fatal(err)
		}
		b.StaticResources.Listeners = translate.LDS(m, view)
		clas := map[string]*endpointv3.ClusterLoadAssignment{}
		for _, cla := range translate.EDS(m, ev) {
			clas[cla.ClusterName] = cla
		}
		for _, c := range translate.CDS(m, translate.Options{}) {
			if cla, ok := clas[c.Name]; ok {
				c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
				c.EdsClusterConfig, c.LoadAssignment = nil, cla
			}
			b.StaticResources.Clusters = append(b.StaticResources.Clusters, c)
		}
		b.StaticResources.Clusters = append(b.StaticResources.Clusters, translate.InboundClusters(view)...)
		routes := map[string]*routev3.RouteConfiguration{}
		for _, r := range translate.RDS(m, view) {
			routes[r.Name] = r
		}
		inlineRoutes(t, b.StaticResources.Listeners, routes)
		validate(t, envoy, b)
	}
}
