package controlplane

import (
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/testing/adsclient"
	"github.com/horizonmesh/horizon/internal/xds/server"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// webIn adds to st a Service "web" (ClusterIP clusterIP, port http 8080)
// in namespace ns with one pod, web-0, at podIP.
func webIn(st *kube.Store, ns, clusterIP, podIP string) {
	st.Upsert(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: ns},
		Spec: corev1.PodSpec{ServiceAccountName: "web"}, Status: corev1.PodStatus{PodIP: podIP}}, "")
	st.Upsert(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: corev1.ServiceSpec{ClusterIP: clusterIP, Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}}}, "")
	st.Upsert(&discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-1", Namespace: ns, Labels: map[string]string{kube.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{podIP},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "web-0", Namespace: ns}}},
	}, "")
}

// Route views are keyed by (cluster, namespace), the namespace as the mesh
// verifies it: a flood of clients stating 1000 namespaces (in their
// NAMESPACE metadata, or proved ones without services) makes no view
// beyond the cluster's one without bare names; a sidecar of each of two
// namespaces with a "web" gets its own namespace's "web".
func TestClaimedNamespacesMakeNoRouteViews(t *testing.T) {
	st := kube.NewStore()
	webIn(st, "a", "10.96.0.1", "10.1.0.1")
	webIn(st, "b", "10.96.0.2", "10.1.0.2")
	cp := newLocal(st)
	addr := serveReady(t, cp)

	views := map[translate.View]bool{}
	for i := range 1000 {
		ns := fmt.Sprintf("ns-%d", i)
		ip := netip.MustParseAddr(fmt.Sprintf("10.2.%d.%d", i/250, i%250+1))
		for _, p := range []server.Proxy{
			{ID: "x", Cluster: "c1", IPs: []netip.Addr{ip}, Namespace: ns},                                       // stated
			{ID: "x", Cluster: "c1", IPs: []netip.Addr{ip}, Namespace: ns, ServiceAccount: "sa", Verified: true}, // proved, no services
		} {
			v, claimed, err := cp.classify(resource.RouteType, p)
			if err != nil || claimed {
				t.Fatalf("classify %+v: %v (claimed %v)", p, err, claimed)
			}
			views[v] = true
		}
	}
	if want := (translate.View{Cluster: "c1"}); len(views) != 1 || !views[want] {
		t.Fatalf("1000 claimed namespaces made route views %v, want only %v", views, want)
	}

	// The same over real streams: the claimants share one view; each web
	// pod's sidecar gets its namespace's.
	dial := func(id, ns, ip string) *adsclient.Client {
		c := dialSidecar(t, addr, adsclient.NodeWithIdentity(id, "", "c1", ns, "default"), ip)
		if err := c.Request(resource.RouteType, []string{"8080"}, "", "", ""); err != nil {
			t.Fatal(err)
		}
		return c
	}
	late := dial("sidecar~10.1.0.3~web-0.c", "", "10.1.0.3") // its pod is not known yet
	var claimants []*adsclient.Client
	for i := range 20 {
		claimants = append(claimants, dial(fmt.Sprintf("sidecar~10.3.0.%d~x.ns-%d", i+1, i), fmt.Sprintf("ns-%d", i), fmt.Sprintf("10.3.0.%d", i+1)))
	}
	inA, inB := dial("sidecar~10.1.0.1~web-0.a", "b", "10.1.0.1"), dial("sidecar~10.1.0.2~web-0.b", "a", "10.1.0.2")
	bareWeb := func(want string) func(*discovery.DiscoveryResponse) bool {
		return func(r *discovery.DiscoveryResponse) bool {
			for _, a := range r.Resources {
				rc := &routev3.RouteConfiguration{}
				if a.UnmarshalTo(rc) != nil {
					t.Fatal("not a route configuration")
				}
				for _, vh := range rc.VirtualHosts {
					for _, d := range vh.Domains {
						if d == "web" {
							return vh.Routes[0].GetRoute().GetCluster() == want
						}
					}
				}
			}
			return want == ""
		}
	}
	if _, err := inA.Wait(resource.RouteType, 10*time.Second, bareWeb(translate.ClusterName(8080, "web.a.svc.cluster.local"))); err != nil {
		t.Errorf("a's sidecar (stating namespace b): %v", err)
	}
	if _, err := inB.Wait(resource.RouteType, 10*time.Second, bareWeb(translate.ClusterName(8080, "web.b.svc.cluster.local"))); err != nil {
		t.Errorf("b's sidecar (stating namespace a): %v", err)
	}
	for _, c := range claimants {
		if _, err := c.Wait(resource.RouteType, 10*time.Second, bareWeb("")); err != nil {
			t.Errorf("%s: %v", c.Node.Id, err)
		}
	}
	// Its workload appears, in a namespace new to the mesh: the stream
	// moves to that namespace's routes.
	webIn(st, "c", "10.96.0.3", "10.1.0.3")
	cp.ClusterChanged("c1")
	if _, err := late.Wait(resource.RouteType, 10*time.Second, bareWeb(translate.ClusterName(8080, "web.c.svc.cluster.local"))); err != nil {
		t.Errorf("a sidecar whose workload appeared after it connected: %v", err)
	}
	var routeViews []string
	for _, v := range cp.Views.Views() {
		if v.TypeURL == resource.RouteType {
			routeViews = append(routeViews, v.Key.String())
		}
	}
	if len(routeViews) != 4 {
		t.Errorf("route views %v, want the cluster's and a's, b's and c's", strings.Join(routeViews, "; "))
	}
}

// A namespace that gains its first service or loses its last is one whose
// proved proxies' route views change (reclassify moves them).
func TestChangedNamespaces(t *testing.T) {
	mesh := func(nss ...string) *model.Mesh {
		var svcs []*model.ClusterService
		for _, ns := range nss {
			svcs = append(svcs, &model.ClusterService{Name: "web", Namespace: ns, Ports: []model.ServicePort{{Name: "http", Port: 80}}})
		}
		m, _ := model.Build(model.BuildInput{Clusters: []*model.ClusterSnapshot{{ID: "c1", Services: svcs}}})
		return m
	}
	got := changedNamespaces(mesh("a", "b"), mesh("b", "c"))
	if want := map[string]bool{"a": true, "c": true}; !maps.Equal(got, want) {
		t.Errorf("changed namespaces %v, want %v", got, want)
	}
	if got := changedNamespaces(mesh("a"), mesh("a")); len(got) != 0 {
		t.Errorf("no change, yet %v", got)
	}
}
