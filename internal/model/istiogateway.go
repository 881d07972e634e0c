package model

import "strings"

// IstioGateway is an Istio networking Gateway resource: it configures the
// gateway proxies its selector matches, in every cluster.
type IstioGateway struct {
	Name      string
	Namespace string
	Selector  map[string]string
	Servers   []GatewayServer
}

// GatewayServer is one server of a Gateway.
type GatewayServer struct {
	Port     uint32
	PortName string
	Protocol string // TLS, HTTPS, TCP, HTTP...
	// TLSMode is the server's tls.mode; AUTO_PASSTHROUGH routes mesh mTLS by
	// SNI without terminating it.
	TLSMode string
	// Hosts are "ns/host" or "host" patterns ("*" and "*.suffix" allowed).
	Hosts []string
}

// TLSModeAutoPassthrough is the cross-network gateway mode.
const TLSModeAutoPassthrough = "AUTO_PASSTHROUGH"

// Selects reports whether the gateway's selector matches workload labels.
func (g *IstioGateway) Selects(labels map[string]string) bool {
	if len(g.Selector) == 0 {
		return false // an empty selector would capture every proxy: never
	}
	for k, v := range g.Selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// HostMatches reports whether a server's hosts admit a service hostname in
// a namespace: "*", "*.suffix", an exact host, each optionally prefixed with
// "namespace/" ("*/" or "./" meaning any or the Gateway's own).
func (s *GatewayServer) HostMatches(gatewayNS, serviceNS, host string) bool {
	for _, h := range s.Hosts {
		ns, pattern := "*", h
		if i := strings.IndexByte(h, '/'); i >= 0 {
			ns, pattern = h[:i], h[i+1:]
		}
		if ns == "." {
			ns = gatewayNS
		}
		if ns != "*" && ns != serviceNS {
			continue
		}
		switch {
		case pattern == "*", pattern == host:
			return true
		case len(pattern) > 1 && pattern[0] == '*' && len(host) >= len(pattern)-1 && host[len(host)-(len(pattern)-1):] == pattern[1:]:
			return true
		}
	}
	return false
}
