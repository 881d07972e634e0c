//go:build integration

package integration

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/internal/lab"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
	"github.com/horizonmesh/horizon/internal/testing/netlab"
)

// `horizon lab up` then `horizon lab demo`: the walkthrough Horizon's way
// (shared cacerts, install on cluster1 with discovery as a Pod, --remote
// on cluster2, cluster2's remote Secret, the samples injected) ends with
// helloworld answering from v1 at its pod address and from v2 through
// cluster2's gateway; `lab down` leaves no process behind.
func TestLabDemo(t *testing.T) {
	bin := kubeharness.Binaries(t)
	if err := lab.CheckBinaries(bin); err != nil {
		if kubeharness.Required() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	netlab.Require(t)
	envoy := envoyBinary(t)
	bin2 := buildBinaries(t)
	state := filepath.Join(t.TempDir(), "lab")
	t.Cleanup(func() {
		if code, out, errOut := horizonLab(t, state, "down"); code != 0 {
			t.Errorf("lab down: exit %d\n%s%s", code, out, errOut)
		}
		if left := labProcesses(state, nil); len(left) > 0 {
			t.Errorf("left after lab down: %v", left)
		}
	})

	begin := time.Now()
	code, out, errOut := horizonLab(t, state, "up", "--horizon", filepath.Join(bin2, "horizon"),
		"--helloworld", filepath.Join(bin2, "helloworld"), "--envoy", envoy)
	if code != 0 {
		t.Fatalf("lab up: exit %d\n%s%s", code, out, errOut)
	}
	up := time.Since(begin)

	code, out, errOut = horizonLab(t, state, "demo", "--samples", "../../samples")
	t.Logf("lab up in %s, demo in %s:\n%s%s", up.Round(100*time.Millisecond), (time.Since(begin) - up).Round(100*time.Millisecond), out, errOut)
	if code != 0 {
		t.Fatalf("lab demo: exit %d", code)
	}
	v1, v2 := 0, 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[3], "upstream_host=") {
			continue
		}
		host := strings.TrimPrefix(f[3], "upstream_host=")
		switch f[1] {
		case "v1":
			v1++
			if !strings.HasPrefix(host, "10.51.0.") || !strings.HasSuffix(host, ":5000") {
				t.Errorf("v1 through %s, want its pod on network1", host)
			}
		case "v2":
			v2++
			if !strings.HasPrefix(host, "203.0.113.2") || !strings.HasSuffix(host, ":15443") {
				t.Errorf("v2 through %s, want cluster2's gateway", host)
			}
		default:
			t.Errorf("answer %q", line)
		}
	}
	if v1 == 0 || v2 == 0 || v1+v2 != 20 {
		t.Errorf("answers with their upstreams: v1 %d, v2 %d", v1, v2)
	}
	for _, want := range []string{"$ horizon install --context cluster1", "$ horizon install --context cluster2 --remote",
		"$ horizon create-remote-secret --context cluster2 --name cluster2", "label namespace sample istio-injection=enabled", "demo: OK in "} {
		if !strings.Contains(out, want) {
			t.Errorf("the demo's output lacks %q", want)
		}
	}
}
