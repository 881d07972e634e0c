package model

import "testing"

func TestGatewayHostMatches(t *testing.T) {
	tests := []struct {
		hosts   []string
		ns      string
		host    string
		matches bool
	}{
		{[]string{"*"}, "sample", "helloworld.sample.svc.cluster.local", true},
		{[]string{"*.svc.cluster.local"}, "sample", "helloworld.sample.svc.cluster.local", true},
		{[]string{"*.example.com"}, "sample", "helloworld.sample.svc.cluster.local", false},
		{[]string{"sample/*"}, "sample", "helloworld.sample.svc.cluster.local", true},
		{[]string{"other/*"}, "sample", "helloworld.sample.svc.cluster.local", false},
		{[]string{"./*"}, "gw-ns", "a.gw-ns.svc.cluster.local", true},
		{[]string{"*/helloworld.sample.svc.cluster.local"}, "sample", "helloworld.sample.svc.cluster.local", true},
		{nil, "sample", "x", false},
	}
	for _, tt := range tests {
		s := GatewayServer{Hosts: tt.hosts}
		if got := s.HostMatches("gw-ns", tt.ns, tt.host); got != tt.matches {
			t.Errorf("%v admits %s/%s = %v, want %v", tt.hosts, tt.ns, tt.host, got, tt.matches)
		}
	}
}

func TestGatewaySelects(t *testing.T) {
	g := IstioGateway{Selector: map[string]string{"istio": "ingressgateway"}}
	if !g.Selects(map[string]string{"istio": "ingressgateway", "app": "x"}) || g.Selects(map[string]string{"istio": "eastwest"}) {
		t.Error("selector")
	}
	if (&IstioGateway{}).Selects(map[string]string{"a": "b"}) {
		t.Error("an empty selector must select nothing")
	}
}
