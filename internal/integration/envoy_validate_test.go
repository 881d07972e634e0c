//go:build integration

package integration

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
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
	walkthrough, protocols, strict := walkthroughMesh(t), protocolsMesh(t, "protocols"), protocolsMesh(t, "protocols-strict")
	http := func(ports ...uint32) []translate.WorkloadPort {
		var out []translate.WorkloadPort
		for _, p := range ports {
			out = append(out, translate.WorkloadPort{Port: p, Mode: model.DefaultMTLSMode})
		}
		return out
	}
	// The golden protocols cases' sidecar (the workload at 10.1.0.5): its
	// ports' protocols and mTLS modes as discovery resolves them.
	goldenSidecar := func(m *model.Mesh) translate.SidecarView {
		p, _ := translate.ProxyOf(m, translate.Claim{Cluster: "cluster1", IPs: []netip.Addr{netip.MustParseAddr("10.1.0.5")}})
		if len(p.Inbound) != 6 {
			t.Fatalf("the golden protocols workload serves %v, want 6 ports", p.Inbound)
		}
		return translate.SidecarView{Cluster: "cluster1", Inbound: p.Inbound}
	}
	tcpStrict := translate.WorkloadPort{Port: 9080, TCP: true, Mode: model.MTLSStrict}
	for _, c := range []struct {
		m    *model.Mesh
		view translate.SidecarView
		opts translate.Options
	}{
		{walkthrough, translate.SidecarView{Cluster: "cluster1", Inbound: http(5000)}, translate.Options{}},
		{walkthrough, translate.SidecarView{Cluster: "cluster1"}, translate.Options{}}, // a client-only workload, like sleep
		// A TCP service (the gateway) too, STRICT beside PERMISSIVE.
		{walkthrough, translate.SidecarView{Cluster: "remote_kubecfg", Inbound: append(http(5000), tcpStrict)}, translate.Options{}},
		// The golden cases with a port of every protocol family:
		// PERMISSIVE with a DISABLE HTTP port, STRICT with a DISABLE TCP
		// port; from the cluster that has the service and from the one
		// that does not.
		{protocols, goldenSidecar(protocols), translate.Options{}},
		{strict, goldenSidecar(strict), translate.Options{}},
		{protocols, translate.SidecarView{Cluster: "cluster2"}, translate.Options{}},
		// REGISTRY_ONLY: unknown destinations to BlackHoleCluster.
		{protocols, translate.SidecarView{Cluster: "cluster1", RegistryOnly: true}, translate.Options{OutboundTrafficPolicy: translate.RegistryOnly}},
	} {
		m, view := c.m, c.view
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
		b.StaticResources.Listeners = translate.LDS(m, view)
		b.StaticResources.Clusters = append(b.StaticResources.Clusters, translate.CDS(m, c.opts)...)
		b.StaticResources.Clusters = append(b.StaticResources.Clusters, translate.InboundClusters(view)...)
		routes := map[string]*routev3.RouteConfiguration{}
		for _, r := range translate.RDS(m, view) {
			routes[r.Name] = r
		}
		// The routes each listener asks RDS for go inline, so that Envoy
		// builds them too (retry predicates and all).
		if n := inlineRoutes(t, b.StaticResources.Listeners, routes); n != len(routes) {
			t.Fatalf("view %+v: %d of %d route configurations used by a listener", view, n, len(routes))
		}
		validate(t, envoy, b)
	}
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

// protocolsMesh is the translate golden case with one service having a
// port of each protocol (http, grpc, h2c, tcp, tls, unnamed) and a
// remote-only TCP service.
func protocolsMesh(t *testing.T, golden string) *model.Mesh {
	t.Helper()
	dir := "../xds/translate/testdata/golden/" + golden
	m, diags := offline.Load(context.Background(), offline.Options{Clusters: []manifest.ClusterSource{
		{ID: "cluster1", Path: dir + "/clusters/cluster1"}, {ID: "cluster2", Path: dir + "/clusters/cluster2"},
	}, PeerAuthenticationsFile: dir + "/peerauthentications.yaml"})
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
