//go:build integration

package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/horizonmesh/horizon/internal/cli"
	"github.com/horizonmesh/horizon/internal/install"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
)

// horizon runs the CLI in-process and returns its exit code and output.
func horizon(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := cli.Run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// managed lists every object labelled as the installer's, by kind.
func managed(t *testing.T, c *kubeharness.Cluster) []string {
	t.Helper()
	dyn, err := dynamic.NewForConfig(c.AdminConfig)
	must(t, err)
	var out []string
	for _, gvr := range []schema.GroupVersionResource{
		{Version: "v1", Resource: "serviceaccounts"}, {Version: "v1", Resource: "services"}, {Version: "v1", Resource: "configmaps"},
		{Group: "apps", Version: "v1", Resource: "deployments"}, {Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
		{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"},
		{Group: "networking.istio.io", Version: "v1", Resource: "gateways"},
	} {
		list, err := dyn.Resource(gvr).List(context.Background(), metav1.ListOptions{LabelSelector: install.ManagedByLabel + "=" + install.ManagedBy})
		if err != nil {
			if strings.Contains(err.Error(), "the server could not find the requested resource") {
				continue // the Gateway CRD is not there yet
			}
			t.Fatalf("list %s: %v", gvr.Resource, err)
		}
		for _, it := range list.Items {
			out = append(out, gvr.Resource+"/"+it.GetName())
		}
	}
	return out
}

func TestInstallIdempotentAndUninstall(t *testing.T) {
	c := kubeharness.Start(t, kubeharness.Options{Name: "install"})
	dir := t.TempDir()
	kc, err := c.Kubeconfig()
	must(t, err)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	must(t, os.WriteFile(kubeconfig, kc, 0o600))
	mn := filepath.Join(dir, "meshnetworks.yaml")
	must(t, os.WriteFile(mn, []byte("networks:\n  network1:\n    endpoints:\n    - fromRegistry: cluster1\n"), 0o644))

	// Bad input fails before anything is applied, naming the field.
	bad := filepath.Join(dir, "values.yaml")
	must(t, os.WriteFile(bad, []byte("clusterID: cluster1\nreplicass: 3\n"), 0o644))
	code, _, stderr := horizon("install", "--kubeconfig", kubeconfig, "-f", bad, "--wait=false")
	if code == 0 || !strings.Contains(stderr, `unknown field "replicass"`) {
		t.Fatalf("bad values: exit %d, %s", code, stderr)
	}
	code, _, stderr = horizon("install", "--kubeconfig", kubeconfig, "--cluster-id", "a b", "--wait=false")
	if code == 0 || !strings.Contains(stderr, "clusterID:") {
		t.Fatalf("bad cluster ID: exit %d, %s", code, stderr)
	}
	if got := managed(t, c); len(got) != 0 {
		t.Fatalf("refused settings applied objects: %v", got)
	}

	args := []string{"install", "--kubeconfig", kubeconfig, "--cluster-id", "cluster1", "--network", "network1",
		"--gateway", "--expose-services", "--mesh-networks", mn, "--wait=false"}
	code, out, stderr := horizon(args...)
	if code != 0 {
		t.Fatalf("install: exit %d\n%s\n%s", code, out, stderr)
	}
	first := managed(t, c)
	if len(first) < 12 {
		t.Fatalf("install created only %v", first)
	}
	code, out, stderr = horizon(args...)
	if code != 0 || !strings.Contains(out, "\n0 created, 0 configured,") {
		t.Fatalf("second install changed something: exit %d\n%s\n%s", code, out, stderr)
	}

	// What manifest generate prints is accepted by the real API server.
	code, yaml, stderr := horizon(append([]string{"manifest", "generate"}, args[3:len(args)-1]...)...)
	if code != 0 {
		t.Fatalf("manifest generate: %s", stderr)
	}
	kubectl := exec.Command(filepath.Join(kubeharness.Binaries(t), "kubectl"), "--kubeconfig", kubeconfig,
		"apply", "--dry-run=server", "--server-side", "--field-manager", install.FieldManager, "-f", "-")
	kubectl.Stdin = strings.NewReader(yaml)
	if b, err := kubectl.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply --dry-run=server: %v\n%s", err, b)
	}

	code, out, stderr = horizon("uninstall", "--kubeconfig", kubeconfig)
	if code != 0 {
		t.Fatalf("uninstall: exit %d\n%s\n%s", code, out, stderr)
	}
	if left := managed(t, c); len(left) != 0 {
		t.Fatalf("uninstall left %v", left)
	}
}

// An API server that cannot be reached fails the install with a clear
// error and a non-zero exit, within the client's timeout.
func TestInstallUnreachableAPIServer(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	must(t, os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: gone, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: gone, context: {cluster: gone, user: u}}]
current-context: gone
`), 0o600))
	start := time.Now()
	code, _, stderr := horizon("install", "--kubeconfig", kubeconfig, "--cluster-id", "cluster1", "--wait=false")
	if code == 0 || !strings.Contains(stderr, "127.0.0.1:1") {
		t.Fatalf("unreachable API server: exit %d, %q", code, stderr)
	}
	if d := time.Since(start); d > 45*time.Second {
		t.Fatalf("took %s", d)
	}
}
