//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/internal/agent"
	"github.com/horizonmesh/horizon/internal/bootstrap"
	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/ca/catest"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

func freePort(t *testing.T) int { return testkit.FreePort(t) }

// TestAgentRunsRealEnvoyOverMTLS: `horizon-agent agent` gets a certificate for its
// service account from the CSR service (token checked by the real API
// server), serves it over SDS, and the real Envoy it runs connects to
// discovery's TLS port with it and receives its listeners and clusters.
func TestAgentRunsRealEnvoyOverMTLS(t *testing.T) {
	envoy := envoyBinary(t)
	m := startMesh(t)
	files, err := catest.New("mesh")
	if err != nil {
		t.Fatal(err)
	}
	installCACerts(t, m.c1, files)
	must(t, createSA(m.c1, "sample", "helloworld"))
	secure := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := startDiscoveryWith(t, m.c1, nil, true, func(c *bootstrap.Config) {
		c.SecureAddr, c.SecureSANs = secure, []string{"localhost", "127.0.0.1"}
	})

	dir := t.TempDir()
	tokenFile, rootFile := filepath.Join(dir, "token"), filepath.Join(dir, "root.pem")
	must(t, os.WriteFile(tokenFile, []byte(token(t, m.c1, "sample", "helloworld", "istio-ca")), 0o600))
	must(t, os.WriteFile(rootFile, files[ca.RootCertFile], 0o644))
	admin := freePort(t)
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(actx, agent.Config{
			NodeID: "sidecar~10.1.0.5~helloworld-v1.sample", ClusterID: "cluster1", Network: "network1",
			Namespace: "sample", ServiceAccount: "helloworld", IPs: []netip.Addr{netip.MustParseAddr("10.1.0.5")},
			Labels: map[string]string{"app": "helloworld"}, Discovery: secure, DiscoverySNI: "localhost",
			RootCertFile: rootFile, TokenFile: tokenFile, EnvoyPath: envoy, WorkDir: filepath.Join(dir, "work"),
			AdminPort: uint32(admin), CertTTL: time.Hour, Drain: time.Second, LogLevel: "warning",
		}, testkit.Logger())
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("agent did not stop")
		}
	})

	adminGet := func(path string) string {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", admin, path))
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	waitFor(t, 60*time.Second, "Envoy to receive listeners over ADS", func() bool {
		dump := adminGet("/config_dump")
		return strings.Contains(dump, `"name": "virtualInbound"`) && strings.Contains(dump, "outbound|5000||helloworld.sample.svc.cluster.local")
	})
	var dump struct {
		Configs []map[string]any `json:"configs"`
	}
	if err := json.Unmarshal([]byte(adminGet("/config_dump")), &dump); err != nil {
		t.Fatal(err)
	}
	var dynListeners, dynClusters int
	for _, c := range dump.Configs {
		if l, ok := c["dynamic_listeners"].([]any); ok {
			dynListeners = len(l)
		}
		if cl, ok := c["dynamic_active_clusters"].([]any); ok {
			dynClusters = len(cl)
		}
	}
	if dynListeners != 2 || dynClusters < 3 {
		t.Errorf("dynamic listeners %d (want 2), dynamic clusters %d", dynListeners, dynClusters)
	}
	if certs := adminGet("/certs"); !strings.Contains(certs, "spiffe://cluster.local/ns/sample/sa/helloworld") {
		t.Errorf("Envoy's certificates lack the workload identity:\n%.2000s", certs)
	}
	waitFor(t, 20*time.Second, "EDS endpoints in Envoy", func() bool {
		return strings.Contains(adminGet("/clusters"), "outbound|5000||helloworld.sample.svc.cluster.local::10.1.0.5:5000")
	})
	syncz := d.get(t, "/debug/syncz")
	if !strings.Contains(syncz, `"identity": "spiffe://cluster.local/ns/sample/sa/helloworld"`) || strings.Contains(syncz, "lastNACK") {
		t.Errorf("discovery's view of the proxy (secure, identity, no NACK):\n%s", syncz)
	}
}
