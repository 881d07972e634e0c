package controlplane

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/xds/server"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// podService is a Service with one endpoint: pod name at ip (service
// account sa, labels), serving port.
func podService(st *kube.Store, name, ip, sa string, port int32, labels map[string]string) {
	st.Upsert(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: labels},
		Spec: corev1.PodSpec{ServiceAccountName: sa}, Status: corev1.PodStatus{PodIP: ip}}, "")
	st.Upsert(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
		Spec: corev1.ServiceSpec{ClusterIP: "None", Ports: []corev1.ServicePort{{Name: "tcp", Port: port}}}}, "")
	st.Upsert(&discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: "ns", Labels: map[string]string{kube.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("tcp"), Port: ptr.To(port)}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{ip},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: name, Namespace: "ns"}}},
	}, "")
}

// What a proxy claims never becomes a view of its own (issue 17, item 1):
// a sidecar's inbound ports are one real workload's, whatever combination
// of addresses its node states; on the TLS port only a workload running as
// the stream's proved identity counts; a router's labels are its pod's.
// Only a router whose workload the mesh does not know keeps the labels it
// claims, and such a view is marked claimed (bounded per client by the
// ViewCache).
func TestViewsAreKeyedByWhatTheMeshVerifies(t *testing.T) {
	st := kube.NewStore()
	const pods = 6
	var ips []netip.Addr
	for i := range pods {
		ip := fmt.Sprintf("10.1.0.%d", i+1)
		ips = append(ips, netip.MustParseAddr(ip))
		podService(st, fmt.Sprintf("w%d", i), ip, fmt.Sprintf("sa%d", i), int32(8000+i), map[string]string{"app": fmt.Sprint(i)})
	}
	podService(st, "gw", "10.1.0.100", "gw", 15443, map[string]string{"istio": "eastwestgateway"})
	cp := newLocal(st)
	serveReady(t, cp)

	// Every non-empty combination of the pods' addresses, as a flood of
	// plaintext clients would state them: at most one view per pod.
	views := map[translate.View]bool{}
	for mask := 1; mask < 1<<pods; mask++ {
		var claim []netip.Addr
		for i := range pods {
			if mask&(1<<i) != 0 {
				claim = append(claim, ips[i])
			}
		}
		v, claimed, err := cp.classify(resource.ListenerType, server.Proxy{ID: "x", Cluster: "c1", IPs: claim})
		if err != nil || claimed {
			t.Fatalf("classify %v: %v (claimed %v)", claim, err, claimed)
		}
		views[v] = true
	}
	if len(views) != pods {
		t.Fatalf("%d combinations of %d pods' addresses made %d views, want %d: %v", 1<<pods-1, pods, len(views), pods, views)
	}

	// On the TLS port the proved identity picks the workload, whatever
	// addresses come first; one the mesh does not have gets none.
	verified := func(ns, sa string, ips ...netip.Addr) translate.View {
		v, _, err := cp.classify(resource.ClusterType, server.Proxy{ID: "x", Cluster: "c1", IPs: ips, Verified: true, Namespace: ns, ServiceAccount: sa})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := verified("ns", "sa3", ips[0], ips[3]); v.Inbound != "8003/tcp/permissive" {
		t.Errorf("sa3 stating w0's address first got inbound %q, want w3's 8003/tcp (a port named tcp)", v.Inbound)
	}
	if v := verified("ns", "nobody", ips...); v.Inbound != "" {
		t.Errorf("an identity no workload at those addresses runs as got inbound %q, want none", v.Inbound)
	}

	// Routers: the pod's labels, not the claim; without a pod, the claim.
	router := func(ip string, labels map[string]string) (translate.View, bool) {
		v, claimed, err := cp.classify(resource.ListenerType, server.Proxy{ID: "router~x", Router: true, Cluster: "c1",
			IPs: []netip.Addr{netip.MustParseAddr(ip)}, Labels: labels})
		if err != nil {
			t.Fatal(err)
		}
		return v, claimed
	}
	if v, claimed := router("10.1.0.100", map[string]string{"invented": "1"}); claimed || v.Labels != "istio=eastwestgateway" {
		t.Errorf("router with a pod: labels %q claimed %v, want the pod's, not claimed", v.Labels, claimed)
	}
	if v, claimed := router("192.0.2.1", map[string]string{"invented": "1"}); !claimed || v.Labels != "invented=1" {
		t.Errorf("router without a pod: labels %q claimed %v, want its claim, marked claimed", v.Labels, claimed)
	}
	if _, claimed := router("192.0.2.1", nil); claimed {
		t.Errorf("a router claiming no labels is not a claimed view")
	}
}
