package bootstrap

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/internal/testing/adsclient"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

func metric(t *testing.T, env *discoveryEnv, name string) float64 {
	t.Helper()
	_, body := env.get(t, "/metrics")
	m := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

func subscribe(t *testing.T, c *adsclient.Client) {
	t.Helper()
	if err := c.Request(resource.ClusterType, nil, "", "", ""); err != nil {
		t.Fatal(err)
	}
	if err := c.Request(resource.EndpointType, []string{hwCluster}, "", "", ""); err != nil {
		t.Fatal(err)
	}
}

func rewrite(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s lacks %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestEndpointChangeDoesNotRebuildClusters(t *testing.T) {
	env := startDiscovery(t)
	c := dial(t, env, "sleep.sample", "")
	subscribe(t, c)
	waitEDS(t, c, "initial", func(w map[string]uint32) bool { return len(w) == 2 })
	if _, err := c.Wait(resource.ClusterType, 5*time.Second, func(*discovery.DiscoveryResponse) bool { return true }); err != nil {
		t.Fatal(err)
	}
	cdsBefore := c.Count(resource.ClusterType)
	cdsBuilds := metric(t, env, `horizon_xds_builds_total{type="cds"}`)
	edsBuilds := metric(t, env, `horizon_xds_builds_total{type="eds"}`)

	// A second v2 pod in the remote cluster: only its EndpointSlice changes.
	rewrite(t, filepath.Join(env.dir, "remote", "helloworld-v2.yaml"), `- addresses: ["10.20.0.7"]`,
		"- addresses: [\"10.20.0.8\"]\n  conditions: {ready: true}\n- addresses: [\"10.20.0.7\"]")
	// The new pod has no Pod object, so it is not mTLS-capable: it is not
	// reachable across networks, and the local view keeps its content.
	remote := dial(t, env, "sleep-n2.sample", "network2")
	subscribe(t, remote)
	waitEDS(t, remote, "network2 sees the new pod directly", func(w map[string]uint32) bool { return w["10.20.0.8:5000"] == 1 && len(w) == 3 })
	waitEDS(t, c, "local view unchanged in content", func(w map[string]uint32) bool { return len(w) == 2 && w["203.0.113.20:443"] == 1 })

	if got := c.Count(resource.ClusterType); got != cdsBefore {
		t.Errorf("CDS was re-sent (%d → %d responses) for an endpoint-only change", cdsBefore, got)
	}
	if got := metric(t, env, `horizon_xds_builds_total{type="cds"}`); got != cdsBuilds {
		t.Errorf("CDS builds %v → %v: clusters were rebuilt for an endpoint-only change", cdsBuilds, got)
	}
	if got := metric(t, env, `horizon_xds_builds_total{type="eds"}`); got <= edsBuilds {
		t.Errorf("EDS builds did not move (%v)", got)
	}
}

func TestMeshNetworksEditAppliesLiveAndInvalidIsRejected(t *testing.T) {
	env := startDiscovery(t)
	c := dial(t, env, "sleep.sample", "")
	subscribe(t, c)
	waitEDS(t, c, "initial", func(w map[string]uint32) bool { return w["203.0.113.20:443"] == 1 })
	nets := filepath.Join(env.dir, "meshnetworks.yaml")

	// Like the walkthrough's step 4, a gateway address typed into
	// meshNetworks: the remote cluster moves to network3, reached through it.
	if err := os.WriteFile(nets, []byte("meshNetworks:\n  network3:\n    endpoints:\n    - fromRegistry: remote_kubecfg\n    gateways:\n    - address: 198.51.100.7\n      port: 443\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitEDS(t, c, "meshNetworks gateway applied", func(w map[string]uint32) bool {
		return len(w) == 2 && w["198.51.100.7:443"] == 1 && w["10.10.0.5:5000"] == 1
	})

	// An invalid edit is rejected; the previous gateway keeps serving.
	n := len(c.Responses())
	rewrite(t, nets, "port: 443", "port: 99999")
	testkit.WaitFor(t, "the invalid meshNetworks reported in /debug/clusters", func() bool {
		_, body := env.get(t, "/debug/clusters")
		return strings.Contains(body, "port out of range")
	})
	if got := metric(t, env, "horizon_meshnetworks_rejected_total"); got != 1 {
		t.Errorf("rejected metric = %v", got)
	}
	if _, body := env.get(t, "/debug/eds?network="); !strings.Contains(body, "198.51.100.7") {
		t.Errorf("the last good gateway is gone:\n%s", body)
	}
	// Nothing was pushed for it: after a marker push, a valid edit's
	// response is the very next one the stream gets.
	nothingSentUntilNextChange(t, env, c, n, func() {
		rewrite(t, nets, "port: 99999", "port: 443")
		rewrite(t, nets, "198.51.100.7", "198.51.100.8")
	}, func(w map[string]uint32) bool { return w["198.51.100.8:443"] == 1 })
}

// nothingSentUntilNextChange proves that c received nothing after its
// first n responses (instead of sleeping and hoping): it waits for a marker
// push — pushes are sequential, so whatever an earlier event would have
// sent has been handed to the stream — then makes a change (change) and
// waits for its EDS response (want); the stream being ordered, that
// response must be response n+1.
func nothingSentUntilNextChange(t *testing.T, env *discoveryEnv, c *adsclient.Client, n int, change func(), want func(map[string]uint32) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	seq := env.cp.PushSeq()
	env.cp.Push()
	if _, err := env.cp.WaitPush(ctx, seq); err != nil {
		t.Fatalf("no marker push: %v", err)
	}
	change()
	waitEDS(t, c, "the next change", want)
	if got := len(c.Responses()); got != n+1 {
		t.Errorf("%d responses before the next change's, want %d: something was sent in between", got-1, n)
	}
}

func TestNACKIsRecordedNotResent(t *testing.T) {
	env := startDiscovery(t)
	c := dial(t, env, "sleep.sample", "network2")
	c.ManualACK = true
	subscribe(t, c)
	r := waitEDS(t, c, "initial", func(w map[string]uint32) bool { return len(w) == 2 })
	n := c.Count(resource.EndpointType)
	if err := c.Request(resource.EndpointType, []string{hwCluster}, "", r.GetNonce(), "bad endpoint"); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the NACK counted", func() bool { return metric(t, env, `horizon_xds_nacks_total{type="eds"}`) == 1 })
	if _, body := env.get(t, "/debug/syncz"); !strings.Contains(body, `"lastNACK": "bad endpoint"`) {
		t.Errorf("/debug/syncz lacks the NACK:\n%s", body)
	}
	// Not re-sent: the next response is the next change's.
	nothingSentUntilNextChange(t, env, c, len(c.Responses()), func() {
		rewrite(t, filepath.Join(env.dir, "cluster1", "helloworld-v1.yaml"), `addresses: ["10.10.0.5"]`, `addresses: ["10.10.0.6"]`)
	}, func(w map[string]uint32) bool { _, ok := w["10.10.0.6:5000"]; return ok })
	_ = n
}

func TestBadRequestsAreRefused(t *testing.T) {
	env := startDiscovery(t)
	tests := []struct {
		name    string
		network string
		typeURL string
		code    codes.Code
	}{
		{"invalid network metadata", "not a network!", resource.EndpointType, codes.InvalidArgument},
		// A megabyte of NETWORK is refused without being echoed back: a
		// request over 1 MiB is refused by gRPC before it is read.
		{"oversized network metadata", strings.Repeat("n", 1<<20), resource.EndpointType, codes.ResourceExhausted},
		{"long network metadata", strings.Repeat("n", 64<<10), resource.EndpointType, codes.InvalidArgument},
		{"network unknown to the mesh", "network9", resource.EndpointType, codes.FailedPrecondition},
		// An unserved type (SDS is the agent's) is not an error: see
		// TestUnservedTypeLeavesTheStreamUp.
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, env, "p", tt.network)
			if err := c.Request(tt.typeURL, nil, "", "", ""); err != nil {
				t.Fatal(err)
			}
			_, err := c.Wait(tt.typeURL, 5*time.Second, func(*discovery.DiscoveryResponse) bool { return true })
			if status.Code(err) != tt.code {
				t.Errorf("stream error %.200v, want %v", err, tt.code)
			}
			if n := len(status.Convert(err).Message()); n > 512 {
				t.Errorf("the status message is %d bytes: client input echoed back", n)
			}
		})
	}
}

func TestDeltaADS(t *testing.T) {
	env := startDiscovery(t)
	conn, err := grpc.NewClient(env.xds, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = stream.Send(&discovery.DeltaDiscoveryRequest{Node: adsclient.Node("delta.sample", "", ""),
		TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{hwCluster}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Resources) != 1 || resp.Resources[0].Name != hwCluster {
		t.Fatalf("delta response: %v", resp)
	}
	r := &discovery.DiscoveryResponse{TypeUrl: resource.EndpointType}
	r.Resources = append(r.Resources, resp.Resources[0].Resource)
	clas, err := adsclient.LoadAssignments(r)
	if err != nil {
		t.Fatal(err)
	}
	if w := adsclient.Weights(clas[hwCluster]); len(w) != 2 || w["203.0.113.20:443"] != 1 {
		t.Errorf("delta EDS = %v", w)
	}
}
