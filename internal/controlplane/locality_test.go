package controlplane

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source"
	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
	"github.com/horizonmesh/horizon/internal/xds/server"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// zonedStore is one cluster with two Nodes in two zones, a Pod on each, and
// services a (with a DestinationRule when rules apply) and b selecting both.
func zonedStore() *kube.Store {
	store := kube.NewStore()
	for i, zone := range []string{"z1", "z2"} {
		node := "node-" + zone
		store.Upsert(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node, Labels: map[string]string{
			corev1.LabelTopologyRegion: "r1", corev1.LabelTopologyZone: zone}}}, "")
		store.Upsert(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p-" + zone, Namespace: "ns"},
			Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{PodIP: "10.1.0." + string(rune('1'+i))}}, "")
	}
	for _, name := range []string{"a", "b"} {
		store.Upsert(incrementalService(name, ""), "")
		sl := incrementalSlice(name)
		for i, zone := range []string{"z1", "z2"} {
			sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.1.0." + string(rune('1'+i))},
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: "p-" + zone}})
		}
		sl.Ports = []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}}
		store.Upsert(sl, "")
	}
	return store
}

// A sidecar's EDS view is its workload's (cluster, locality) — the Pod's
// Node's, never what the node claims — and the views of one network hold
// the very same load assignment of a service without a locality policy,
// built once; a service with one gets its own per view.
func TestEDSViewsByLocalityShareServicesWithoutPolicy(t *testing.T) {
	cp := New(Options{Logger: testkit.Logger(), RemoteSyncTimeout: time.Second})
	cp.SetCluster(source.Cluster{ID: "c1", Origin: "test", Local: true, Source: &kube.Source{Store: zonedStore(), IsSynced: func() bool { return true }}})
	cp.SetDestinationRules([]*model.DestinationRule{{Name: "a", Namespace: "ns", Host: "a", Policy: model.TrafficPolicy{Locality: &model.LocalityLB{}}.Seal()}})
	cp.push(context.Background())

	classify := func(ip string) translate.View {
		t.Helper()
		v, err := cp.Classify(resource.EndpointType, server.Proxy{ID: "sidecar~" + ip, Cluster: "c1", IPs: []netip.Addr{netip.MustParseAddr(ip)}})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	z1, z2, unknown := classify("10.1.0.1"), classify("10.1.0.2"), classify("10.9.9.9")
	if !z1.Located || z1.Locality != (model.Locality{Region: "r1", Zone: "z1"}) || z2.Locality.Zone != "z2" {
		t.Fatalf("views %v and %v, want the workloads' localities r1/z1 and r1/z2", z1, z2)
	}
	if unknown != (translate.View{}) {
		t.Fatalf("a proxy whose workload the mesh does not know: view %v, want the network's", unknown)
	}
	builds := func() float64 {
		m := &dtoMetric{}
		_ = cp.metrics.assignments.WithLabelValues("built").Write(m.ptr())
		return m.value()
	}
	before := builds()
	r1 := cp.build(server.View{TypeURL: resource.EndpointType, Key: z1})
	r2 := cp.build(server.View{TypeURL: resource.EndpointType, Key: z2})
	r0 := cp.build(server.View{TypeURL: resource.EndpointType, Key: unknown})
	const a, b = "outbound|80||a.ns.svc.cluster.local", "outbound|80||b.ns.svc.cluster.local"
	if r1[b] != r2[b] || r1[b] != r0[b] {
		t.Error("b (no policy): the views of one network hold different load assignments, want one shared")
	}
	if r1[a] == r2[a] {
		t.Error("a (locality policy): both zones share a load assignment")
	}
	// b once for the network, a once per view.
	if got := builds() - before; got != 4 {
		t.Errorf("%v load assignments built, want 4", got)
	}
}
