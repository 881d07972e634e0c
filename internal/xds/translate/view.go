package translate

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/horizonmesh/horizon/internal/model"
)

// Role is what a proxy is: a workload's sidecar or a network gateway.
type Role uint8

const (
	RoleSidecar Role = iota
	RoleRouter
)

func (r Role) String() string {
	if r == RoleRouter {
		return "router"
	}
	return "sidecar"
}

// View is the typed key of a set of proxies that receive identical
// resources of one type: a proxy is classified into it once per stream and
// type, and builds read its fields directly. Which fields are set depends
// on the type (see the control plane's Classify):
//   - sidecar EDS: Network and, when the mesh knows the proxy's workload
//     (Located), its Cluster and Locality (its Pod's Node's): services with
//     a locality policy order their endpoints by where the client stands;
//     the others are built once per network and shared (see
//     docs/architecture.md, "Locality failover");
//   - sidecar CDS and LDS: Cluster and Inbound (the ports its workload
//     serves); sidecar RDS: Cluster (routes name its ClusterIPs) and
//     Namespace (the bare names of its services), empty unless the mesh
//     verified it (ProxyOf);
//   - sidecar NDS (NameTableType): Cluster;
//   - router EDS: Network; router CDS and LDS: Network and Labels (which
//     Gateways select it); routers get no NDS.
//
// It is comparable, so it keys maps directly.
type View struct {
	Role    Role
	Network string
	Cluster model.ClusterID
	Inbound Ports
	Labels  Labels
	// Namespace is a sidecar RDS view's: the verified namespace of its
	// proxies, whose services are also routed by their bare names.
	Namespace string
	// Locality and Located: see sidecar EDS above.
	Locality model.Locality
	Located  bool
}

// String is the view as /debug/syncz and logs show it.
func (v View) String() string {
	switch {
	case v.Role == RoleRouter:
		return "router;network=" + v.Network + labelsPart(v)
	case v.Located:
		return "network=" + v.Network + ";cluster=" + string(v.Cluster) + ";locality=" + v.Locality.String()
	case v.Cluster == "" && v.Inbound == "":
		// An EDS view (or the zero view of a sidecar on no cluster).
		return "network=" + v.Network
	}
	s := "sidecar;cluster=" + string(v.Cluster) + ";inbound=" + string(v.Inbound)
	if v.Namespace != "" {
		s += ";namespace=" + v.Namespace
	}
	return s
}

func labelsPart(v View) string {
	if v.Labels == "" {
		return ""
	}
	return ";labels=" + string(v.Labels)
}

// Proxy is what decides a proxy's views.
type Proxy struct {
	Role    Role
	Network string
	Cluster model.ClusterID
	// Inbound are, for a sidecar, the ports its workload serves
	// (model.Mesh.WorkloadAt), each with its protocol class and mTLS mode.
	Inbound []WorkloadPort
	Labels  map[string]string // routers: its workload labels
	// Namespace is a sidecar's namespace as the mesh verified it (ProxyOf):
	// its routes carry the bare names of that namespace's services.
	Namespace string
	// Located reports a sidecar whose workload the mesh knows (an
	// endpoint's or, for one no Service selects, its Pod's); Locality is
	// then its workload's.
	Located  bool
	Locality model.Locality
}

// Claim is what a proxy states about itself (its node), with the identity
// its connection proved, if any.
type Claim struct {
	Router  bool
	Network string
	Cluster model.ClusterID
	IPs     []netip.Addr      // the node's INSTANCE_IPS
	Labels  map[string]string // the node's LABELS
	// Namespace and ServiceAccount, when set, were proved by the
	// connection (a client certificate or a reviewed token).
	Namespace, ServiceAccount string
}

// ProxyOf turns what a proxy claims into what decides its views, from
// what the mesh can verify: a sidecar's inbound ports and a router's labels
// are those of the workload the mesh has at the proxy's addresses in its
// cluster (running as its proved identity, when it has one), never the
// claim itself — so however a client combines addresses and labels, it can
// only reach the views of workloads that exist. A sidecar's namespace is
// its proved identity's, else that of the workload at its addresses, and
// only one the mesh has services in (Mesh.HasNamespace): any other would
// name no bare service name, so it never makes a view of its own. The
// workload is an endpoint's, else the Pod's at those addresses (a Pod no
// Service selects, or not ready yet: located by its Node, serving no
// port; model.Mesh.WorkloadAt). A router whose workload the mesh does not
// know (a gateway outside the clusters' Pods, or whose Pod it has not
// seen yet) keeps the labels it claims; claimed then reports that its
// view rests on a claim, which the caller must bound per client. The live control plane and
// `horizon translate` classify with it alike.
func ProxyOf(m *model.Mesh, c Claim) (p Proxy, claimed bool) {
	p = Proxy{Network: c.Network, Cluster: c.Cluster}
	var w model.Workload
	found := false
	if m != nil {
		w, found = m.WorkloadAt(c.Cluster, c.IPs, c.Namespace, c.ServiceAccount)
	}
	if c.Router {
		p.Role = RoleRouter
		switch {
		case found:
			p.Labels = w.Labels
		default:
			p.Labels, claimed = c.Labels, len(c.Labels) > 0
		}
		return p, claimed
	}
	if found {
		p.Inbound = make([]WorkloadPort, 0, len(w.Ports))
		for _, port := range w.Ports {
			p.Inbound = append(p.Inbound, WorkloadPort{Port: port, TCP: slices.Contains(w.TCP, port), Mode: w.Modes[port]})
		}
		p.Located, p.Locality = true, w.Locality
	}
	ns := c.Namespace // proved by the connection
	if ns == "" && found {
		ns = w.Namespace
	}
	if m != nil && m.HasNamespace(ns) {
		p.Namespace = ns
	}
	return p, false
}

// ViewOf returns p's view of typeURL: ok is false for a type Horizon does
// not serve to p's role. The live control plane and `horizon translate`
// classify with it alike.
func ViewOf(typeURL string, p Proxy) (View, bool) {
	if p.Role == RoleRouter {
		switch typeURL {
		case resource.EndpointType:
			return View{Role: RoleRouter, Network: p.Network}, true
		case resource.ClusterType, resource.ListenerType:
			return View{Role: RoleRouter, Network: p.Network, Labels: LabelsOf(p.Labels)}, true
		}
		// Nor NDS: a gateway forwards on SNI to endpoints and never
		// resolves a service name; its agent's request stays unanswered
		// (and the stream up), as for any type Horizon does not serve.
		return View{}, false
	}
	switch typeURL {
	case resource.EndpointType:
		if p.Located {
			return View{Network: p.Network, Cluster: p.Cluster, Locality: p.Locality, Located: true}, true
		}
		return View{Network: p.Network}, true
	case resource.ClusterType, resource.ListenerType:
		return View{Cluster: p.Cluster, Inbound: PortsOf(p.Inbound)}, true
	case resource.RouteType:
		return View{Cluster: p.Cluster, Namespace: p.Namespace}, true
	case NameTableType:
		// The name table answers each service with the ClusterIPs of the
		// proxy's cluster (another cluster's for a service it lacks, see
		// NDS), so it differs between clusters and nothing else: not by
		// namespace (the agent derives the namespace-relative short names
		// from its own namespace), nor network or workload (headless
		// services, whose answers would depend on the network, are left
		// out). One view per cluster is the coarsest correct key.
		return View{Cluster: p.Cluster}, true
	}
	return View{}, false
}

// WorkloadPort is one port a sidecar's workload serves, as its inbound
// listener takes it.
type WorkloadPort struct {
	Port uint32
	// TCP: proxied as opaque TCP (model.Workload.TCP), else through the
	// HTTP connection manager.
	TCP bool
	// Mode is the port's mTLS mode (model.Workload.Modes); MTLSUnset is
	// taken as model.DefaultMTLSMode.
	Mode model.MTLSMode
}

// Ports is a set of inbound ports with their protocol and mTLS mode in one
// comparable value: sorted, comma-separated port/protocol/mode triples, the
// protocol "http" or "tcp", the mode "strict", "permissive" or "disable"
// ("5000/http/strict,9000/tcp/permissive"). The views stay bounded: one per
// distinct set the mesh resolves for a real workload (ProxyOf), never a
// proxy's claim. Make one with PortsOf.
type Ports string

// PortsOf returns the set of ps (any order; of a port listed twice, the
// first counts).
func PortsOf(ps []WorkloadPort) Ports {
	s := slices.Clone(ps)
	slices.SortStableFunc(s, func(a, b WorkloadPort) int { return cmp.Compare(a.Port, b.Port) })
	s = slices.CompactFunc(s, func(a, b WorkloadPort) bool { return a.Port == b.Port })
	var b strings.Builder
	for i, p := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(p.Port), 10))
		if p.TCP {
			b.WriteString("/tcp/")
		} else {
			b.WriteString("/http/")
		}
		mode := p.Mode
		if mode == model.MTLSUnset {
			mode = model.DefaultMTLSMode
		}
		b.WriteString(strings.ToLower(string(mode)))
	}
	return Ports(b.String())
}

// List returns the ports, sorted.
func (p Ports) List() []WorkloadPort {
	if p == "" {
		return nil
	}
	parts := strings.Split(string(p), ",")
	out := make([]WorkloadPort, 0, len(parts))
	for _, s := range parts {
		num, rest, _ := strings.Cut(s, "/")
		proto, mode, _ := strings.Cut(rest, "/")
		n, _ := strconv.ParseUint(num, 10, 32) // PortsOf wrote it
		out = append(out, WorkloadPort{Port: uint32(n), TCP: proto == "tcp", Mode: model.MTLSMode(strings.ToUpper(mode))})
	}
	return out
}

// Labels is a set of workload labels in one comparable value: sorted
// key=value pairs, comma-separated (label keys and values contain neither).
// Make one with LabelsOf.
type Labels string

// LabelsOf returns the set of labels.
func LabelsOf(labels map[string]string) Labels {
	kvs := make([]string, 0, len(labels))
	for k, v := range labels {
		kvs = append(kvs, k+"="+v)
	}
	slices.Sort(kvs)
	return Labels(strings.Join(kvs, ","))
}

// Map returns the labels.
func (l Labels) Map() map[string]string {
	out := map[string]string{}
	if l == "" {
		return out
	}
	for _, kv := range strings.Split(string(l), ",") {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = v
	}
	return out
}
