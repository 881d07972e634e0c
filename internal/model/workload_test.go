package model

import (
	"net/netip"
	"slices"
	"testing"
)

// WorkloadAt answers with one real workload whatever addresses a proxy
// states: the first of them an endpoint has, its Pod's ports (every
// address of the Pod), labels and identity; with an identity, only a Pod
// running as it.
func TestWorkloadAt(t *testing.T) {
	ep := func(addr string, port uint32, ns, pod, sa string) *Endpoint {
		return &Endpoint{Address: netip.MustParseAddr(addr), Port: port, Namespace: ns, PodName: pod, ServiceAccount: sa,
			Labels: map[string]string{"app": pod}}
	}
	svc := func(name string, port uint32, eps ...*Endpoint) *ClusterService {
		return &ClusterService{Name: name, Namespace: "ns", Ports: []ServicePort{{Name: "http", Port: port}},
			Endpoints: map[uint32][]*Endpoint{port: eps}}
	}
	c1 := &ClusterSnapshot{ID: "c1", Services: []*ClusterService{
		svc("a", 80, ep("10.0.0.1", 8080, "ns", "p1", "sa1"), ep("10.0.0.2", 8080, "ns", "p2", "sa2"), ep("fd00::1", 8080, "ns", "p1", "sa1")),
		svc("b", 90, ep("10.0.0.1", 9090, "ns", "p1", "sa1"), ep("10.0.0.3", 9090, "", "", "")),
		svc("c", 70, ep("10.0.0.2", 7070, "ns", "p2", "sa2")),
	}}
	c2 := &ClusterSnapshot{ID: "c2", Services: []*ClusterService{svc("a", 80, ep("10.0.0.1", 1111, "ns", "q", "sa1"))}}
	m := mustBuild(t, BuildInput{Clusters: []*ClusterSnapshot{c1, c2}})
	for _, tc := range []struct {
		name      string
		cluster   ClusterID
		ips       []netip.Addr
		ns, sa    string
		wantPod   string
		wantPorts []uint32
	}{
		{"pod by its address", "c1", ips("10.0.0.1"), "", "", "p1", []uint32{8080, 9090}},
		{"by its other address", "c1", ips("fd00::1"), "", "", "p1", []uint32{8080, 9090}},
		// Two pods' addresses: the first one counts, not the union.
		{"first stated address wins", "c1", ips("10.0.0.2", "10.0.0.1"), "", "", "p2", []uint32{7070, 8080}},
		{"unknown addresses skipped", "c1", ips("192.0.2.1", "10.0.0.1"), "", "", "p1", []uint32{8080, 9090}},
		{"other cluster", "c2", ips("10.0.0.1"), "", "", "q", []uint32{1111}},
		{"address without pod", "c1", ips("10.0.0.3"), "", "", "", []uint32{9090}},
		{"identity matches", "c1", ips("10.0.0.2", "10.0.0.1"), "ns", "sa1", "p1", []uint32{8080, 9090}},
		{"identity matches no pod", "c1", ips("10.0.0.2"), "ns", "sa1", "", nil},
		{"no pod, no identity", "c1", ips("10.0.0.3"), "ns", "sa1", "", nil},
		{"nothing", "c1", ips("192.0.2.1"), "", "", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, ok := m.WorkloadAt(tc.cluster, tc.ips, tc.ns, tc.sa)
			if wantOK := tc.wantPorts != nil; ok != wantOK {
				t.Fatalf("found %v, want %v (%+v)", ok, wantOK, w)
			}
			if w.PodName != tc.wantPod || !slices.Equal(w.Ports, tc.wantPorts) {
				t.Fatalf("got pod %q ports %v, want %q %v", w.PodName, w.Ports, tc.wantPod, tc.wantPorts)
			}
			if tc.wantPod != "" && w.Labels["app"] != tc.wantPod {
				t.Fatalf("labels %v, want the pod's", w.Labels)
			}
		})
	}
}

// A workload's port is proxied as TCP unless every service port it serves
// says HTTP: a port of unknown protocol, or one two services disagree on,
// is TCP.
func TestWorkloadAtTCPPorts(t *testing.T) {
	ep := &Endpoint{Address: netip.MustParseAddr("10.0.0.1"), Namespace: "ns", PodName: "p", ServiceAccount: "sa"}
	at := func(port uint32) *Endpoint { e := *ep; e.Port = port; return &e }
	svc := func(name string, sp ServicePort, target uint32) *ClusterService {
		return &ClusterService{Name: name, Namespace: "ns", Ports: []ServicePort{sp},
			Endpoints: map[uint32][]*Endpoint{sp.Port: {at(target)}}}
	}
	c1 := &ClusterSnapshot{ID: "c1", Services: []*ClusterService{
		svc("web", ServicePort{Name: "http", Port: 80}, 8080),
		svc("web2", ServicePort{Name: "http-alt", Port: 81}, 8080), // agrees: HTTP
		svc("api", ServicePort{Name: "grpc", Port: 70}, 7070),
		svc("api2", ServicePort{Name: "tcp", Port: 71}, 7070), // disagrees: TCP
		svc("db", ServicePort{Port: 90}, 9090),                // unknown: TCP
		svc("tls", ServicePort{Name: "x", AppProtocol: "tls", Port: 91}, 9443),
	}}
	m := mustBuild(t, BuildInput{Clusters: []*ClusterSnapshot{c1}})
	w, ok := m.WorkloadAt("c1", []netip.Addr{ep.Address}, "", "")
	if !ok || !slices.Equal(w.Ports, []uint32{7070, 8080, 9090, 9443}) || !slices.Equal(w.TCP, []uint32{7070, 9090, 9443}) {
		t.Fatalf("ports %v tcp %v (found %v), want [7070 8080 9090 9443] tcp [7070 9090 9443]", w.Ports, w.TCP, ok)
	}
}
