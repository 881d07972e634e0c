package model

import "testing"

func TestSelectProtocol(t *testing.T) {
	for _, tc := range []struct {
		name, app, l4 string
		want          Protocol
	}{
		{"http", "", "TCP", ProtocolHTTP},
		{"http-web", "", "TCP", ProtocolHTTP},
		{"HTTP-web", "", "", ProtocolHTTP},
		{"http2", "", "TCP", ProtocolHTTP2},
		{"h2c-x", "", "TCP", ProtocolHTTP2},
		{"https", "", "TCP", ProtocolHTTPS},
		{"grpc", "", "TCP", ProtocolGRPC},
		{"grpc-health", "", "TCP", ProtocolGRPC},
		{"grpc-web", "", "TCP", ProtocolGRPCWeb},
		{"grpc-web-ui", "", "TCP", ProtocolGRPCWeb},
		{"tcp-echo", "", "TCP", ProtocolTCP},
		{"tls", "", "TCP", ProtocolTLS},
		{"mongo", "", "TCP", ProtocolMongo},
		{"mysql-main", "", "TCP", ProtocolMySQL},
		{"redis", "", "TCP", ProtocolRedis},
		{"", "", "TCP", ProtocolUnknown},
		{"web", "", "TCP", ProtocolUnknown},
		{"httpx", "", "TCP", ProtocolUnknown},
		{"web-http", "", "TCP", ProtocolUnknown},
		// appProtocol wins over the name.
		{"tcp", "http", "TCP", ProtocolHTTP},
		{"http", "kubernetes.io/h2c", "TCP", ProtocolHTTP2},
		{"tcp", "kubernetes.io/ws", "TCP", ProtocolHTTP},
		{"", "kubernetes.io/wss", "TCP", ProtocolHTTP},
		{"", "GRPC", "TCP", ProtocolGRPC},
		// An appProtocol nobody knows: the name decides.
		{"grpc", "example.com/custom", "TCP", ProtocolGRPC},
		{"", "example.com/custom", "TCP", ProtocolUnknown},
		// Not TCP: not proxied, whatever the name says.
		{"http", "http", "UDP", ProtocolUDP},
		{"dns", "", "SCTP", ProtocolUDP},
	} {
		if got := SelectProtocol(tc.name, tc.app, tc.l4); got != tc.want {
			t.Errorf("SelectProtocol(%q, %q, %q) = %q, want %q", tc.name, tc.app, tc.l4, got, tc.want)
		}
	}
	for p, want := range map[Protocol][3]bool{ // IsHTTP, IsHTTP2, IsTCP
		ProtocolHTTP: {true, false, false}, ProtocolHTTP2: {true, true, false}, ProtocolGRPC: {true, true, false},
		ProtocolGRPCWeb: {true, false, false}, ProtocolHTTPS: {false, false, true}, ProtocolTLS: {false, false, true},
		ProtocolTCP: {false, false, true}, ProtocolRedis: {false, false, true}, ProtocolUnknown: {false, false, false},
		ProtocolUDP: {false, false, false},
	} {
		if got := [3]bool{p.IsHTTP(), p.IsHTTP2(), p.IsTCP()}; got != want {
			t.Errorf("%q: IsHTTP, IsHTTP2, IsTCP = %v, want %v", p, got, want)
		}
	}
}
