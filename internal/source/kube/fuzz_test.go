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

	"github.com/horizonmesh/horizon/internal/model"
)

// fuzzBytes hands out small choices from the fuzz input, deterministically;
// an exhausted input reads as zeros.
type fuzzBytes struct{ b []byte }

func (f *fuzzBytes) byte() byte {
	if len(f.b) == 0 {
		return 0
	}
	c := f.b[0]
	f.b = f.b[1:]
	return c
}

func (f *fuzzBytes) intn(n int) int { return int(f.byte()) % n }

func pick[T any](f *fuzzBytes, from ...T) T { return from[f.intn(len(from))] }

// fuzzObjects derives a small cluster from data: a system namespace, Nodes,
// Pods, Services and EndpointSlices whose names mostly refer to each other,
// with the odd values clients and the API server let through. The zero
// choice is always the ordinary one, so an empty input is a working cluster
// (one mTLS Pod behind one Service) and every byte is a step away from it.
// text is one more free-form candidate for names, labels and addresses.
func fuzzObjects(data []byte, text string) []runtime.Object {
	f := &fuzzBytes{data}
	names := []string{"a", "b", "gw", text}
	namespaces := []string{"sample", "other", "", text}
	networks := []string{"n1", "", "n2", text}
	addrs := []string{"10.0.0.1", "10.0.0.2", "fd00::1", "10.0.0.1", "::ffff:10.0.0.1", "fe80::1%eth0", "zz", "", "1.2.3", text}
	var objs []runtime.Object

	if f.intn(4) != 3 {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: pick(f, DefaultSystemNS, "sample", text)}}
		if f.intn(3) != 2 {
			ns.Labels = map[string]string{LabelNetwork: pick(f, networks...)}
		}
		objs = append(objs, ns)
	}
	for i, n := 0, 1+f.intn(3); i < n; i++ {
		objs = append(objs, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: pick(f, "n1", "n2", text),
			Labels: map[string]string{LabelRegion: pick(f, "eu", "", text), LabelZone: pick(f, "eu-1a", ""), LabelSubzone: pick(f, "", "r1")}}})
	}
	for i, n := 0, 1+f.intn(4); i < n; i++ {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: pick(f, "p1", "p2", "p3", text), Namespace: pick(f, namespaces...),
			Labels: map[string]string{}}}
		if f.intn(3) != 2 {
			p.Labels[LabelTLSMode] = pick(f, TLSModeIstio, "disabled", text)
		}
		if f.intn(3) == 1 {
			p.Labels[LabelNetwork] = pick(f, networks...)
		}
		p.Spec.NodeName = pick(f, "n1", "", "n2", text)
		p.Spec.ServiceAccountName = pick(f, "sleep", "", text)
		objs = append(objs, p)
	}
	for i, n := 0, 1+f.intn(3); i < n; i++ {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: pick(f, names...), Namespace: pick(f, namespaces...)}}
		if f.intn(3) == 1 {
			s.Labels = map[string]string{LabelNetwork: pick(f, networks...), LabelGatewayPort: pick(f, "", "15443", "http", text)}
		}
		switch f.intn(5) {
		case 1:
			s.Spec.ClusterIP = corev1.ClusterIPNone
		case 2:
			s.Spec.Type = corev1.ServiceTypeExternalName
		case 3:
			s.Spec.ClusterIPs = []string{pick(f, "10.96.0.1", "None", "", text), pick(f, "fd00::10", "")}
		}
		for j, m := 0, (1+f.intn(4))%4; j < m; j++ {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{
				Name:     pick(f, "http", "", "grpc", text),
				Port:     pick[int32](f, 80, 443, 53, 80, 0, -1, 65535, 65536, 1<<31-1),
				Protocol: pick[corev1.Protocol](f, "", corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP),
			})
		}
		if f.intn(3) == 1 {
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: pick(f, "203.0.113.1", "", text), Hostname: pick(f, "", "gw.example.com", text)}}
		}
		if f.intn(3) == 1 {
			s.Spec.ExternalIPs = []string{pick(f, "203.0.113.2", text)}
		}
		objs = append(objs, s)
	}
	for i, n := 0, 1+f.intn(4); i < n; i++ {
		sl := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s%d", f.intn(4)), Namespace: pick(f, namespaces...)},
			AddressType: pick(f, discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN, "")}
		if f.intn(8) != 7 {
			sl.Labels = map[string]string{LabelServiceName: pick(f, names...)}
		}
		for j, m := 0, (1+f.intn(4))%4; j < m; j++ {
			var p discoveryv1.EndpointPort
			if f.intn(5) != 4 {
				p.Name = pick(f, new("http"), new(""), new("grpc"), new(text))
			}
			if f.intn(8) != 7 {
				p.Port = new(pick[int32](f, 8080, 5000, 8080, 0, -5, 65535, 65536))
			}
			sl.Ports = append(sl.Ports, p)
		}
		for j, m := 0, (1+f.intn(5))%5; j < m; j++ {
			var ep discoveryv1.Endpoint
			for k, o := 0, 1+f.intn(2); k < o; k++ {
				ep.Addresses = append(ep.Addresses, pick(f, addrs...))
			}
			switch f.intn(3) {
			case 1:
				ep.Conditions.Ready = new(true)
			case 2:
				ep.Conditions.Ready = new(false)
			}
			if f.intn(4) != 3 {
				ep.TargetRef = &corev1.ObjectReference{Kind: pick(f, "Pod", "", "VirtualMachine"),
					Name: pick(f, "p1", "p2", "p3", "missing", text), Namespace: pick(f, "", "sample", "other", text)}
			}
			if f.intn(3) == 1 {
				ep.NodeName = new(pick(f, "n1", "n2", "", text))
			}
			sl.Endpoints = append(sl.Endpoints, ep)
		}
		objs = append(objs, sl)
	}
	return objs
}

// FuzzConvert builds a Store from fuzzed objects and converts it. Invariants:
// no panic; deterministic and independent of the order objects arrived in;
// the stored objects are not modified; every endpoint has a valid, zone-less,
// unmapped address, a port in 1-65535, the cluster's ID and a service port
// the snapshot's Service has, at most once per address:port; MTLS only with a
// known Pod labelled tlsMode=istio; every diagnostic names the origin, the
// object (kind and name of an object in the store) and the field.
func FuzzConvert(f *testing.F) {
	// An empty input is the ordinary cluster: istio-system on n1, a node,
	// an mTLS pod, Service sample/a and a slice with its endpoint.
	f.Add([]byte{}, "")
	f.Add([]byte{}, "fe80::2%lo")
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 1}, "10.0.0.9")
	f.Add([]byte("\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01"), "a")
	f.Add([]byte("\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02"), "sample")
	f.Add([]byte("\xff\x07\x02\x13\x21\x33\x45\x57\x69\x7b\x8d\x9f\xb1\xc3\xd5\xe7\xf9\x0b\x1d\x2f\x41\x53\x65\x77\x89\x9b\xad\xbf"), "::ffff:10.0.0.1")
	f.Fuzz(func(t *testing.T, data []byte, text string) {
		objs := fuzzObjects(data, text)
		s := NewStore()
		for i, o := range objs {
			s.Upsert(o, fmt.Sprintf("f%d.yaml", i))
		}
		before := make([]runtime.Object, len(objs))
		for i, o := range objs {
			before[i] = o.DeepCopyObject()
		}
		snap, diags := Convert("c1", s, Options{})
		again, diags2 := Convert("c1", s, Options{})
		if !reflect.DeepEqual(snap, again) || !reflect.DeepEqual(diags, diags2) {
			t.Fatal("Convert is not deterministic")
		}
		// The same final contents (the later of two objects of one name
		// wins), stored in reverse order with the same origins, convert the
		// same.
		final := map[string]runtime.Object{}
		var keys []string
		for _, o := range objs {
			k := storeKey(o)
			if _, ok := final[k]; !ok {
				keys = append(keys, k)
			}
			final[k] = o
		}
		s2 := NewStore()
		for i := len(keys) - 1; i >= 0; i-- {
			o := final[keys[i]]
			origin, _ := s.Origin(o)
			s2.Upsert(o, origin)
		}
		if snap2, d := Convert("c1", s2, Options{}); !reflect.DeepEqual(snap, snap2) || !reflect.DeepEqual(diags, d) {
			t.Fatal("Convert depends on the order objects were stored in")
		}
		for i := range objs {
			if !reflect.DeepEqual(before[i], objs[i]) {
				t.Fatalf("Convert modified stored object %s", storeKey(objs[i]))
			}
		}
		checkSnapshot(t, snap, final)
		for _, d := range diags {
			if !strings.HasPrefix(d.File, "f") || !strings.HasSuffix(d.File, ".yaml") || d.Field == "" || d.Message == "" {
				t.Fatalf("diagnostic without origin, field or message: %+v", d)
			}
			if _, ok := final[d.Object]; !ok {
				t.Fatalf("diagnostic names no stored object: %q (%s)", d.Object, d)
			}
		}
	})
}

// storeKey is how a diagnostic names an object: "Kind ns/name" or "Kind name".
func storeKey(o runtime.Object) string {
	switch o := o.(type) {
	case *corev1.Namespace:
		return objName("Namespace", "", o.Name)
	case *corev1.Node:
		return objName("Node", "", o.Name)
	case *corev1.Pod:
		return objName("Pod", o.Namespace, o.Name)
	case *corev1.Service:
		return objName("Service", o.Namespace, o.Name)
	case *discoveryv1.EndpointSlice:
		return objName("EndpointSlice", o.Namespace, o.Name)
	}
	return fmt.Sprintf("%T", o)
}

func checkSnapshot(t *testing.T, snap *model.ClusterSnapshot, objs map[string]runtime.Object) {
	t.Helper()
	if snap.ID != "c1" {
		t.Fatalf("snapshot ID %q", snap.ID)
	}
	for _, svc := range snap.Services {
		if _, ok := objs[objName("Service", svc.Namespace, svc.Name)]; !ok {
			t.Fatalf("service %s/%s is not in the store", svc.Namespace, svc.Name)
		}
		if len(svc.Ports) == 0 {
			t.Fatalf("service %s/%s without ports", svc.Namespace, svc.Name)
		}
		names := map[string]bool{}
		numbers := map[uint32]bool{}
		for _, p := range svc.Ports {
			if p.Port < 1 || p.Port > 65535 || names[p.Name] {
				t.Fatalf("service %s/%s: bad or duplicate port %+v", svc.Namespace, svc.Name, p)
			}
			names[p.Name], numbers[p.Port] = true, true
		}
		for port, eps := range svc.Endpoints {
			if !numbers[port] {
				t.Fatalf("service %s/%s: endpoints for port %d it does not have", svc.Namespace, svc.Name, port)
			}
			seen := map[string]bool{}
			for i, e := range eps {
				a := e.Address
				if !a.IsValid() || a.Zone() != "" || a.Is4In6() || e.Port < 1 || e.Port > 65535 || e.Cluster != "c1" {
					t.Fatalf("service %s/%s port %d: invalid endpoint %+v", svc.Namespace, svc.Name, port, e)
				}
				k := fmt.Sprintf("%s|%d", a, e.Port)
				if seen[k] {
					t.Fatalf("service %s/%s port %d: endpoint %s twice", svc.Namespace, svc.Name, port, k)
				}
				seen[k] = true
				if i > 0 {
					p := eps[i-1]
					if c := p.Address.Compare(a); c > 0 || (c == 0 && p.Port > e.Port) {
						t.Fatalf("endpoints not sorted: %s:%d before %s:%d", p.Address, p.Port, a, e.Port)
					}
				}
				if e.Network != "" {
					t.Fatalf("Convert set Network (Build's job): %+v", e)
				}
				if e.MTLS {
					p, ok := objs[objName("Pod", e.Namespace, e.PodName)].(*corev1.Pod)
					if !ok || p.Labels[LabelTLSMode] != TLSModeIstio {
						t.Fatalf("endpoint %s marked mTLS without an istio-mode Pod", k)
					}
				}
			}
		}
	}
}
