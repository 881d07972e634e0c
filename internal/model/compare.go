package model

import (
	"maps"
	"slices"
)

// SameRouting reports whether a and b send endpoints across networks the
// same way: the same gateways, hence the same scale factor. Together with
// SameEndpoints it tells a push that a service's load assignments are
// those it already built.
func SameRouting(a, b *Mesh) bool {
	return a != nil && b != nil && slices.Equal(a.gateways, b.gateways)
}

// SameEndpoints reports whether a and b (one hostname in two meshes) have
// the same ports and, port by port, the same endpoints in the same order.
func SameEndpoints(a, b *Service) bool {
	if a == b {
		return true // the same Service: a Build reused it
	}
	if a == nil || b == nil {
		return false
	}
	if a.Hostname != b.Hostname || !slices.Equal(a.Ports, b.Ports) || len(a.Endpoints) != len(b.Endpoints) {
		return false
	}
	for port, ea := range a.Endpoints {
		eb, ok := b.Endpoints[port]
		if !ok || !slices.EqualFunc(ea, eb, (*Endpoint).Equal) {
			return false
		}
	}
	return true
}

// Equal reports whether e and o are the same endpoint in every field.
func (e *Endpoint) Equal(o *Endpoint) bool {
	if e == o {
		return true
	}
	if e == nil || o == nil {
		return false
	}
	return e.Address == o.Address && e.Port == o.Port && e.Weight == o.Weight && e.Cluster == o.Cluster &&
		e.Network == o.Network && e.PodNetwork == o.PodNetwork && e.Locality == o.Locality &&
		e.Namespace == o.Namespace && e.PodName == o.PodName && e.ServiceAccount == o.ServiceAccount &&
		e.MTLS == o.MTLS && maps.Equal(e.Labels, o.Labels)
}
