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
	"google.golang.org/protobuf/encoding/protojson"

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
	m := walkthroughMesh(t)
	for _, view := range []translate.SidecarView{
		{Cluster: "cluster1", InboundPorts: []uint32{5000}},
		{Cluster: "cluster1"},                                           // a client-only workload, like sleep
		{Cluster: "remote_kubecfg", InboundPorts: []uint32{5000, 9080}}, // a TCP service (the gateway) too
	} {
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
		b.StaticResources.Clusters = append(b.StaticResources.Clusters, translate.CDS(m, translate.Options{})...)
		b.StaticResources.Clusters = append(b.StaticResources.Clusters, translate.InboundClusters(view)...)
		for _, r := range translate.RDS(m, view) {
			if err := r.ValidateAll(); err != nil {
				t.Fatalf("route %s: %v", r.Name, err)
			}
		}
		validate(t, envoy, b)
	}
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
