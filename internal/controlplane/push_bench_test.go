package controlplane

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source"
	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/testing/adsclient"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// benchSlice is an EndpointSlice of n endpoints; gen changes one address so
// that every call is a real endpoint change.
func benchSlice(n, gen int) *discoveryv1.EndpointSlice {
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "big-1", Namespace: "ns", Labels: map[string]string{kube.LabelServiceName: "big"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
	}
	for i := range n {
		a := fmt.Sprintf("10.1.%d.%d", i/250, i%250+1)
		if i == 0 {
			a = fmt.Sprintf("10.9.%d.%d", gen/250%250, gen%250+1)
		}
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}})
	}
	return sl
}

// BenchmarkEndpointChangePerView measures one endpoint change of a
// 1,000-endpoint service reaching every connected proxy of one network view.
// The view's resources are built and marshalled once per change whatever the
// number of proxies: what grows with proxies is only the per-stream send.
// Reported: ns/op per change, and builds/op (EDS view builds per change).
func BenchmarkEndpointChangePerView(b *testing.B) {
	for _, proxies := range []int{1, 10, 100} {
		b.Run("proxies="+strconv.Itoa(proxies), func(b *testing.B) {
			cp := New(Options{Logger: testkit.Logger(), Debounce: time.Millisecond, DebounceMax: 5 * time.Millisecond, RemoteSyncTimeout: time.Second})
			store := kube.NewStore()
			store.Upsert(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "big", Namespace: "ns"},
				Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}, "")
			store.Upsert(benchSlice(1000, 0), "")
			cp.SetCluster(source.Cluster{ID: "c1", Origin: "bench", Local: true, Source: &kube.Source{Store: store, IsSynced: func() bool { return true }}})
			addr := serve(b, cp)
			for !cp.Ready() {
				time.Sleep(time.Millisecond)
			}
			const name = "outbound|80||big.ns.svc.cluster.local"
			var clients []*adsclient.Client
			for i := range proxies {
				c, err := adsclient.Dial(addr, adsclient.Node(fmt.Sprintf("p%d", i), "", "c1"))
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				_ = c.Request(resource.EndpointType, []string{name}, "", "", "")
				clients = append(clients, c)
			}
			waitAll := func(want string) {
				for _, c := range clients {
					_, err := c.Wait(resource.EndpointType, 30*time.Second, func(r *discovery.DiscoveryResponse) bool {
						clas, _ := adsclient.LoadAssignments(r)
						_, ok := adsclient.Weights(clas[name])[want]
						return ok
					})
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			waitAll("10.9.0.1:8080")
			builds := func() float64 {
				m := &dtoMetric{}
				_ = cp.metrics.builds.WithLabelValues("eds").Write(m.ptr())
				return m.value()
			}
			before := builds()
			// Each change is exactly one more response per proxy: count them
			// rather than decode 1,000 endpoints per proxy in the loop, which
			// would measure the in-process clients instead of the server.
			waitCount := func(n int) {
				for _, c := range clients {
					for c.Count(resource.EndpointType) < n {
						time.Sleep(50 * time.Microsecond)
					}
				}
			}
			b.ResetTimer()
			for i := 1; i <= b.N; i++ {
				store.Upsert(benchSlice(1000, i), "")
				cp.ClusterChanged("c1")
				waitCount(i + 1)
			}
			b.StopTimer()
			waitAll(fmt.Sprintf("10.9.%d.%d:8080", b.N/250%250, b.N%250+1))
			b.ReportMetric((builds()-before)/float64(b.N), "builds/op")
		})
	}
}

// BenchmarkOneEndpointChangeInMesh measures one endpoint change of one
// service reaching a sidecar that watches CDS, EDS, LDS and RDS, in a mesh of
// 1 service and of 1,000 more services (10 endpoints each) that no change
// touches. Cost proportional to the change means the two are close.
func BenchmarkOneEndpointChangeInMesh(b *testing.B) {
	for _, others := range []int{0, 1000} {
		b.Run("services="+strconv.Itoa(others+1), func(b *testing.B) {
			cp := New(Options{Logger: testkit.Logger(), Debounce: time.Millisecond, DebounceMax: 5 * time.Millisecond, RemoteSyncTimeout: time.Second})
			store := kube.NewStore()
			store.Upsert(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "big", Namespace: "ns"},
				Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}, "")
			store.Upsert(benchSlice(100, 0), "")
			for s := range others {
				name := fmt.Sprintf("svc%d", s)
				store.Upsert(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
					Spec: corev1.ServiceSpec{ClusterIP: fmt.Sprintf("10.96.%d.%d", s/250, s%250+1),
						Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}, "")
				sl := &discoveryv1.EndpointSlice{
					ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: "ns", Labels: map[string]string{kube.LabelServiceName: name}},
					AddressType: discoveryv1.AddressTypeIPv4,
					Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
				}
				for e := range 10 {
					sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.2.%d.%d", s/25, (s%25)*10+e+1)}})
				}
				store.Upsert(sl, "")
			}
			cp.SetCluster(source.Cluster{ID: "c1", Origin: "bench", Local: true, Source: &kube.Source{Store: store, IsSynced: func() bool { return true }}})
			addr := serve(b, cp)
			for !cp.Ready() {
				time.Sleep(time.Millisecond)
			}
			c, err := adsclient.Dial(addr, adsclient.Node("p0", "", "c1"))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			for _, typ := range []string{resource.ClusterType, resource.ListenerType, resource.RouteType} {
				_ = c.Request(typ, nil, "", "", "")
			}
			_ = c.Request(resource.EndpointType, []string{"outbound|80||big.ns.svc.cluster.local"}, "", "", "")
			for c.Count(resource.EndpointType) < 1 {
				time.Sleep(50 * time.Microsecond)
			}
			b.ResetTimer()
			for i := 1; i <= b.N; i++ {
				store.Upsert(benchSlice(100, i), "")
				cp.ClusterChanged("c1")
				for c.Count(resource.EndpointType) < i+1 {
					time.Sleep(50 * time.Microsecond)
				}
			}
		})
	}
}

// BenchmarkEndpointChangeLocalityViews is BenchmarkEndpointChangePerView
// with 100 proxies whose workloads run in 1, 4 or 16 zones of one network:
// one EDS view per zone. Without a policy the 1,000-endpoint service's load
// assignment is built and marshalled once per change whatever the zones
// (the views share it); with a locality policy once per zone.
// Reported: ns/op per change, assignments/op (load assignments built per
// change) and views.
func BenchmarkEndpointChangeLocalityViews(b *testing.B) {
	const proxies = 100
	for _, policy := range []bool{false, true} {
		for _, zones := range []int{1, 4, 16} {
			b.Run(fmt.Sprintf("policy=%v/zones=%d", policy, zones), func(b *testing.B) {
				cp := New(Options{Logger: testkit.Logger(), Debounce: time.Millisecond, DebounceMax: 5 * time.Millisecond, RemoteSyncTimeout: time.Second})
				store := kube.NewStore()
				store.Upsert(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "big", Namespace: "ns"},
					Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}, "")
				store.Upsert(benchSlice(1000, 0), "")
				// One client Pod per zone, its Node in that zone, serving "client".
				store.Upsert(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "client", Namespace: "ns"},
					Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}, "")
				clients := &discoveryv1.EndpointSlice{
					ObjectMeta:  metav1.ObjectMeta{Name: "client-1", Namespace: "ns", Labels: map[string]string{kube.LabelServiceName: "client"}},
					AddressType: discoveryv1.AddressTypeIPv4,
					Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
				}
				for z := range zones {
					node, pod, ip := fmt.Sprintf("node-%d", z), fmt.Sprintf("client-%d", z), fmt.Sprintf("10.50.0.%d", z+1)
					store.Upsert(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node, Labels: map[string]string{
						corev1.LabelTopologyRegion: "r1", corev1.LabelTopologyZone: fmt.Sprintf("z%d", z)}}}, "")
					store.Upsert(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: pod, Namespace: "ns"},
						Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{PodIP: ip}}, "")
					clients.Endpoints = append(clients.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip},
						TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: pod}})
				}
				store.Upsert(clients, "")
				if policy {
					cp.SetDestinationRules([]*model.DestinationRule{{Name: "big", Namespace: "ns", Host: "big",
						Policy: model.TrafficPolicy{Locality: &model.LocalityLB{}}.Seal()}})
				}
				cp.SetCluster(source.Cluster{ID: "c1", Origin: "bench", Local: true, Source: &kube.Source{Store: store, IsSynced: func() bool { return true }}})
				addr := serve(b, cp)
				for !cp.Ready() {
					time.Sleep(time.Millisecond)
				}
				const name = "outbound|80||big.ns.svc.cluster.local"
				var cs []*adsclient.Client
				for i := range proxies {
					node := adsclient.Node(fmt.Sprintf("p%d", i), "", "c1")
					node.Metadata.Fields["INSTANCE_IPS"] = structpb.NewStringValue(fmt.Sprintf("10.50.0.%d", i%zones+1))
					c, err := adsclient.Dial(addr, node)
					if err != nil {
						b.Fatal(err)
					}
					defer c.Close()
					_ = c.Request(resource.EndpointType, []string{name}, "", "", "")
					cs = append(cs, c)
				}
				waitCount := func(n int) {
					for _, c := range cs {
						for c.Count(resource.EndpointType) < n {
							time.Sleep(50 * time.Microsecond)
						}
					}
				}
				waitCount(1)
				built := func() float64 {
					m := &dtoMetric{}
					_ = cp.metrics.assignments.WithLabelValues("built").Write(m.ptr())
					return m.value()
				}
				before := built()
				b.ResetTimer()
				for i := 1; i <= b.N; i++ {
					store.Upsert(benchSlice(1000, i), "")
					cp.ClusterChanged("c1")
					waitCount(i + 1)
				}
				b.StopTimer()
				b.ReportMetric((built()-before)/float64(b.N), "assignments/op")
				views := 0
				for _, v := range cp.Views.Views() {
					if v.TypeURL == resource.EndpointType {
						views++
					}
				}
				b.ReportMetric(float64(views), "views")
			})
		}
	}
}
