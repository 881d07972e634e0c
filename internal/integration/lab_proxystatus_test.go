//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"os"
	osexec "os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/internal/lab"
	"github.com/horizonmesh/horizon/internal/proxystatus"
)

// labProxies lists the addresses of the pods of both lab clusters that
// run a proxy (an istio-proxy container): the agent's node id is
// role~IP~namespace~serviceaccount, so a proxy is known by its address.
func labProxies(t *testing.T, k labKubectl) []string {
	t.Helper()
	var out []string
	for _, ctx := range []string{"cluster1", "cluster2"} {
		var pods struct {
			Items []struct {
				Metadata struct{ Name, Namespace string }
				Spec     struct {
					Containers []struct{ Name string }
				}
				Status struct{ Phase, PodIP string }
			}
		}
		if err := json.Unmarshal([]byte(k.ok(t, "--context", ctx, "get", "pods", "-A", "-o", "json")), &pods); err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if p.Status.Phase == "Running" && slices.ContainsFunc(p.Spec.Containers, func(c struct{ Name string }) bool { return c.Name == "istio-proxy" }) {
				out = append(out, p.Status.PodIP)
			}
		}
	}
	slices.Sort(out)
	return out
}

// proxyStatusOnLab runs `horizon proxy-status --context cluster1` on the
// lab the demo left: through the API server it port-forwards to each
// discovery replica's TLS port and authenticates with a token of
// istio-system's default ServiceAccount; every proxy of both clusters
// (the primary-remote lab's proxies all use cluster1's discovery) is
// listed once, SYNCED for every type it asks for. With Istio's istioctl
// at hand, its proxy-status (over a port-forward to discovery's TLS port,
// with its own token) lists them too.
func proxyStatusOnLab(t *testing.T, k labKubectl, state, horizon string) {
	t.Helper()
	want := labProxies(t, k)
	if len(want) < 3 {
		t.Fatalf("the lab's proxies: %v", want)
	}
	var rows []proxystatus.Row
	var out, errOut string
	defer func() {
		if t.Failed() {
			t.Logf("the lab's proxies: %v\nlast proxy-status -o json: %s%s", want, out, errOut)
		}
	}()
	waitFor(t, 2*time.Minute, "horizon proxy-status to list every proxy of the lab SYNCED", func() bool {
		c := osexec.Command(horizon, "proxy-status", "--kubeconfig", lab.KubeconfigPath(state), "--context", "cluster1", "-o", "json")
		var eb strings.Builder
		c.Stderr = &eb
		b, err := c.Output()
		out, errOut = string(b), eb.String()
		if err != nil {
			return false
		}
		rows = nil
		if err := json.Unmarshal(b, &rows); err != nil {
			t.Fatalf("proxy-status -o json: %v\n%s", err, out)
		}
		var got []string
		for _, r := range rows {
			for _, ts := range r.Types {
				if ts.Status != proxystatus.Synced {
					return false
				}
			}
			if len(r.Types) < 3 {
				return false
			}
			got = append(got, ipOfNodeID(r.Proxy))
		}
		slices.Sort(got)
		return slices.Equal(got, want)
	})
	table, err := osexec.Command(horizon, "proxy-status", "--kubeconfig", lab.KubeconfigPath(state), "--context", "cluster1").CombinedOutput()
	t.Logf("$ horizon proxy-status --context cluster1\n%s", table)
	if err != nil {
		t.Errorf("proxy-status (table): %v", err)
	}
	// Every proxy shows its Envoy build; a sidecar the locality the mesh
	// verified for it (its Pod's lab node's labels), not a claim: Horizon's
	// agent states none.
	wantLocality := map[string]string{"cluster1": "region1/zone1", "cluster2": "region2/zone2"}
	for _, r := range rows {
		if r.Cluster == "" || r.Network == "" || r.Replica == "" || (r.Role != "sidecar" && r.Role != "router") {
			t.Errorf("row %+v", r)
		}
		if !strings.HasPrefix(r.Version, "envoy/1.40.") {
			t.Errorf("%s: version %q, want Envoy's build", r.Proxy, r.Version)
		}
		if r.Role == "sidecar" && r.Locality != wantLocality[r.Cluster] {
			t.Errorf("%s: locality %q, want %q", r.Proxy, r.Locality, wantLocality[r.Cluster])
		}
	}

	istioctl := os.Getenv("HORIZON_ISTIOCTL")
	if istioctl == "" {
		t.Log("HORIZON_ISTIOCTL is not set: istioctl proxy-status not checked on the lab")
		return
	}
	// istioctl's own way through the cluster looks for pods labelled
	// istio.io/rev, which Horizon's do not carry; so: a port-forward to
	// discovery's TLS port and --xds-address, where istioctl brings its
	// token of istio-system's default ServiceAccount (TokenRequest,
	// audience istio-ca) and discovery lets that namespace see every proxy.
	_, port := k.portForward(t, "cluster1", "istio-system", "deploy/horizon", 15012)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := osexec.CommandContext(ctx, istioctl, "proxy-status", "--kubeconfig", lab.KubeconfigPath(state), "--context", "cluster1",
		"--xds-address", "127.0.0.1:"+port, "-v", "1").CombinedOutput()
	t.Logf("$ istioctl proxy-status --context cluster1 --xds-address 127.0.0.1:%s -v 1   # kubectl port-forward deploy/horizon :15012\n%s", port, b)
	if err != nil {
		t.Fatalf("istioctl proxy-status: %v", err)
	}
	replicas := map[string]bool{}
	for _, r := range rows {
		replicas[r.Replica] = true
	}
	if len(replicas) != 1 {
		return // the port-forward reached one replica of several: it lists only its own proxies
	}
	for _, ip := range want {
		if !strings.Contains(string(b), "~"+ip+"~") { // its node id
			t.Errorf("istioctl proxy-status lacks the proxy at %s", ip)
		}
	}
	if strings.Count(string(b), "SYNCED") < 3*len(want) {
		t.Errorf("istioctl proxy-status: want every proxy SYNCED for CDS, LDS and EDS")
	}
}

// ipOfNodeID is the address in a node id (role~ip~...).
func ipOfNodeID(id string) string {
	parts := strings.Split(id, "~")
	if len(parts) != 4 {
		return id
	}
	return parts[1]
}
