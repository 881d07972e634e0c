package controlplane

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/horizonmesh/horizon/internal/source"
	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/testing/adsclient"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// BenchmarkInventedNetworks replays the attack of 500 streams, each with a
// NETWORK of its own, on a 300-service mesh (it grew RSS to 2.58 GB when
// every network got a view, and stretched a one-endpoint push to 6-8 s).
// Reported per op (one endpoint change reaching a legitimate proxy):
// ns/op, views held, and the live heap in MB after the attack.
func BenchmarkInventedNetworks(b *testing.B) {
	cp := New(Options{Logger: testkit.Logger(), Debounce: time.Millisecond, DebounceMax: 5 * time.Millisecond, RemoteSyncTimeout: time.Second})
	store := kube.NewStore()
	for s := range 300 {
		name := fmt.Sprintf("svc%d", s)
		store.Upsert(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}, "")
		sl := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: "ns", Labels: map[string]string{kube.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
		}
		for e := range 10 {
			sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.%d.%d.%d", s/250, s%250, e+1)}})
		}
		store.Upsert(sl, "")
	}
	store.Upsert(benchSlice(10, 0), "")
	store.Upsert(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "big", Namespace: "ns"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}, "")
	cp.SetCluster(source.Cluster{ID: "c1", Origin: "bench", Local: true, Source: &kube.Source{Store: store, IsSynced: func() bool { return true }}})
	addr := serve(b, cp)
	for !cp.Ready() {
		time.Sleep(time.Millisecond)
	}
	for i := range 500 {
		c, err := adsclient.Dial(addr, adsclient.Node(fmt.Sprintf("evil%d", i), fmt.Sprintf("net-%d", i), "c1"))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		_ = c.Request(resource.EndpointType, nil, "", "", "")
	}
	legit, err := adsclient.Dial(addr, adsclient.Node("legit", "", "c1"))
	if err != nil {
		b.Fatal(err)
	}
	defer legit.Close()
	const name = "outbound|80||big.ns.svc.cluster.local"
	_ = legit.Request(resource.EndpointType, []string{name}, "", "", "")
	for legit.Count(resource.EndpointType) < 1 {
		time.Sleep(time.Millisecond)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		store.Upsert(benchSlice(10, i), "")
		cp.ClusterChanged("c1")
		for legit.Count(resource.EndpointType) < i+1 {
			time.Sleep(50 * time.Microsecond)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(len(cp.Views.Views())), "views")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heapMB")
}
