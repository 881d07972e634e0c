package bootstrap

import (
	"context"
	"fmt"
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

// Distinct invented networks used to make one view each, held forever (2.6
// GB for 500 streams on a 300-service mesh). Now an unknown network is
// refused, and the views of known ones go with their last stream.
func TestInventedNetworksAreRefusedAndViewsFreed(t *testing.T) {
	env := startDiscovery(t)
	for i := range 50 {
		c, err := adsclient.Dial(env.xds, adsclient.Node(fmt.Sprintf("evil-%d", i), fmt.Sprintf("invented-%d", i), "cluster1"))
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Request(resource.EndpointType, nil, "", "", "")
		_, err = c.Wait(resource.EndpointType, 5*time.Second, func(*discovery.DiscoveryResponse) bool { return true })
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "not known to the mesh") {
			t.Fatalf("invented network: %v, want FailedPrecondition naming the network", err)
		}
		c.Close()
	}
	if v := env.cp.Views.Views(); len(v) != 0 {
		t.Fatalf("refused proxies left views behind: %v", v)
	}
	// A cluster that never joined is refused too.
	c, err := adsclient.Dial(env.xds, adsclient.Node("evil", "network2", "no-such-cluster"))
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Request(resource.ClusterType, nil, "", "", "")
	if _, err := c.Wait(resource.ClusterType, 5*time.Second, func(*discovery.DiscoveryResponse) bool { return true }); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("unknown cluster: %v, want FailedPrecondition", err)
	}
	c.Close()

	var clients []*adsclient.Client
	for i := range 20 {
		c := dial(t, env, fmt.Sprintf("sleep-%d", i), "network2")
		for _, typ := range []string{resource.ClusterType, resource.EndpointType} {
			if err := c.Request(typ, nil, "", "", ""); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Wait(typ, 5*time.Second, func(*discovery.DiscoveryResponse) bool { return true }); err != nil {
				t.Fatal(err)
			}
		}
		clients = append(clients, c)
	}
	if v := env.cp.Views.Views(); len(v) != 2 {
		t.Fatalf("20 proxies of one shape hold %d views, want 2 (cds, eds): %v", len(v), v)
	}
	for _, c := range clients[1:] {
		c.Close()
	}
	testkit.WaitFor(t, "19 streams have closed", func() bool { return len(env.cp.Tracker.Streams()) == 1 })
	if v := env.cp.Views.Views(); len(v) != 2 {
		t.Fatalf("views freed while a proxy still uses them: %v", v)
	}
	clients[0].Close()
	testkit.WaitFor(t, "the last view is freed", func() bool { return len(env.cp.Views.Views()) == 0 })
	_, metrics := env.get(t, "/metrics")
	for _, want := range []string{"horizon_xds_views 0", `horizon_xds_connected_proxies{network="network2"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// deltaStream opens a delta ADS stream and sends its first request.
func deltaStream(t *testing.T, addr, id, typeURL string) discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); conn.Close() })
	s, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&discovery.DeltaDiscoveryRequest{Node: adsclient.Node(id, "", "cluster1"), TypeUrl: typeURL}); err != nil {
		t.Fatal(err)
	}
	return s
}

// The two kinds of stream share numbers (both counters start at 1): both
// must be listed, and the connected-proxies gauge must not go negative.
func TestBothStreamKindsAreTracked(t *testing.T) {
	env := startDiscovery(t)
	sotw := dial(t, env, "sotw-proxy", "")
	if err := sotw.Request(resource.ClusterType, nil, "", "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := sotw.Wait(resource.ClusterType, 5*time.Second, func(*discovery.DiscoveryResponse) bool { return true }); err != nil {
		t.Fatal(err)
	}
	d := deltaStream(t, env.xds, "delta-proxy", resource.ClusterType)
	if _, err := d.Recv(); err != nil {
		t.Fatal(err)
	}
	_, body := env.get(t, "/debug/syncz")
	if !strings.Contains(body, "sotw-proxy") || !strings.Contains(body, "delta-proxy") {
		t.Fatalf("/debug/syncz does not list both streams:\n%s", body)
	}
	sotw.Close()
	testkit.WaitFor(t, "the state-of-the-world stream is gone", func() bool { return len(env.cp.Tracker.Streams()) == 1 })
	_, metrics := env.get(t, "/metrics")
	if want := `horizon_xds_connected_proxies{network=""} 1`; !strings.Contains(metrics, want) {
		t.Fatalf("/metrics lacks %q:\n%s", want, grep(metrics, "connected_proxies"))
	}
}

// An Istio agent asks for types Horizon does not serve on the ADS stream
// (before Horizon served NDS, the name table was one: the agent
// reconnected 86 times in 20 s). That must not end the stream.
func TestUnservedTypeLeavesTheStreamUp(t *testing.T) {
	env := startDiscovery(t)
	c := dial(t, env, "istio-agent", "")
	if err := c.Request("type.googleapis.com/istio.mesh.v1alpha1.ProxyConfig", nil, "", "", ""); err != nil {
		t.Fatal(err)
	}
	if err := c.Request(resource.ClusterType, nil, "", "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(resource.ClusterType, 5*time.Second, func(*discovery.DiscoveryResponse) bool { return true }); err != nil {
		t.Fatalf("stream after an unserved type: %v", err)
	}
	_, metrics := env.get(t, "/metrics")
	if !strings.Contains(metrics, "horizon_xds_unsupported_type_requests_total 1") {
		t.Fatalf("unserved request not counted:\n%s", grep(metrics, "unsupported"))
	}
}

func grep(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
