//go:build integration

package integration

import (
	"context"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/internal/testing/cptest"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
	"github.com/horizonmesh/horizon/internal/xds/server"
)

// Istio's own istioctl, unmodified, reads Horizon's client status:
// `istioctl proxy-status --xds-address --plaintext` asks ADS for Istio's
// istio.io/debug/syncz, which discovery answers with CSDS ClientConfigs
// as istiod does. A sidecar that acknowledged its clusters and endpoints
// shows SYNCED for both (-v 1: a column per type), named with this
// replica's ID; istioctl's own stream is not listed.
func TestIstioctlProxyStatus(t *testing.T) {
	istioctl := istioctlBinary(t)
	addr := cptest.ServeWithSidecar(t, filepath.Join("..", "..", "examples", "walkthrough", "cluster1"),
		&server.StatusOptions{Namespace: "istio-system", ID: "horizon-test-0", Version: "test"})
	id := cptest.SidecarID

	// istioctl builds a Kubernetes client before it looks at
	// --xds-address; with --plaintext and a --revision it never uses it
	// (without one it looks up the default revision, retrying forever).
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
users: [{name: none, user: {}}]
current-context: none
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out string
	testkit.WaitFor(t, "istioctl proxy-status to show the sidecar SYNCED for CDS and EDS", func() bool {
		cctx, ccancel := context.WithTimeout(t.Context(), time.Minute)
		defer ccancel()
		cmd := osexec.CommandContext(cctx, istioctl, "proxy-status", "--kubeconfig", kubeconfig, "--xds-address", addr, "--plaintext", "-v", "1", "--revision", "default")
		b, err := cmd.CombinedOutput()
		out = string(b)
		if err != nil {
			t.Fatalf("istioctl proxy-status: %v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 || !strings.Contains(lines[1], id) {
			return false
		}
		header, row := strings.Fields(lines[0]), splitColumns(lines[0], lines[1])
		status := map[string]string{}
		for i, h := range header {
			if i < len(row) {
				status[h] = row[i]
			}
		}
		return strings.HasPrefix(status["CDS"], "SYNCED") && strings.HasPrefix(status["EDS"], "SYNCED") &&
			status["ISTIOD"] == "horizon-test-0" && status["CLUSTER"] == "cluster1"
	})
	t.Logf("$ istioctl proxy-status --xds-address %s --plaintext -v 1\n%s", addr, out)
}

// splitColumns cuts a tabwriter row at its header's column starts (cells
// such as "SYNCED (5s)" hold spaces).
func splitColumns(header, row string) []string {
	var starts []int
	for i := range header {
		if header[i] != ' ' && (i == 0 || header[i-1] == ' ') {
			starts = append(starts, i)
		}
	}
	var out []string
	for i, s := range starts {
		if s >= len(row) {
			break
		}
		end := len(row)
		if i+1 < len(starts) && starts[i+1] < len(row) {
			end = starts[i+1]
		}
		out = append(out, strings.TrimSpace(row[s:end]))
	}
	return out
}
