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

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func node(name, region, zone, subzone string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		LabelRegion: region, LabelZone: zone, LabelSubzone: subzone}}}
}

func service(name string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "sample"},
		Spec: corev1.ServiceSpec{Ports: ports, ClusterIP: "10.96.0.10"}}
}

func pod(name, nodeName string, labels map[string]string, sa string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "sample", Labels: labels},
		Spec: corev1.PodSpec{NodeName: nodeName, ServiceAccountName: sa}}
}

type sliceEP struct {
	addr  string
	pod   string
	ready *bool
}

func slice(name, svc string, ports map[string]int32, eps ...sliceEP) *discoveryv1.EndpointSlice {
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: "sample", Labels: map[string]string{LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for n, p := range ports {
		var np *string
		if n != "" {
			np = ptr.To(n)
		}
		sl.Ports = append(sl.Ports, discoveryv1.EndpointPort{Name: np, Port: ptr.To(p)})
	}
	for _, e := range eps {
		ep := discoveryv1.Endpoint{Addresses: []string{e.addr}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready}}
		if e.pod != "" {
			ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: e.pod}
		}
		sl.Endpoints = append(sl.Endpoints, ep)
	}
	return sl
}

// storeOf is a Store holding objs, each upserted from origin.
func storeOf(origin string, objs ...runtime.Object) *Store {
	s := NewStore()
	for _, o := range objs {
		s.Upsert(o, origin)
	}
	return s
}

func convert(t *testing.T, s *Store) (*model.ClusterSnapshot, model.Diagnostics) {
	t.Helper()
	snap, diags := Convert("c1", s, Options{})
	if snap == nil || snap.ID != "c1" {
		t.Fatalf("snapshot = %+v", snap)
	}
	return snap, diags
}

func findService(t *testing.T, snap *model.ClusterSnapshot, name string) *model.ClusterService {
	t.Helper()
	for _, s := range snap.Services {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("service %s not converted; have %d services", name, len(snap.Services))
	return nil
}

func describe(eps []*model.Endpoint) string {
	var parts []string
	for _, e := range eps {
		parts = append(parts, fmt.Sprintf("%s:%d", e.Address, e.Port))
	}
	return strings.Join(parts, ",")
}

func TestEndpointFromPodAndNode(t *testing.T) {
	s := NewStore()
	s.Upsert(namespace("istio-system", map[string]string{LabelNetwork: "net-sys"}), "")
	s.Upsert(node("n1", "eu", "eu-1a", "rack7"), "")
	s.Upsert(pod("hw-1", "n1", map[string]string{"app": "hw", LabelTLSMode: "istio", LabelNetwork: "net-pod"}, "hw-sa"), "")
	s.Upsert(pod("hw-2", "", map[string]string{"app": "hw"}, ""), "")
	s.Upsert(service("hw",
		corev1.ServicePort{Name: "http", Port: 80},
		corev1.ServicePort{Name: "grpc", Port: 9090, Protocol: corev1.ProtocolTCP}), "")
	s.Upsert(slice("hw-abc", "hw", map[string]int32{"http": 8080, "grpc": 9091},
		sliceEP{addr: "10.0.0.1", pod: "hw-1"}, sliceEP{addr: "10.0.0.2", pod: "hw-2", ready: ptr.To(true)}), "")

	snap, diags := convert(t, s)
	if len(diags) != 0 {
		t.Fatalf("diagnostics: %v", diags)
	}
	if snap.SystemNamespaceNetwork != "net-sys" {
		t.Errorf("system namespace network = %q", snap.SystemNamespaceNetwork)
	}
	svc := findService(t, snap, "hw")
	if got := describe(svc.Endpoints[80]); got != "10.0.0.1:8080,10.0.0.2:8080" {
		t.Errorf("port 80 endpoints = %s", got)
	}
	if got := describe(svc.Endpoints[9090]); got != "10.0.0.1:9091,10.0.0.2:9091" {
		t.Errorf("port 9090 endpoints = %s", got)
	}
	if len(svc.ClusterIPs) != 1 || svc.ClusterIPs[0] != "10.96.0.10" {
		t.Errorf("cluster IPs = %v", svc.ClusterIPs)
	}
	e := svc.Endpoints[80][0]
	want := model.Endpoint{Address: e.Address, Port: 8080, Cluster: "c1", PodNetwork: "net-pod",
		Locality:  model.Locality{Region: "eu", Zone: "eu-1a", Subzone: "rack7"},
		Namespace: "sample", PodName: "hw-1", ServiceAccount: "hw-sa", MTLS: true}
	e2 := *e
	e2.Labels = nil
	if !reflect.DeepEqual(e2, want) {
		t.Errorf("endpoint = %+v\nwant       %+v", e2, want)
	}
	if e.Labels["app"] != "hw" {
		t.Errorf("labels = %v", e.Labels)
	}
	other := svc.Endpoints[80][1]
	if other.MTLS || other.ServiceAccount != "default" || other.Locality != (model.Locality{}) {
		t.Errorf("pod without tlsMode label / SA / node: %+v", other)
	}
}

func TestEndpointReadinessAndDuplicates(t *testing.T) {
	s := NewStore()
	s.Upsert(service("web", corev1.ServicePort{Port: 80}), "")
	s.Upsert(slice("web-1", "web", map[string]int32{"": 8080},
		sliceEP{addr: "10.0.0.1", ready: ptr.To(true)},
		sliceEP{addr: "10.0.0.2", ready: ptr.To(false)},
		sliceEP{addr: "10.0.0.3"}), "")
	s.Upsert(slice("web-2", "web", map[string]int32{"": 8080}, sliceEP{addr: "10.0.0.1"}, sliceEP{addr: "10.0.0.4"}), "")
	// A slice port whose name matches no Service port contributes nothing.
	s.Upsert(slice("web-3", "web", map[string]int32{"metrics": 9000}, sliceEP{addr: "10.0.0.9"}), "")
	snap, diags := convert(t, s)
	if len(diags) != 0 {
		t.Fatal(diags)
	}
	if got := describe(findService(t, snap, "web").Endpoints[80]); got != "10.0.0.1:8080,10.0.0.3:8080,10.0.0.4:8080" {
		t.Errorf("endpoints = %s (not-ready excluded, absent readiness = ready, duplicates once)", got)
	}
}

func TestPodArrivingLater(t *testing.T) {
	s := NewStore()
	s.Upsert(service("hw", corev1.ServicePort{Name: "http", Port: 5000}), "")
	s.Upsert(slice("hw-1", "hw", map[string]int32{"http": 5000}, sliceEP{addr: "10.0.0.1", pod: "hw-late"}), "")
	snap, diags := convert(t, s)
	if len(diags) != 0 {
		t.Fatalf("an unknown pod is not an error: %v", diags)
	}
	e := findService(t, snap, "hw").Endpoints[5000][0]
	if e.MTLS || e.PodName != "" || e.Labels != nil {
		t.Fatalf("endpoint of an unknown pod: %+v", e)
	}
	s.Upsert(pod("hw-late", "", map[string]string{LabelTLSMode: "istio"}, "sa"), "")
	snap, _ = convert(t, s)
	if e := findService(t, snap, "hw").Endpoints[5000][0]; !e.MTLS || e.PodName != "hw-late" {
		t.Errorf("after the pod arrives: %+v", e)
	}
	s.Delete(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "hw-late", Namespace: "sample"}})
	snap, _ = convert(t, s)
	if e := findService(t, snap, "hw").Endpoints[5000][0]; e.MTLS {
		t.Errorf("after the pod is deleted: %+v", e)
	}
	s.Delete(&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "hw-1", Namespace: "sample"}})
	snap, _ = convert(t, s)
	if eps := findService(t, snap, "hw").Endpoints[5000]; len(eps) != 0 {
		t.Errorf("after the slice is deleted: %s", describe(eps))
	}
}

func TestGatewayServiceFields(t *testing.T) {
	s := NewStore()
	gw := service("gw", corev1.ServicePort{Name: "tls", Port: 15443})
	gw.Labels = map[string]string{LabelNetwork: "n2"}
	gw.Spec.ExternalIPs = []string{"203.0.113.9"}
	gw.Spec.ClusterIP = "None"
	gw.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.1"}, {Hostname: "gw.example.com"}, {}}
	s.Upsert(gw, "")
	snap, _ := convert(t, s)
	got := findService(t, snap, "gw")
	if strings.Join(got.LoadBalancer, ",") != "203.0.113.1,gw.example.com" || strings.Join(got.ExternalIPs, ",") != "203.0.113.9" {
		t.Errorf("LB %v external %v", got.LoadBalancer, got.ExternalIPs)
	}
	if len(got.ClusterIPs) != 0 || got.Labels[LabelNetwork] != "n2" {
		t.Errorf("headless cluster IPs %v labels %v", got.ClusterIPs, got.Labels)
	}
}

func TestBadObjects(t *testing.T) {
	noSvcLabel := slice("orphan-2", "x", map[string]int32{"": 80}, sliceEP{addr: "10.0.0.1"})
	delete(noSvcLabel.Labels, LabelServiceName)
	fqdn := slice("fqdn", "ok", map[string]int32{"": 80}, sliceEP{addr: "db.example.com"})
	fqdn.AddressType = discoveryv1.AddressTypeFQDN
	badIP := slice("bad-ip", "ok", map[string]int32{"": 80}, sliceEP{addr: "10.0.0.300"}, sliceEP{addr: "10.0.0.7"})
	tests := []struct {
		name     string
		objs     []runtime.Object
		severity model.Severity
		contains []string
	}{
		{"service without ports", []runtime.Object{service("empty")}, model.Error, []string{"Service sample/empty", "spec.ports", "no ports"}},
		{"port out of range", []runtime.Object{service("big", corev1.ServicePort{Port: 70000})}, model.Error, []string{"spec.ports[0].port", "70000"}},
		{"duplicate port name", []runtime.Object{service("dup", corev1.ServicePort{Name: "a", Port: 1}, corev1.ServicePort{Name: "a", Port: 2})}, model.Error, []string{"spec.ports[1].name", "duplicate"}},
		{"slice without service", []runtime.Object{slice("orphan", "missing", map[string]int32{"": 80}, sliceEP{addr: "10.0.0.1"})}, model.Warning, []string{"EndpointSlice sample/orphan", "kubernetes.io/service-name", "sample/missing does not exist"}},
		{"slice without service label", []runtime.Object{noSvcLabel}, model.Warning, []string{"EndpointSlice sample/orphan-2", "no service-name label"}},
		{"FQDN slice", []runtime.Object{service("ok", corev1.ServicePort{Port: 80}), fqdn}, model.Warning, []string{"addressType", "FQDN"}},
		{"invalid address", []runtime.Object{service("ok", corev1.ServicePort{Port: 80}), badIP}, model.Error, []string{"endpoints[0].addresses[0]", "10.0.0.300"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, diags := convert(t, storeOf("file.yaml", tt.objs...))
			if len(diags) != 1 {
				t.Fatalf("want one diagnostic, got %v", diags)
			}
			d := diags[0]
			if d.Severity != tt.severity {
				t.Errorf("severity %v, want %v", d.Severity, tt.severity)
			}
			for _, c := range append(tt.contains, "file.yaml") {
				if !strings.Contains(d.String(), c) {
					t.Errorf("%q lacks %q", d.String(), c)
				}
			}
		})
	}
}

func TestUpsertUnsupported(t *testing.T) {
	s := NewStore()
	if s.Upsert(&corev1.ConfigMap{}, "") {
		t.Error("ConfigMap accepted")
	}
	if !s.Upsert(namespace("a", nil), "x.yaml") {
		t.Error("Namespace rejected")
	}
	if o, ok := s.Origin(namespace("a", nil)); !ok || o != "x.yaml" {
		t.Errorf("Origin = %q, %v", o, ok)
	}
}

// A port's appProtocol reaches the model, where it selects the protocol
// before the port name does.
func TestServicePortAppProtocol(t *testing.T) {
	s := NewStore()
	s.Upsert(service("multi",
		corev1.ServicePort{Name: "tcp-data", Port: 80, AppProtocol: ptr.To("kubernetes.io/h2c")},
		corev1.ServicePort{Name: "grpc", Port: 9090},
		corev1.ServicePort{Port: 7000}), "")
	snap, _ := convert(t, s)
	got := findService(t, snap, "multi")
	want := map[uint32]model.Protocol{80: model.ProtocolHTTP2, 9090: model.ProtocolGRPC, 7000: model.ProtocolUnknown}
	for _, p := range got.Ports {
		if p.Selected() != want[p.Port] {
			t.Errorf("port %d (%q, appProtocol %q): %q, want %q", p.Port, p.Name, p.AppProtocol, p.Selected(), want[p.Port])
		}
	}
	if got.Ports[0].AppProtocol != "kubernetes.io/h2c" {
		t.Errorf("appProtocol not kept: %+v", got.Ports)
	}
}
