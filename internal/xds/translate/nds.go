package translate

import (
	"net/netip"
	"slices"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/xds/ndspb"
)

// NameTableType is the type URL of Istio's name discovery service (NDS): the
// name table an Istio agent with DNS capture (ISTIO_META_DNS_CAPTURE=true)
// asks for on its ADS stream and answers its workload's DNS queries from.
// It is not in Types: Envoy never asks for it.
const NameTableType = ndspb.TypeURL

// NameTableName is the name of a view's one NDS resource: empty. The agent
// takes the first resource of a response whatever its name, and istiod
// sends the table unnamed too; an unnamed resource is also what a
// wildcard (legacy, no names) subscription of the agent receives.
const NameTableName = ""

// NameTableRegistry is the registry every entry names. The agent reads it:
// for "Kubernetes" it answers, besides the key, the forms it derives from
// shortname and namespace (name.namespace, name.namespace.svc, and the bare
// name in the proxy's own namespace) when the key ends in its own domain.
const NameTableRegistry = "Kubernetes"

// NDS returns the name table of a sidecar in cluster c: one entry per mesh
// service hostname that has a ClusterIP in some cluster, keyed by the
// hostname, with the service's name and namespace as shortname and
// namespace and NameTableRegistry as registry. alt_hosts stays empty: the
// agent derives the short forms from shortname and namespace itself, and
// the field is deprecated there.
//
// The addresses are those of ServiceAddresses: c's own ClusterIPs when the
// service has some there — what kube-dns in c answers, what c's kube-proxy
// routes and what the sidecar's listeners and routes name — else, for a
// service that exists only in other clusters, the ClusterIPs of the first
// of them by ID. kube-dns cannot answer such a name at all; with this
// answer the application connects, the sidecar captures the connection and
// routes it on the port and Host header like any mesh request (HTTP ports),
// or on this address and port (TCP ports: LDS gives a remote-only service's
// TCP ports their chains on the same addresses).
//
// Headless services (no ClusterIP in any cluster) are left out: kube-dns
// answers a local one with its pod IPs as before, and the pod IPs of a
// remote one are not reachable directly across networks, so the agent
// forwards those names upstream as it does for any name not in the table.
func NDS(m *model.Mesh, c model.ClusterID) *ndspb.NameTable {
	nt := &ndspb.NameTable{Table: map[string]*ndspb.NameTable_NameInfo{}}
	for _, svc := range m.Services() {
		ips := ServiceAddresses(svc, c)
		if len(ips) == 0 {
			continue
		}
		nt.Table[svc.Hostname] = &ndspb.NameTable_NameInfo{
			Ips: ips, Registry: NameTableRegistry, Shortname: svc.Name, Namespace: svc.Namespace,
		}
	}
	return nt
}

// ServiceAddresses returns the addresses a client in cluster c reaches svc
// at: c's ClusterIPs of it if it has any, else those of the first other
// cluster (by ID) that has some, else none (headless everywhere). Entries
// that are not IP addresses are skipped. A cluster's ClusterIPs are never
// mixed with another's: service CIDRs of clusters overlap, so another
// cluster's address of a service c also has may be a different service in c.
func ServiceAddresses(svc *model.Service, c model.ClusterID) []string {
	if ips := validIPs(svc.ClusterIPs[c]); len(ips) > 0 {
		return ips
	}
	clusters := make([]model.ClusterID, 0, len(svc.ClusterIPs))
	for id := range svc.ClusterIPs {
		clusters = append(clusters, id)
	}
	slices.Sort(clusters)
	for _, id := range clusters {
		if ips := validIPs(svc.ClusterIPs[id]); len(ips) > 0 {
			return ips
		}
	}
	return nil
}

func validIPs(ips []string) []string {
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip); err == nil {
			out = append(out, a.String())
		}
	}
	return out
}
