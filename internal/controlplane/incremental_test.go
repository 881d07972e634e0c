package controlplane

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source"
	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/testing/adsclient"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
	"github.com/horizonmesh/horizon/internal/xds/server"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

func incrementalService(name, clusterIP string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
		Spec: corev1.ServiceSpec{ClusterIP: clusterIP, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
}

func incrementalSlice(name string, addrs ...string) *discoveryv1.EndpointSlice {
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: "ns", Labels: map[string]string{kube.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
	}
	for _, a := range addrs {
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}})
	}
	return sl
}

// An endpoint change rebuilds the load assignment of its service only (the
// others are reused) and no listener, route or cluster; a ClusterIP change
// rebuilds listeners and routes.
func TestEndpointChangeRebuildsOnlyItsService(t *testing.T) {
	store := kube.NewStore()
	for i, name := range []string{"a", "b", "c"} {
		store.Upsert(incrementalService(name, fmt.Sprintf("10.96.0.%d", i+1)), "")
		store.Upsert(incrementalSlice(name, fmt.Sprintf("10.1.%d.1", i)), "")
	}
	cp := newLocal(store)
	addr := serveReady(t, cp)
	c, err := adsclient.Dial(addr, adsclient.Node("p0", "", "c1"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	names := []string{"outbound|80||a.ns.svc.cluster.local", "outbound|80||b.ns.svc.cluster.local", "outbound|80||c.ns.svc.cluster.local"}
	for _, typ := range []string{resource.ClusterType, resource.ListenerType, resource.RouteType} {
		if err := c.Request(typ, nil, "", "", ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Request(resource.EndpointType, names, "", "", ""); err != nil {
		t.Fatal(err)
	}
	// A gateway's EDS view too.
	gw, err := adsclient.Dial(addr, adsclient.Node("router~10.0.0.9~gw.ns~ns.svc.cluster.local", "", "c1"))
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	if err := gw.Request(resource.EndpointType, nil, "", "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := gw.Wait(resource.EndpointType, 10*time.Second, func(*discovery.DiscoveryResponse) bool { return true }); err != nil {
		t.Fatal(err)
	}
	hasEndpoint := func(cluster, endpoint string) func(*discovery.DiscoveryResponse) bool {
		return func(r *discovery.DiscoveryResponse) bool {
			clas, _ := adsclient.LoadAssignments(r)
			_, ok := adsclient.Weights(clas[cluster])[endpoint]
			return ok
		}
	}
	if _, err := c.Wait(resource.EndpointType, 10*time.Second, hasEndpoint(names[0], "10.1.0.1:8080")); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{resource.ClusterType, resource.ListenerType, resource.RouteType} {
		if _, err := c.Wait(typ, 10*time.Second, func(*discovery.DiscoveryResponse) bool { return true }); err != nil {
			t.Fatal(err)
		}
	}
	builds := func(typ string) float64 {
		m := &dtoMetric{}
		_ = cp.metrics.builds.WithLabelValues(typ).Write(m.ptr())
		return m.value()
	}
	assignments := func(result string) float64 {
		m := &dtoMetric{}
		_ = cp.metrics.assignments.WithLabelValues(result).Write(m.ptr())
		return m.value()
	}
	before := map[string]float64{"cds": builds("cds"), "lds": builds("lds"), "rds": builds("rds"), "built": assignments("built"), "reused": assignments("reused")}

	// b's endpoint moves.
	store.Upsert(incrementalSlice("b", "10.1.1.2"), "")
	cp.ClusterChanged("c1")
	r, err := c.Wait(resource.EndpointType, 10*time.Second, hasEndpoint(names[1], "10.1.1.2:8080"))
	if err != nil {
		t.Fatal(err)
	}
	// The push goes on to the gateway's view after the sidecar's.
	testkit.WaitFor(t, "b's load assignment rebuilt in the gateway's view too", func() bool {
		return assignments("built")-before["built"] >= 2 && assignments("reused")-before["reused"] >= 4
	})
	// EDS is not a state-of-the-world type for Envoy: only b's is resent.
	if clas, _ := adsclient.LoadAssignments(r); len(clas) != 1 {
		t.Errorf("after b's change %d load assignments were sent, want b's only", len(clas))
	}
	// b's assignment is rebuilt in both views (sidecar, gateway), a's and
	// c's are reused.
	if got, want := assignments("built")-before["built"], 2.0; got != want {
		t.Errorf("load assignments built for one service's change: %v, want %v", got, want)
	}
	if got, want := assignments("reused")-before["reused"], 4.0; got != want {
		t.Errorf("load assignments reused: %v, want %v", got, want)
	}
	for _, typ := range []string{"cds", "lds", "rds"} {
		if got := builds(typ) - before[typ]; got != 0 {
			t.Errorf("an endpoint change rebuilt %s %v times", typ, got)
		}
	}
	// What the incremental builds hold is what the one translation builds,
	// for the sidecar's and the gateway's EDS views.
	for _, key := range []translate.View{EDSView(""), {Role: translate.RoleRouter}} {
		view := server.View{TypeURL: resource.EndpointType, Key: key}
		held, _, ok := cp.Views.Resources(view)
		if !ok {
			t.Fatalf("no EDS view %s", key)
		}
		want := translate.Build(cp.input(cp.Mesh()), resource.EndpointType, view.Key)
		if len(held) != len(want) {
			t.Fatalf("%s holds %d load assignments, translate.Build makes %d", key, len(held), len(want))
		}
		for name, r := range want {
			if !proto.Equal(held[name], r) {
				t.Errorf("%s %s: held %v, translate.Build %v", key, name, held[name], r)
			}
		}
	}

	// c's ClusterIP changes: listeners and routes name it.
	ldsBefore, rdsBefore := builds("lds"), builds("rds")
	store.Upsert(incrementalService("c", "10.96.0.99"), "")
	cp.ClusterChanged("c1")
	if _, err := c.Wait(resource.ListenerType, 10*time.Second, func(r *discovery.DiscoveryResponse) bool {
		return r.VersionInfo != "" && builds("lds") > ldsBefore
	}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "routes rebuilt after a ClusterIP change", func() bool { return builds("rds") > rdsBefore })
}

// WaitPush returns once a push after the given one has completed.
func TestWaitPush(t *testing.T) {
	cp := New(Options{Logger: testkit.Logger(), Debounce: time.Millisecond, RemoteSyncTimeout: time.Second})
	cp.SetCluster(source.Cluster{ID: "c1", Origin: "test", Local: true, Source: &kube.Source{Store: kube.NewStore(), IsSynced: func() bool { return true }}})
	serve(t, cp)
	testkit.WaitFor(t, "ready", cp.Ready)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	seq := cp.PushSeq()
	cp.Push()
	n, err := cp.WaitPush(ctx, seq)
	if err != nil || n <= seq {
		t.Fatalf("WaitPush after %d: %d, %v", seq, n, err)
	}
	// Without a change there is no push to wait for.
	short, cancelShort := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancelShort()
	if _, err := cp.WaitPush(short, cp.PushSeq()); err == nil {
		t.Error("WaitPush returned without a push")
	}
}

// blockingDNS answers once released: a resolver that hangs.
type blockingDNS struct{ release chan struct{} }

func (b blockingDNS) LookupNetIP(ctx context.Context, _, _ string) ([]netip.Addr, error) {
	select {
	case <-b.release:
		return []netip.Addr{netip.MustParseAddr("203.0.113.7")}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// A gateway name that does not resolve yet never stalls a push: the mesh
// is served without that gateway, and pushed again once the name answers.
func TestSlowGatewayNameDoesNotStallPushes(t *testing.T) {
	dns := blockingDNS{release: make(chan struct{})}
	cp := New(Options{Logger: testkit.Logger(), Debounce: time.Millisecond, RemoteSyncTimeout: time.Second, Resolver: dns, RefreshInterval: time.Hour})
	cp.SetMeshNetworks(&model.MeshNetworks{Networks: []*model.NetworkConfig{{Name: "n2", Registries: []model.ClusterID{"c2"},
		Gateways: []model.GatewaySpec{{Address: "gw.example.com", Port: 15443}}}}}, nil)
	cp.SetCluster(source.Cluster{ID: "c1", Origin: "test", Local: true, Source: &kube.Source{Store: kube.NewStore()}})
	serve(t, cp)
	testkit.WaitFor(t, "ready while the gateway name hangs", cp.Ready)
	if gws := cp.Mesh().Gateways(); len(gws) != 0 {
		t.Fatalf("gateways before the name resolved: %v", gws)
	}
	// Pushes go on meanwhile.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	seq := cp.PushSeq()
	cp.Push()
	if _, err := cp.WaitPush(ctx, seq); err != nil {
		t.Fatalf("a push stalled behind the hanging name: %v", err)
	}
	close(dns.release)
	testkit.WaitFor(t, "the gateway once its name resolved", func() bool { return len(cp.Mesh().Gateways()) == 1 })
}
