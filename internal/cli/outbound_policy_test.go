package cli

import (
	"strings"
	"testing"
)

// --outbound-traffic-policy: REGISTRY_ONLY sends what the mesh does not
// know to BlackHoleCluster (routes' catch-all, listeners' default chain,
// and the cluster itself); ALLOW_ANY, the default, to PassthroughCluster;
// anything else is a usage error naming the flag.
func TestTranslateOutboundTrafficPolicy(t *testing.T) {
	base := []string{"translate", "--cluster", "cluster1=" + walkthrough + "/cluster1", "--proxy-network", "network1", "--proxy-cluster", "cluster1", "--type", "all"}
	code, out, errOut := run(t, append(base, "--outbound-traffic-policy", "REGISTRY_ONLY")...)
	if code != 0 || !strings.Contains(out, `"BlackHoleCluster"`) || !strings.Contains(out, "block_all") {
		t.Fatalf("REGISTRY_ONLY: exit %d, stderr %.300q, BlackHoleCluster in output %v", code, errOut, strings.Contains(out, "BlackHoleCluster"))
	}
	code, out, errOut = run(t, base...)
	if code != 0 || strings.Contains(out, "BlackHoleCluster") || !strings.Contains(out, "allow_any") {
		t.Fatalf("default: exit %d, stderr %.300q, BlackHoleCluster in output %v", code, errOut, strings.Contains(out, "BlackHoleCluster"))
	}
	if code, out, errOut := run(t, append(base, "--outbound-traffic-policy", "DENY")...); code != 2 || out != "" || !strings.Contains(errOut, "--outbound-traffic-policy") {
		t.Errorf("DENY: exit %d, stdout %d bytes, stderr %.300q; want a usage error", code, len(out), errOut)
	}
}
