package horizonagent

import (
	"bytes"
	"strings"
	"testing"

	"github.com/horizonmesh/horizon/internal/agent"
	"github.com/horizonmesh/horizon/internal/inject"
)

// The injected readiness probe asks where the agent answers by default.
func TestInjectedProbeReachesTheAgent(t *testing.T) {
	if inject.StatusPort != agent.DefaultStatusPort || inject.ReadyPath != agent.ReadyPath {
		t.Errorf("injector probes :%d%s, the agent answers on :%d%s", inject.StatusPort, inject.ReadyPath, agent.DefaultStatusPort, agent.ReadyPath)
	}
}

func TestStatusPortFlagIsValidated(t *testing.T) {
	for _, tc := range []struct{ args, err string }{
		{"--status-port 70000", "--status-port 70000 out of range or the admin port"},
		{"--status-port 15000", "--status-port 15000 out of range or the admin port"},
	} {
		var out, errb bytes.Buffer
		root := NewRootCommand(&out, &errb)
		root.SetArgs(append([]string{"agent", "--namespace", "sample", "--discovery-address", "horizon:15012", "--root-cert", "/nonexistent"},
			strings.Fields(tc.args)...))
		if err := root.Execute(); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want %q", tc.args, err, tc.err)
		}
	}
}
