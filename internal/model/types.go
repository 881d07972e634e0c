// Package model holds Horizon's view of the mesh: services, their endpoints in
// every cluster, networks and the gateways between them.
//
// It deliberately imports neither k8s.io nor go-control-plane: sources convert
// into these types, and the xDS translators read from them.
package model

import (
	"fmt"
	"net/netip"
)

// ClusterID names a Kubernetes cluster (a registry). It uses the character set
// of Secret data keys, so the walkthrough's `remote_kubecfg` is a valid ID.
type ClusterID string

// Locality is where an endpoint runs, from its Node's topology labels.
type Locality struct {
	Region  string
	Zone    string
	Subzone string
}

// String renders the locality as region/zone/subzone ("" when unknown).
func (l Locality) String() string {
	if l == (Locality{}) {
		return ""
	}
	return l.Region + "/" + l.Zone + "/" + l.Subzone
}

// Less orders localities by region, zone, subzone.
func (l Locality) Less(o Locality) bool {
	if l.Region != o.Region {
		return l.Region < o.Region
	}
	if l.Zone != o.Zone {
		return l.Zone < o.Zone
	}
	return l.Subzone < o.Subzone
}

// ServicePort is one port a Service exposes.
type ServicePort struct {
	Name     string
	Port     uint32
	Protocol string // TCP, UDP, SCTP as Kubernetes spells it
	// AppProtocol is the Kubernetes appProtocol, if any.
	AppProtocol string
}

// Selected is the port's application protocol (SelectProtocol).
func (p ServicePort) Selected() Protocol { return SelectProtocol(p.Name, p.AppProtocol, p.Protocol) }

// Endpoint is one address:port serving one service port.
type Endpoint struct {
	Address netip.Addr
	// Port is the port the workload listens on (the EndpointSlice port).
	Port uint32
	// Weight is the endpoint's own load-balancing weight; 0 means 1.
	Weight  uint32
	Cluster ClusterID
	// Network is the resolved network; set by Build, never by a source.
	Network string
	// PodNetwork is the Pod's topology.istio.io/network label, if any.
	PodNetwork string
	Locality   Locality
	// Pod identity; empty when the endpoint has no (known) Pod.
	Namespace      string
	PodName        string
	ServiceAccount string
	Labels         map[string]string
	// MTLS reports whether the workload accepts Istio mutual TLS on this
	// port: a source sets it from the Pod label
	// security.istio.io/tlsMode=istio; Build clears it where the
	// PeerAuthentications resolve the workload port to DISABLE, so every
	// consumer (EDS metadata, gateways, SPIFFE SANs) reads one truth.
	MTLS bool
}

// EffectiveWeight is the endpoint's weight with the default applied.
func (e *Endpoint) EffectiveWeight() uint32 {
	if e.Weight == 0 {
		return 1
	}
	return e.Weight
}

// ClusterService is a Service as one cluster sees it.
type ClusterService struct {
	Name      string
	Namespace string
	Labels    map[string]string
	// ClusterIPs as the Service spec lists them ("None" is left out).
	ClusterIPs []string
	// Headless: the spec says clusterIP None (a StatefulSet's governing
	// service): clients address its pods by their own IPs.
	Headless bool
	Ports    []ServicePort
	// Endpoints by service port number, ready ones only, deduplicated.
	Endpoints map[uint32][]*Endpoint
	// LoadBalancer holds status.loadBalancer.ingress entries: IPs or hostnames.
	LoadBalancer []string
	// ExternalIPs holds spec.externalIPs.
	ExternalIPs []string
}

// ClusterSnapshot is everything one cluster contributes to the mesh.
type ClusterSnapshot struct {
	ID ClusterID
	// SystemNamespaceNetwork is the topology.istio.io/network label of the
	// cluster's system namespace (istio-system by default), if any.
	SystemNamespaceNetwork string
	Services               []*ClusterService
	// Pods are the cluster's Pods that run a workload at their own
	// addresses (nil: none known), for WorkloadAt to find a proxy whose
	// Pod no Service selects. The table is shared, never modified.
	Pods *PodTable
}

// MeshNetworks is the validated meshNetworks configuration.
type MeshNetworks struct {
	// Networks sorted by name.
	Networks []*NetworkConfig
}

// NetworkConfig describes one network: which endpoints belong to it and how
// other networks reach it.
type NetworkConfig struct {
	Name string
	// Registries are the clusters whose endpoints are on this network.
	Registries []ClusterID
	// CIDRs are address ranges whose endpoints are on this network.
	CIDRs    []netip.Prefix
	Gateways []GatewaySpec
}

// GatewaySpec is a meshNetworks gateway entry: exactly one of Address and
// RegistryServiceName is set.
type GatewaySpec struct {
	Address             string // IP or DNS name
	RegistryServiceName string // FQDN of a Service in the network's registries
	Port                uint32
}

// Gateway is a resolved network gateway: an IP and port that reaches the
// mTLS-capable endpoints of its network (and, when Cluster is set, of that
// cluster in particular).
type Gateway struct {
	Network string
	// Cluster is the cluster the gateway belongs to; empty for meshNetworks
	// address entries, which belong to no cluster.
	Cluster ClusterID
	Address netip.Addr
	Port    uint32
	// Found says how the gateway was found, in parts joined by ", ":
	// "meshNetworks address", "meshNetworks registryServiceName, NAME,
	// LoadBalancer status", "label topology.istio.io/network, Service
	// NS/NAME, externalIPs"; ", DNS NAME" ends it when a name was resolved
	// to the address.
	Found string
}

func (g Gateway) String() string {
	return fmt.Sprintf("%s (network %q, cluster %q)", netip.AddrPortFrom(g.Address, uint16(g.Port)), g.Network, g.Cluster)
}
