package kube

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/horizonmesh/horizon/internal/model"
)

// TestEdgeDiagnostics checks inputs Kubernetes allows or that odd clients
// produce: each gives exactly the listed diagnostics, once.
func TestEdgeDiagnostics(t *testing.T) {
	headless := service("headless")
	headless.Spec.ClusterIP = corev1.ClusterIPNone
	extName := service("ext")
	extName.Spec.Type, extName.Spec.ExternalName = corev1.ServiceTypeExternalName, "db.example.com"
	twoPorts := service("two", corev1.ServicePort{Name: "http", Port: 80}, corev1.ServicePort{Name: "grpc", Port: 90})
	dns := service("dns", corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}, corev1.ServicePort{Name: "dns-tcp", Port: 53})
	tests := []struct {
		name string
		objs []runtime.Object
		want []string // diagnostics, as severity + " " + String()
	}{
		{"headless service without ports", []runtime.Object{headless, slice("headless-1", "headless", nil, sliceEP{addr: "10.0.0.1"})},
			[]string{"warning f: Service sample/headless: spec.ports: headless or ExternalName service has no ports; ignored"}},
		{"ExternalName service without ports", []runtime.Object{extName},
			[]string{"warning f: Service sample/ext: spec.ports: headless or ExternalName service has no ports; ignored"}},
		{"slice of an invalid service: only the service's error", []runtime.Object{service("bad"), slice("bad-1", "bad", nil)},
			[]string{"error f: Service sample/bad: spec.ports: service has no ports"}},
		{"duplicate number and protocol", []runtime.Object{service("d", corev1.ServicePort{Name: "a", Port: 80}, corev1.ServicePort{Name: "b", Port: 80, Protocol: corev1.ProtocolTCP})},
			[]string{"error f: Service sample/d: spec.ports[1].port: duplicate port 80/TCP"}},
		{"invalid address, slice has only the second service port", []runtime.Object{twoPorts, slice("two-1", "two", map[string]int32{"grpc": 91}, sliceEP{addr: "bogus"})},
			[]string{`error f: EndpointSlice sample/two-1: endpoints[0].addresses[0]: invalid IP "bogus"; address ignored`}},
		{"invalid address, two service ports share a number", []runtime.Object{dns, slice("dns-1", "dns", map[string]int32{"dns": 53, "dns-tcp": 53}, sliceEP{addr: "bogus"})},
			[]string{`error f: EndpointSlice sample/dns-1: endpoints[0].addresses[0]: invalid IP "bogus"; address ignored`}},
		{"address with a zone", []runtime.Object{service("z", corev1.ServicePort{Port: 80}), slice("z-1", "z", map[string]int32{"": 80}, sliceEP{addr: "fe80::1%eth0"})},
			[]string{`error f: EndpointSlice sample/z-1: endpoints[0].addresses[0]: invalid IP "fe80::1%eth0"; address ignored`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, diags := convert(t, storeOf("f", tt.objs...))
			var got []string
			for _, d := range diags {
				got = append(got, d.Severity.String()+" "+d.String())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("diagnostics:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestSharedPortNumber: kube-dns lists 53/UDP and 53/TCP. Endpoints are keyed
// by number, so they come from the TCP port only, whichever is listed first.
func TestSharedPortNumber(t *testing.T) {
	for _, tcpFirst := range []bool{false, true} {
		ports := []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}, {Name: "dns-tcp", Port: 53}}
		if tcpFirst {
			ports[0], ports[1] = ports[1], ports[0]
		}
		s := NewStore()
		s.Upsert(service("dns", ports...), "")
		s.Upsert(slice("dns-1", "dns", map[string]int32{"dns": 5353, "dns-tcp": 5354}, sliceEP{addr: "10.0.0.1"}), "")
		snap, diags := convert(t, s)
		if len(diags) != 0 {
			t.Fatal(diags)
		}
		svc := findService(t, snap, "dns")
		if got := describe(svc.Endpoints[53]); got != "10.0.0.1:5354" {
			t.Errorf("tcpFirst=%v: endpoints of 53 = %s, want the TCP target only", tcpFirst, got)
		}
		if len(svc.Ports) != 2 {
			t.Errorf("ports = %v, want both", svc.Ports)
		}
	}
}

// TestLocalityAndPodReference covers the node-name fallback and targetRefs to
// other namespaces and kinds.
func TestLocalityAndPodReference(t *testing.T) {
	s := NewStore()
	s.Upsert(node("n1", "eu", "eu-1a", ""), "")
	s.Upsert(node("n2", "us", "us-1b", "r2"), "")
	other := pod("p-other", "n2", map[string]string{LabelTLSMode: "istio"}, "")
	other.Namespace = "elsewhere"
	s.Upsert(other, "")
	s.Upsert(pod("p-nonode", "", nil, ""), "")
	s.Upsert(service("svc", corev1.ServicePort{Port: 80}), "")
	sl := slice("svc-1", "svc", map[string]int32{"": 8080},
		sliceEP{addr: "10.0.0.1", pod: "unknown"},  // pod unknown: slice nodeName n1
		sliceEP{addr: "10.0.0.2", pod: "p-nonode"}, // pod without nodeName: slice nodeName n1
		sliceEP{addr: "10.0.0.3", pod: "p-other"},  // pod in another namespace, on n2 (slice says n1)
		sliceEP{addr: "10.0.0.4", pod: "p-nonode"}, // targetRef kind is not Pod
	)
	for i := range sl.Endpoints {
		sl.Endpoints[i].NodeName = ptr.To("n1")
	}
	sl.Endpoints[2].TargetRef.Namespace = "elsewhere"
	sl.Endpoints[3].TargetRef.Kind = "VirtualMachine"
	s.Upsert(sl, "")
	snap, diags := convert(t, s)
	if len(diags) != 0 {
		t.Fatal(diags)
	}
	var got []string
	for _, e := range findService(t, snap, "svc").Endpoints[80] {
		got = append(got, fmt.Sprintf("%s %s %s/%s mtls=%v", e.Address, e.Locality, e.Namespace, e.PodName, e.MTLS))
	}
	want := []string{
		"10.0.0.1 eu/eu-1a/ / mtls=false",
		"10.0.0.2 eu/eu-1a/ sample/p-nonode mtls=false",
		"10.0.0.3 us/us-1b/r2 elsewhere/p-other mtls=true",
		"10.0.0.4 eu/eu-1a/ / mtls=false",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("endpoints:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestNilInput(t *testing.T) {
	snap, diags := Convert("c1", nil, Options{})
	if snap == nil || snap.ID != "c1" || len(snap.Services) != 0 || len(diags) != 0 {
		t.Errorf("Convert(nil store) = %+v, %v", snap, diags)
	}
	s := NewStore()
	if s.Upsert(nil, "") || s.Upsert((*corev1.Service)(nil), "") || s.Upsert((*discoveryv1.EndpointSlice)(nil), "") {
		t.Error("nil object accepted")
	}
	s.Delete(nil)
	s.Delete((*corev1.Pod)(nil))
	if _, ok := s.Origin((*corev1.Node)(nil)); ok {
		t.Error("Origin of a nil node")
	}
	// A slice with nothing in it, and endpoints without addresses.
	s.Upsert(service("svc", corev1.ServicePort{Port: 80}), "")
	s.Upsert(&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "e", Namespace: "sample", Labels: map[string]string{LabelServiceName: "svc"}},
		Ports: []discoveryv1.EndpointPort{{}}, Endpoints: []discoveryv1.Endpoint{{}, {TargetRef: &corev1.ObjectReference{}}}}, "")
	if _, diags := convert(t, s); len(diags) != 0 {
		t.Errorf("diagnostics: %v", diags)
	}
}

// TestDeterministic converts twice, with slices inserted in different orders.
func TestDeterministic(t *testing.T) {
	build := func(reverse bool) *model.ClusterSnapshot {
		s := NewStore()
		var objs []*discoveryv1.EndpointSlice
		for i := range 5 {
			objs = append(objs, slice(fmt.Sprint("s", i), "svc", map[string]int32{"": 80},
				sliceEP{addr: fmt.Sprintf("10.0.0.%d", 9-i)}, sliceEP{addr: fmt.Sprintf("fd00::%d", i)}))
		}
		if reverse {
			for i, j := 0, len(objs)-1; i < j; i, j = i+1, j-1 {
				objs[i], objs[j] = objs[j], objs[i]
			}
		}
		for _, o := range objs {
			s.Upsert(o, "")
		}
		s.Upsert(service("svc", corev1.ServicePort{Port: 80}), "")
		s.Upsert(service("a-svc", corev1.ServicePort{Port: 80}), "")
		snap, _ := convert(t, s)
		return snap
	}
	a, b := build(false), build(true)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("snapshots differ with insertion order")
	}
	if a.Services[0].Name != "a-svc" || describe(a.Services[1].Endpoints[80]) !=
		"10.0.0.5:80,10.0.0.6:80,10.0.0.7:80,10.0.0.8:80,10.0.0.9:80,fd00:::80,fd00::1:80,fd00::2:80,fd00::3:80,fd00::4:80" {
		t.Errorf("order: %s then %s: %s", a.Services[0].Name, a.Services[1].Name, describe(a.Services[1].Endpoints[80]))
	}
}

// BenchmarkConvertLargeService converts one Service with 40 slices of 1000
// endpoints each (the EndpointSlice controller's maximum slice size is 1000).
func BenchmarkConvertLargeService(b *testing.B) {
	s := NewStore()
	s.Upsert(service("big", corev1.ServicePort{Port: 80}), "")
	for i := range 40 {
		var eps []sliceEP
		for j := range 1000 {
			eps = append(eps, sliceEP{addr: fmt.Sprintf("10.%d.%d.%d", i, j/250, j%250)})
		}
		s.Upsert(slice(fmt.Sprint("s", i), "big", map[string]int32{"": 8080}, eps...), "")
	}
	for b.Loop() {
		Convert("c", s, Options{})
	}
}
