package model

import "strings"

// Protocol is the application protocol of a service port, selected as Istio
// selects it (SelectProtocol). The zero value is ProtocolUnknown: neither
// appProtocol nor the port name says, so the sidecar detects HTTP on the
// first bytes and falls back to TCP.
type Protocol string

const (
	ProtocolUnknown Protocol = ""
	ProtocolHTTP    Protocol = "HTTP"
	ProtocolHTTP2   Protocol = "HTTP2"
	ProtocolGRPC    Protocol = "GRPC"
	ProtocolGRPCWeb Protocol = "GRPC-Web"
	ProtocolHTTPS   Protocol = "HTTPS"
	ProtocolTCP     Protocol = "TCP"
	ProtocolTLS     Protocol = "TLS"
	ProtocolMongo   Protocol = "Mongo"
	ProtocolMySQL   Protocol = "MySQL"
	ProtocolRedis   Protocol = "Redis"
	ProtocolUDP     Protocol = "UDP"
)

// ParseProtocol reads a protocol name as Istio's port names and appProtocol
// values spell it, case-insensitively: http, http2, https, grpc, grpc-web,
// tcp, tls, mongo, mysql, redis, udp; and h2c (HTTP/2 without TLS, which
// Horizon also accepts as a name prefix). Anything else is ProtocolUnknown.
func ParseProtocol(s string) Protocol {
	switch strings.ToLower(s) {
	case "http":
		return ProtocolHTTP
	case "http2", "h2c":
		return ProtocolHTTP2
	case "grpc":
		return ProtocolGRPC
	case "grpc-web":
		return ProtocolGRPCWeb
	case "https":
		return ProtocolHTTPS
	case "tcp":
		return ProtocolTCP
	case "tls":
		return ProtocolTLS
	case "mongo":
		return ProtocolMongo
	case "mysql":
		return ProtocolMySQL
	case "redis":
		return ProtocolRedis
	case "udp":
		return ProtocolUDP
	}
	return ProtocolUnknown
}

// SelectProtocol is a service port's protocol, in Istio's order: a UDP (or
// SCTP) port is not proxied (ProtocolUDP); else the Kubernetes appProtocol
// when it names a known protocol (also Kubernetes' own kubernetes.io/h2c,
// HTTP/2 in the clear, and kubernetes.io/ws and kubernetes.io/wss,
// WebSocket, carried as HTTP); else the port name's prefix, the part
// before the first '-' (grpc-web as a whole); else ProtocolUnknown.
func SelectProtocol(name, appProtocol, l4 string) Protocol {
	if l4 != "" && !strings.EqualFold(l4, "TCP") {
		return ProtocolUDP
	}
	if appProtocol != "" {
		if p := ParseProtocol(appProtocol); p != ProtocolUnknown {
			return p
		}
		switch strings.ToLower(appProtocol) {
		case "kubernetes.io/h2c":
			return ProtocolHTTP2
		case "kubernetes.io/ws", "kubernetes.io/wss":
			return ProtocolHTTP
		}
	}
	if len(name) >= len("grpc-web") && strings.EqualFold(name[:len("grpc-web")], "grpc-web") {
		return ProtocolGRPCWeb
	}
	prefix, _, _ := strings.Cut(name, "-")
	return ParseProtocol(prefix)
}

// IsHTTP reports whether the protocol goes through the HTTP connection
// manager: HTTP/1.1, HTTP/2 (and h2c), gRPC and gRPC-Web.
func (p Protocol) IsHTTP() bool {
	switch p {
	case ProtocolHTTP, ProtocolHTTP2, ProtocolGRPC, ProtocolGRPCWeb:
		return true
	}
	return false
}

// IsHTTP2 reports whether the upstream must be spoken to in HTTP/2.
func (p Protocol) IsHTTP2() bool { return p == ProtocolHTTP2 || p == ProtocolGRPC }

// IsTCP reports whether the protocol is proxied as opaque TCP: raw TCP, the
// TCP protocols Istio names (mongo, mysql, redis) and TLS (https, tls),
// which the sidecar passes through without terminating it.
func (p Protocol) IsTCP() bool {
	switch p {
	case ProtocolTCP, ProtocolTLS, ProtocolHTTPS, ProtocolMongo, ProtocolMySQL, ProtocolRedis:
		return true
	}
	return false
}
