package model

import (
	"net/netip"
	"reflect"
	"testing"
)

// Every field of Endpoint takes part in Equal: a field added later and
// forgotten there would let a push reuse a stale load assignment.
func TestEndpointEqualSeesEveryField(t *testing.T) {
	base := Endpoint{Address: netip.MustParseAddr("10.0.0.1"), Port: 80, Weight: 1, Cluster: "c1", Network: "n1", PodNetwork: "n1",
		Locality: Locality{Region: "r", Zone: "z", Subzone: "s"}, Namespace: "ns", PodName: "p", ServiceAccount: "sa",
		Labels: map[string]string{"app": "a"}, MTLS: true}
	if !base.Equal(&base) {
		t.Fatal("an endpoint differs from itself")
	}
	copied := base
	copied.Labels = map[string]string{"app": "a"}
	if !base.Equal(&copied) {
		t.Error("equal endpoints with distinct label maps differ")
	}
	typ := reflect.TypeOf(base)
	for i := range typ.NumField() {
		other := base
		other.Labels = map[string]string{"app": "a"}
		f := reflect.ValueOf(&other).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Uint32:
			f.SetUint(f.Uint() + 1)
		case reflect.Bool:
			f.SetBool(!f.Bool())
		case reflect.Map:
			f.Set(reflect.ValueOf(map[string]string{"app": "b"}))
		case reflect.Struct:
			switch v := f.Addr().Interface().(type) {
			case *netip.Addr:
				*v = netip.MustParseAddr("10.0.0.2")
			case *Locality:
				v.Subzone += "x"
			default:
				t.Fatalf("field %s: teach this test to change a %s", typ.Field(i).Name, f.Type())
			}
		default:
			t.Fatalf("field %s: teach this test to change a %s", typ.Field(i).Name, f.Type())
		}
		if base.Equal(&other) {
			t.Errorf("Equal ignores field %s", typ.Field(i).Name)
		}
	}
}

func TestSameEndpoints(t *testing.T) {
	ep := func(a string) *Endpoint { return &Endpoint{Address: netip.MustParseAddr(a), Port: 8080} }
	svc := func(ports []ServicePort, eps map[uint32][]*Endpoint) *Service {
		return &Service{Hostname: "h", Ports: ports, Endpoints: eps}
	}
	p80 := []ServicePort{{Name: "http", Port: 80}}
	a := svc(p80, map[uint32][]*Endpoint{80: {ep("10.0.0.1"), ep("10.0.0.2")}})
	for _, c := range []struct {
		name string
		b    *Service
		same bool
	}{
		{"equal copies", svc(p80, map[uint32][]*Endpoint{80: {ep("10.0.0.1"), ep("10.0.0.2")}}), true},
		{"an endpoint changed", svc(p80, map[uint32][]*Endpoint{80: {ep("10.0.0.1"), ep("10.0.0.3")}}), false},
		{"an endpoint fewer", svc(p80, map[uint32][]*Endpoint{80: {ep("10.0.0.1")}}), false},
		{"another port", svc([]ServicePort{{Name: "http", Port: 81}}, map[uint32][]*Endpoint{80: {ep("10.0.0.1"), ep("10.0.0.2")}}), false},
		{"endpoints under another port", svc(p80, map[uint32][]*Endpoint{81: {ep("10.0.0.1"), ep("10.0.0.2")}}), false},
		{"gone", nil, false},
	} {
		if got := SameEndpoints(a, c.b); got != c.same {
			t.Errorf("%s: SameEndpoints = %v", c.name, got)
		}
	}
}

func TestSameRouting(t *testing.T) {
	gw := func(addr string) Gateway {
		return Gateway{Network: "n2", Cluster: "c2", Address: netip.MustParseAddr(addr), Port: 15443}
	}
	m1 := &Mesh{gateways: []Gateway{gw("203.0.113.1")}}
	if !SameRouting(m1, &Mesh{gateways: []Gateway{gw("203.0.113.1")}}) {
		t.Error("the same gateways route differently")
	}
	if SameRouting(m1, &Mesh{gateways: []Gateway{gw("203.0.113.2")}}) || SameRouting(m1, &Mesh{}) || SameRouting(nil, m1) {
		t.Error("different gateways (or no previous mesh) route the same")
	}
}
