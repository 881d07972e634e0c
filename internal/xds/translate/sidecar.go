package translate

import (
	"fmt"
	"sort"

	"github.com/horizonmesh/horizon/internal/model"
)

// Names shared by the generated config and the agent's bootstrap.
const (
	// SDSCluster is the bootstrap's static cluster reaching the agent's SDS
	// socket; SecretDefault and SecretRootCA are the SDS resource names.
	SDSCluster    = "sds-grpc"
	SecretDefault = "default"
	SecretRootCA  = "ROOTCA"
	// PassthroughCluster forwards traffic to destinations outside the mesh
	// to where it was going.
	PassthroughCluster = "PassthroughCluster"
	// BlackHoleCluster has no endpoints: with REGISTRY_ONLY, traffic to
	// destinations outside the mesh goes there and fails.
	BlackHoleCluster = "BlackHoleCluster"
	// OutboundPort and InboundPort are where the agent's iptables rules send
	// captured traffic.
	OutboundPort = 15001
	InboundPort  = 15006
	// DefaultTrustDomain is the SPIFFE trust domain unless configured.
	DefaultTrustDomain = "cluster.local"
)

// MeshALPN is the ALPN list mesh mTLS connections offer; gateways match on it
// too (one list, used on both sides).
var MeshALPN = []string{"istio", "istio-peer-exchange", "istio-http/1.0", "istio-http/1.1", "istio-h2"}

// Options are translation settings that are not part of the mesh model.
type Options struct {
	TrustDomain string
	// OutboundTrafficPolicy is Istio's meshConfig.outboundTrafficPolicy.mode:
	// AllowAny (the default, also when empty) sends what a sidecar captures
	// for a destination the mesh does not know (an HTTP host no route names,
	// a TCP address no chain matches) to where it was going; RegistryOnly
	// sends it to BlackHoleCluster.
	OutboundTrafficPolicy string
}

// Outbound traffic policies (Options.OutboundTrafficPolicy).
const (
	AllowAny     = "ALLOW_ANY"
	RegistryOnly = "REGISTRY_ONLY"
)

// ValidateOutboundTrafficPolicy accepts AllowAny, RegistryOnly and empty.
func ValidateOutboundTrafficPolicy(p string) error {
	switch p {
	case "", AllowAny, RegistryOnly:
		return nil
	}
	return fmt.Errorf("%q is neither %s nor %s", p, AllowAny, RegistryOnly)
}

func (o Options) registryOnly() bool { return o.OutboundTrafficPolicy == RegistryOnly }

func (o Options) trustDomain() string {
	if o.TrustDomain == "" {
		return DefaultTrustDomain
	}
	return o.TrustDomain
}

// SpiffeIDs are the identities of the workloads behind a service port.
func SpiffeIDs(svc *model.Service, port uint32, opts Options) []string {
	return spiffeIDs(svc, port, opts.trustDomain())
}

// spiffeIDs are the identities of the mTLS-capable workloads behind a
// service port: what a client checks the server's certificate against.
func spiffeIDs(svc *model.Service, port uint32, trustDomain string) []string {
	set := map[string]bool{}
	for _, e := range svc.Endpoints[port] {
		if e.MTLS && e.Namespace != "" && e.ServiceAccount != "" {
			set["spiffe://"+trustDomain+"/ns/"+e.Namespace+"/sa/"+e.ServiceAccount] = true
		}
	}
	out := make([]string, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}
