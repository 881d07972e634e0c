package cli

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/horizonmesh/horizon/internal/cmd/horizondiscovery"
	"github.com/horizonmesh/horizon/internal/install"
)

// --stale-endpoint-ttl (or the values file's staleEndpointTTL) reaches
// discovery's command line, and discovery's own flags take it; a value
// discovery would refuse is refused by manifest generate, naming the
// setting.
func TestStaleEndpointTTLReachesDiscovery(t *testing.T) {
	code, out, errOut := run(t, "manifest", "generate", "--stale-endpoint-ttl", "90s")
	if code != 0 || !strings.Contains(out, "- --stale-endpoint-ttl\n        - 1m30s\n") {
		t.Fatalf("manifest generate --stale-endpoint-ttl 90s: exit %d, %s\n%.3000s", code, errOut, out)
	}
	if code, _, errOut := run(t, "manifest", "generate", "--stale-endpoint-ttl", "10ms"); code != 2 || !strings.Contains(errOut, "staleEndpointTTL") {
		t.Errorf("--stale-endpoint-ttl 10ms: exit %d, %q; want exit 2 naming staleEndpointTTL", code, errOut)
	}

	s := install.Defaults()
	s.StaleEndpointTTL.Duration = 90e9
	objs, err := install.Render(s)
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, o := range objs {
		if d, ok := o.(*appsv1.Deployment); ok && d.Name == install.DiscoveryName {
			args = d.Spec.Template.Spec.Containers[0].Args
		}
	}
	if len(args) == 0 || args[0] != "discovery" {
		t.Fatalf("discovery's args: %v", args)
	}
	cmd, _, err := horizondiscovery.NewRootCommand(nil, nil).Find(args[:1])
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.ParseFlags(args[1:]); err != nil {
		t.Fatalf("discovery refuses its rendered args %v: %v", args, err)
	}
	if got := cmd.Flags().Lookup("stale-endpoint-ttl").Value.String(); got != "1m30s" {
		t.Errorf("discovery's --stale-endpoint-ttl = %s, want 1m30s", got)
	}
}
