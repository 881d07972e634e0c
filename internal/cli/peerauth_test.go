package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --peer-authentications and --default-mtls-mode shape a sidecar's inbound
// listener as discovery does: PERMISSIVE by default (a plaintext chain),
// STRICT by the flag or a mesh-wide PeerAuthentication (none); a bad file
// or mode is an error naming it.
func TestTranslatePeerAuthentication(t *testing.T) {
	base := []string{"translate", "--cluster", "cluster1=" + walkthrough + "/cluster1", "--proxy-network", "network1",
		"--proxy-cluster", "cluster1", "--proxy-ip", "10.10.0.5", "--type", "lds"}
	plaintext := `"inbound|5000||plaintext"`
	code, out, errOut := run(t, base...)
	if code != 0 || !strings.Contains(out, plaintext) {
		t.Fatalf("default: exit %d, stderr %.300q, plaintext chain %v", code, errOut, strings.Contains(out, plaintext))
	}
	code, out, errOut = run(t, append(base, "--default-mtls-mode", "STRICT")...)
	if code != 0 || strings.Contains(out, plaintext) || !strings.Contains(out, `"inbound|5000||"`) {
		t.Fatalf("STRICT: exit %d, stderr %.300q, plaintext chain %v", code, errOut, strings.Contains(out, plaintext))
	}
	dir := t.TempDir()
	mesh := filepath.Join(dir, "pa.yaml")
	if err := os.WriteFile(mesh, []byte("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"+
		"metadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = run(t, append(base, "--peer-authentications", mesh)...)
	if code != 0 || strings.Contains(out, plaintext) {
		t.Fatalf("mesh-wide STRICT policy: exit %d, stderr %.300q, plaintext chain %v", code, errOut, strings.Contains(out, plaintext))
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"+
		"metadata: {name: nosel, namespace: sample}\nspec: {portLevelMtls: {5000: {mode: DISABLE}}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run(t, append(base, "--peer-authentications", bad)...); code == 0 || !strings.Contains(errOut, "sample/nosel") {
		t.Errorf("invalid PeerAuthentication: exit %d, stderr %.300q", code, errOut)
	}
	if code, _, errOut := run(t, append(base, "--default-mtls-mode", "DISABLE")...); code != 2 || !strings.Contains(errOut, "--default-mtls-mode") {
		t.Errorf("--default-mtls-mode DISABLE: exit %d, stderr %.300q; want a usage error", code, errOut)
	}
}
