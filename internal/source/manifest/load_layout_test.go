package manifest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/horizonmesh/horizon/internal/source/kube"
)

// TestLoadMountedConfigMap reads a directory laid out as Kubernetes mounts a
// ConfigMap: the files are symlinks into a hidden ..TIMESTAMP directory,
// reached through a ..data symlink. Each object must be read once.
func TestLoadMountedConfigMap(t *testing.T) {
	dir := t.TempDir()
	ts := write(t, dir, "..2026_11_23_10_00_00.123/all.yaml", svcDoc+"---\n"+sliceDoc+"---\n"+podDoc+"---\n"+nodeDoc)
	if err := os.Symlink(filepath.Base(filepath.Dir(ts)), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/all.yaml", filepath.Join(dir, "all.yaml")); err != nil {
		t.Fatal(err)
	}
	write(t, dir, ".git/config.yaml", "not: [yaml")
	s, diags := Load(dir)
	if len(diags) != 0 {
		t.Fatalf("diagnostics: %v", diags)
	}
	if e := endpointOf(t, s); !e.MTLS {
		t.Errorf("endpoint = %+v", e)
	}
}

// TestClusterScopedNamespaceIgnored: a namespace written on a Namespace or
// Node is ignored, as the API server does.
func TestClusterScopedNamespaceIgnored(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: istio-system\n  namespace: oops\n  labels: {topology.istio.io/network: net1}\n")
	s, diags := Load(dir)
	if len(diags) != 0 {
		t.Fatal(diags)
	}
	snap, _ := kube.Convert("c", s, kube.Options{})
	if snap.SystemNamespaceNetwork != "net1" {
		t.Errorf("system namespace network = %q", snap.SystemNamespaceNetwork)
	}
	// Defined again without the namespace: the same object, named alike.
	write(t, dir, "ns2.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: istio-system}\n")
	write(t, dir, "ns3.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: istio-system, namespace: other}\n")
	_, diags = Load(dir)
	if len(diags) != 2 {
		t.Fatalf("want two duplicate errors, got %v", diags)
	}
	for _, d := range diags {
		if d.Object != "Namespace istio-system" {
			t.Errorf("object %q, want %q: %v", d.Object, "Namespace istio-system", d)
		}
	}
}
