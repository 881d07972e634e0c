package kubeharness

import (
	"os"
	"strings"
	"testing"
)

// The cache directory the harness looks in by default must be the one
// scripts/k8s-bins.sh builds: both are named after the pinned releases.
func TestVersionsMatchTools(t *testing.T) {
	for _, c := range []struct{ gomod, module, want string }{
		{"../../../tools/k8s/go.mod", "k8s.io/kubernetes", KubernetesVersion},
		{"../../../tools/etcd/go.mod", "go.etcd.io/etcd/server/v3", EtcdVersion},
	} {
		b, err := os.ReadFile(c.gomod)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for line := range strings.Lines(string(b)) {
			f := strings.Fields(line)
			for i := 0; i+1 < len(f); i++ {
				if f[i] == c.module && got == "" {
					got = f[i+1]
				}
			}
		}
		if got != c.want {
			t.Errorf("%s requires %s %q; the harness expects %q", c.gomod, c.module, got, c.want)
		}
	}
}
