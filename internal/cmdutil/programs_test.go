package cmdutil_test

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// The programs the images run carry neither the lab nor the CLI: `go list
// -deps` of cmd/horizon-discovery and cmd/horizon-agent holds no lab or
// lab-node package, no virtual-kubelet, no test CA and not internal/cli
// (whose lab command would bring them all back). The agent carries no
// control plane either.
func TestImageProgramsCarryNoLab(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	forbidden := []string{
		"github.com/horizonmesh/horizon/internal/lab",
		"github.com/horizonmesh/horizon/internal/labnode",
		"github.com/horizonmesh/horizon/internal/ca/catest",
		"github.com/horizonmesh/horizon/internal/cli",
		"github.com/virtual-kubelet/virtual-kubelet",
	}
	for prog, extra := range map[string][]string{
		"horizon-discovery": nil,
		"horizon-agent": {"github.com/horizonmesh/horizon/internal/bootstrap", "github.com/horizonmesh/horizon/internal/controlplane",
			"github.com/horizonmesh/horizon/internal/cmd/horizondiscovery"},
	} {
		out, err := exec.Command("go", "list", "-deps", "../../cmd/"+prog).Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("go list -deps cmd/%s: %v\n%s", prog, err, ee.Stderr)
			}
			t.Fatalf("go list -deps cmd/%s: %v", prog, err)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 10 {
			t.Fatalf("go list -deps cmd/%s: %d packages, want its dependencies", prog, len(deps))
		}
		for _, d := range deps {
			for _, f := range append(forbidden, extra...) {
				if d == f || strings.HasPrefix(d, f+"/") {
					t.Errorf("cmd/%s depends on %s", prog, d)
				}
			}
		}
	}
}
