package controlplane

import (
	"context"
	"slices"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/horizonmesh/horizon/internal/source"
	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/testing/adsclient"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
	"github.com/horizonmesh/horizon/internal/xds/ndspb"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// nameTable decodes a response's name table (nil if it holds none).
func nameTable(t *testing.T, r *discovery.DiscoveryResponse) *ndspb.NameTable {
	t.Helper()
	if len(r.GetResources()) != 1 {
		t.Fatalf("NDS response with %d resources, want 1", len(r.GetResources()))
	}
	nt := &ndspb.NameTable{}
	if err := r.GetResources()[0].UnmarshalTo(nt); err != nil {
		t.Fatal(err)
	}
	return nt
}

func hasName(t *testing.T, host string, ips ...string) func(*discovery.DiscoveryResponse) bool {
	return func(r *discovery.DiscoveryResponse) bool {
		return slices.Equal(nameTable(t, r).GetTable()[host].GetIps(), ips)
	}
}

// An Istio agent asks for the NDS name table on the stream Envoy's CDS and
// LDS travel on: it is answered with the sidecar cluster's view (a service
// only a remote cluster has comes with that cluster's ClusterIP), updated
// when a service is added, and rebuilt only when services or ClusterIPs
// change — over state of the world and delta alike.
func TestNDSOnTheADSStream(t *testing.T) {
	cp := New(Options{Logger: testkit.Logger(), Debounce: time.Millisecond, DebounceMax: 5 * time.Millisecond, RemoteSyncTimeout: time.Second})
	local, remote := kube.NewStore(), kube.NewStore()
	local.Upsert(incrementalService("helloworld", "10.96.0.10"), "")
	local.Upsert(incrementalSlice("helloworld", "10.1.0.1"), "")
	remote.Upsert(incrementalService("helloworld", "10.96.0.20"), "")
	remote.Upsert(incrementalService("ratings", "10.96.0.30"), "")
	synced := func() bool { return true }
	cp.SetCluster(source.Cluster{ID: "c1", Origin: "test", Local: true, Source: &kube.Source{Store: local, IsSynced: synced}})
	cp.SetCluster(source.Cluster{ID: "c2", Origin: "test", Source: &kube.Source{Store: remote, IsSynced: synced}})
	addr := serve(t, cp)
	testkit.WaitFor(t, "ready", cp.Ready)

	c, err := adsclient.Dial(addr, adsclient.Node("sidecar~10.1.0.9~sleep.ns~ns.svc.cluster.local", "", "c1"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// In the agent's order: Envoy's CDS and LDS, then the agent's NDS with
	// no names (the whole table).
	for _, typ := range []string{resource.ClusterType, resource.ListenerType, translate.NameTableType} {
		if err := c.Request(typ, nil, "", "", ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, typ := range []string{resource.ClusterType, resource.ListenerType} {
		if _, err := c.Wait(typ, 10*time.Second, func(*discovery.DiscoveryResponse) bool { return true }); err != nil {
			t.Fatal(err)
		}
	}
	r, err := c.Wait(translate.NameTableType, 10*time.Second, func(*discovery.DiscoveryResponse) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	nt := nameTable(t, r)
	if got := nt.GetTable()["helloworld.ns.svc.cluster.local"]; !slices.Equal(got.GetIps(), []string{"10.96.0.10"}) ||
		got.GetShortname() != "helloworld" || got.GetNamespace() != "ns" || got.GetRegistry() != "Kubernetes" {
		t.Errorf("helloworld: %v, want c1's ClusterIP 10.96.0.10", got)
	}
	if got := nt.GetTable()["ratings.ns.svc.cluster.local"].GetIps(); !slices.Equal(got, []string{"10.96.0.30"}) {
		t.Errorf("remote-only ratings: %v, want c2's ClusterIP 10.96.0.30", got)
	}

	builds := func(typ string) float64 {
		m := &dtoMetric{}
		_ = cp.metrics.builds.WithLabelValues(typ).Write(m.ptr())
		return m.value()
	}
	// A service added in the remote cluster reaches the table.
	before := builds("nds")
	remote.Upsert(incrementalService("reviews", "10.96.0.40"), "")
	cp.ClusterChanged("c2")
	if _, err := c.Wait(translate.NameTableType, 10*time.Second, hasName(t, "reviews.ns.svc.cluster.local", "10.96.0.40")); err != nil {
		t.Fatal(err)
	}
	if got := builds("nds") - before; got != 1 {
		t.Errorf("NDS builds for one added service: %v, want 1 (one view)", got)
	}

	// An endpoint-only change rebuilds no name table.
	if err := c.Request(resource.EndpointType, []string{"outbound|80||helloworld.ns.svc.cluster.local"}, "", "", ""); err != nil {
		t.Fatal(err)
	}
	before = builds("nds")
	local.Upsert(incrementalSlice("helloworld", "10.1.0.2"), "")
	cp.ClusterChanged("c1")
	if _, err := c.Wait(resource.EndpointType, 10*time.Second, func(r *discovery.DiscoveryResponse) bool {
		clas, _ := adsclient.LoadAssignments(r)
		_, ok := adsclient.Weights(clas["outbound|80||helloworld.ns.svc.cluster.local"])["10.1.0.2:8080"]
		return ok
	}); err != nil {
		t.Fatal(err)
	}
	// The push that carried the endpoint may still be updating views:
	// wait for it (and one more) to complete.
	seq := cp.PushSeq()
	cp.Push()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cp.WaitPush(ctx, seq); err != nil {
		t.Fatal(err)
	}
	if got := builds("nds") - before; got != 0 {
		t.Errorf("an endpoint change rebuilt NDS %v times", got)
	}

	// Delta, as Istio's agent speaks by default: one unnamed resource.
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	d, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(dctx)
	if err != nil {
		t.Fatal(err)
	}
	node := adsclient.Node("sidecar~10.1.0.8~sleep2.ns~ns.svc.cluster.local", "", "c2")
	if err := d.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: translate.NameTableType}); err != nil {
		t.Fatal(err)
	}
	dr, err := d.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if dr.GetTypeUrl() != translate.NameTableType || len(dr.GetResources()) != 1 || dr.GetResources()[0].GetName() != "" {
		t.Fatalf("delta NDS response: type %s, %d resources", dr.GetTypeUrl(), len(dr.GetResources()))
	}
	dnt := &ndspb.NameTable{}
	if err := dr.GetResources()[0].GetResource().UnmarshalTo(dnt); err != nil {
		t.Fatal(err)
	}
	// c2's own helloworld address, and ratings and reviews.
	for host, ip := range map[string]string{"helloworld": "10.96.0.20", "ratings": "10.96.0.30", "reviews": "10.96.0.40"} {
		if got := dnt.GetTable()[host+".ns.svc.cluster.local"].GetIps(); !slices.Equal(got, []string{ip}) {
			t.Errorf("c2's %s: %v, want %s", host, got, ip)
		}
	}
}

// A network gateway's NDS request is left unanswered and its stream stays
// up: routers resolve no service names.
func TestRouterGetsNoNDS(t *testing.T) {
	cp := New(Options{Logger: testkit.Logger(), Debounce: time.Millisecond, RemoteSyncTimeout: time.Second})
	store := kube.NewStore()
	store.Upsert(incrementalService("helloworld", "10.96.0.10"), "")
	cp.SetCluster(source.Cluster{ID: "c1", Origin: "test", Local: true, Source: &kube.Source{Store: store, IsSynced: func() bool { return true }}})
	addr := serve(t, cp)
	testkit.WaitFor(t, "ready", cp.Ready)
	gw, err := adsclient.Dial(addr, adsclient.Node("router~10.0.0.9~gw.ns~ns.svc.cluster.local", "", "c1"))
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	if err := gw.Request(translate.NameTableType, nil, "", "", ""); err != nil {
		t.Fatal(err)
	}
	// Requests on a stream are handled in order: once the EDS request
	// sent after it is answered, the NDS request was handled.
	if err := gw.Request(resource.EndpointType, nil, "", "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := gw.Wait(resource.EndpointType, 10*time.Second, func(*discovery.DiscoveryResponse) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if n := gw.Count(translate.NameTableType); n != 0 || gw.Err() != nil {
		t.Errorf("router: %d NDS responses, stream error %v", n, gw.Err())
	}
}
