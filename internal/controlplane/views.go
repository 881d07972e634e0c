// Views: which view a proxy belongs to, and building and updating them.

package controlplane

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/xds/server"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// Classify maps a proxy to its view of a type. EDS depends on the proxy's
// network and, when the mesh knows its workload, that workload's cluster and
// locality. Listeners and clusters are shared by every sidecar of a
// cluster whose workload serves the same ports (its inbound side); routes
// by every sidecar of a cluster and namespace (they name the cluster's
// ClusterIPs and the namespace's bare service names; the namespace as the
// mesh verifies it, translate.ProxyOf); Istio's NDS name table by every
// sidecar of a cluster. Routers get no NDS (translate.ViewOf).
//
// A proxy must stand somewhere the mesh knows: its network one the mesh
// names (meshNetworks, network labels, gateways) and its cluster one that
// joined. Otherwise it is refused with FailedPrecondition (it retries, and
// is served once its network or cluster appears). This is what bounds the
// views: without it every distinct NETWORK a client invents would be a
// view holding a copy of the whole mesh's endpoints.
func (cp *ControlPlane) Classify(typeURL string, p server.Proxy) (translate.View, error) {
	v, _, err := cp.classify(typeURL, p)
	return v, err
}

// classify is Classify for the ViewCache, which also learns whether the
// view's key rests on what the proxy claims (translate.ProxyOf): a
// sidecar's inbound ports and a router's labels are read from the
// workload the mesh has at the proxy's addresses — on the TLS port, only
// one running as the stream's proved identity.
func (cp *ControlPlane) classify(typeURL string, p server.Proxy) (translate.View, bool, error) {
	if err := cp.knows(p); err != nil {
		return translate.View{}, false, err
	}
	var tp translate.Proxy
	claimed := false
	switch {
	case typeURL == resource.ClusterType || typeURL == resource.ListenerType || typeURL == resource.RouteType ||
		(typeURL == resource.EndpointType && !p.Router):
		// Routes: the namespace whose bare names they carry is verified
		// the same way (the proved one, else the workload's). A sidecar's
		// endpoints depend on where its workload runs (for services with a
		// locality policy): its Pod's Node, never the locality the node
		// claims.
		claim := translate.Claim{Router: p.Router, Network: p.Network, Cluster: p.Cluster, IPs: p.IPs, Labels: p.Labels}
		if p.Verified {
			claim.Namespace, claim.ServiceAccount = p.Namespace, p.ServiceAccount
		}
		tp, claimed = translate.ProxyOf(cp.mesh.Load(), claim)
	default:
		// Other types depend on the network or cluster only.
		tp = translate.Proxy{Network: p.Network, Cluster: p.Cluster}
		if p.Router {
			tp.Role = translate.RoleRouter
		}
	}
	if v, ok := translate.ViewOf(typeURL, tp); ok {
		return v, claimed, nil
	}
	return translate.View{}, false, server.UnsupportedType(typeURL)
}

// knows checks that the proxy's network and cluster are part of the mesh.
func (cp *ControlPlane) knows(p server.Proxy) error {
	if p.Network != "" {
		m := cp.mesh.Load()
		if m == nil || !slices.Contains(m.Networks(), p.Network) {
			var known []string
			if m != nil {
				known = m.Networks()
			}
			return status.Errorf(codes.FailedPrecondition, "node %s: network %q is not known to the mesh (known: %s); "+
				"a network is known from meshNetworks, a topology.istio.io/network label or a gateway",
				cutID(p.ID), p.Network, strings.Join(known, ", "))
		}
	}
	if p.Cluster != "" {
		cp.mu.Lock()
		_, ok := cp.clusters[p.Cluster]
		cp.mu.Unlock()
		if !ok {
			return status.Errorf(codes.FailedPrecondition, "node %s: cluster %q has not joined the mesh", cutID(p.ID), p.Cluster)
		}
	}
	return nil
}

func cutID(id string) string {
	if len(id) > 64 {
		return strconv.Quote(id[:64]) + "..."
	}
	return strconv.Quote(id)
}

// EDSView is the view of a sidecar's endpoints on network.
func EDSView(network string) translate.View { return translate.View{Network: network} }

// updateViews rebuilds CDS only when the clusters changed, LDS and RDS only
// when what they read changed (services, ports, ClusterIPs, Gateways, and
// for LDS the endpoints of headless services), NDS
// only when services or their ClusterIPs changed, and
// EDS for every network view that has proxies — there, only the services
// whose endpoints changed (see buildEDS).
func (cp *ControlPlane) updateViews(m *model.Mesh) {
	cp.mu.Lock()
	gwKey := fmt.Sprint(len(cp.gateways))
	for _, g := range cp.gateways {
		gwKey += fmt.Sprintf("%v", *g)
	}
	cp.mu.Unlock()
	gwChanged := gwKey != cp.gwKey
	cp.gwKey = gwKey
	cdsChanged, ldsChanged, routesChanged, ndsChanged := cp.keys.update(m, cp.opts.Translate)
	rebuildCDS, rebuildLDS, rebuildRoutes := cdsChanged || gwChanged, ldsChanged || gwChanged, routesChanged || gwChanged
	views := cp.Views.Views()
	sort.Slice(views, func(i, j int) bool { return views[i].String() < views[j].String() })
	cp.forgetEDS(views)
	for _, v := range views {
		switch {
		case v.TypeURL == resource.ClusterType && !rebuildCDS:
			continue // clusters depend on no endpoint: skip the build
		case v.TypeURL == resource.ListenerType && !rebuildLDS:
			continue // nor do listeners, but for headless services' pods
		case v.TypeURL == resource.RouteType && !rebuildRoutes:
			continue // nor do routes
		case v.TypeURL == translate.NameTableType && !ndsChanged:
			continue // nor the name table, which no Gateway changes either
		}
		if _, err := cp.Views.Update(v, cp.build(v)); err != nil {
			cp.log.Error("view update", "view", v.String(), "error", err)
		}
	}
}

// build builds one view's resources from the current mesh with
// translate.Build — EDS incrementally (buildEDS), to the same
// result. ViewCache calls it for a view's first proxy; updateViews for
// every change.
func (cp *ControlPlane) build(v server.View) map[string]types.Resource {
	m := cp.mesh.Load()
	if m == nil {
		return map[string]types.Resource{}
	}
	cp.metrics.builds.WithLabelValues(server.TypeName(v.TypeURL)).Inc()
	if v.TypeURL == resource.EndpointType {
		return cp.buildEDS(m, v) // sidecars' and gateways'
	}
	return translate.Build(cp.input(m), v.TypeURL, v.Key)
}

// input is what translate.Build reads besides the view.
func (cp *ControlPlane) input(m *model.Mesh) translate.Input {
	cp.mu.Lock()
	gws := cp.gateways
	cp.mu.Unlock()
	return translate.Input{Mesh: m, Gateways: gws, Options: cp.opts.Translate}
}

// serviceKeys remembers, per Service of the last push, what its CDS, its
// listeners and routes, and its name table entry depend on. A Build reuses unchanged Services (the
// same pointers), so an endpoint-only push computes no key again; it only
// compares them.
type serviceKeys struct {
	memo map[*model.Service]serviceKey
	last []serviceKey // in m.Services() order
}

type serviceKey struct{ cds, lds, routes, nds, policy string }

// update computes m's keys and reports whether the CDS, the listeners',
// the routes' or the NDS keys differ from the last push's.
func (k *serviceKeys) update(m *model.Mesh, opts translate.Options) (cdsChanged, ldsChanged, routesChanged, ndsChanged bool) {
	svcs := m.Services()
	memo := make(map[*model.Service]serviceKey, len(svcs))
	cur := make([]serviceKey, len(svcs))
	changed := k.memo == nil || len(svcs) != len(k.last)
	cdsChanged, ldsChanged, routesChanged, ndsChanged = changed, changed, changed, changed
	for i, s := range svcs {
		pol := m.Policy(s.Hostname)
		key, ok := k.memo[s]
		if !ok || key.policy != pol.Key() {
			// Clusters carry the policy; routes whether it is in priorities.
			key = serviceKey{cds: cdsKey(s, opts) + pol.Key(), routes: routesKey(s) + fmt.Sprint(pol.LocalityAware()), nds: ndsKey(s), policy: pol.Key()}
			key.lds = key.routes + headlessKey(s)
		}
		memo[s], cur[i] = key, key
		if i < len(k.last) {
			cdsChanged = cdsChanged || key.cds != k.last[i].cds
			ldsChanged = ldsChanged || key.lds != k.last[i].lds
			routesChanged = routesChanged || key.routes != k.last[i].routes
			ndsChanged = ndsChanged || key.nds != k.last[i].nds
		}
	}
	k.memo, k.last = memo, cur
	return cdsChanged, ldsChanged, routesChanged, ndsChanged
}

// headlessKey identifies what the listeners read of a service's endpoints:
// for a headless service, the clusters it is headless in and their
// endpoints (address, port, mTLS), each a pod's outbound chain there
// (translate.PodClusters); nothing for the others.
func headlessKey(s *model.Service) string {
	if len(s.Headless) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, " headless=%v", s.Headless)
	for _, p := range s.Ports {
		for _, e := range s.Endpoints[p.Port] {
			if slices.Contains(s.Headless, e.Cluster) {
				fmt.Fprintf(&b, " %d:%s/%s:%d/%v", p.Port, e.Cluster, e.Address, e.Port, e.MTLS)
			}
		}
	}
	return b.String()
}

// routesKey identifies what sidecar listeners and routes read from a
// service: its hostname, ports and ClusterIPs (not endpoints).
func routesKey(s *model.Service) string {
	var b strings.Builder
	b.WriteString(s.Hostname)
	for _, p := range s.Ports {
		fmt.Fprintf(&b, " %s/%d/%s/%s", p.Name, p.Port, p.Protocol, p.AppProtocol)
	}
	writeClusterIPs(&b, s)
	return b.String()
}

// ndsKey identifies what a service's name table entry reads: its hostname,
// name, namespace and every cluster's ClusterIPs (any of them may be a
// remote-only service's answer); not its ports or endpoints.
func ndsKey(s *model.Service) string {
	var b strings.Builder
	b.WriteString(s.Hostname + " " + s.Name + " " + s.Namespace)
	writeClusterIPs(&b, s)
	return b.String()
}

// writeClusterIPs appends every cluster's ClusterIPs of s, by cluster.
func writeClusterIPs(b *strings.Builder, s *model.Service) {
	clusters := make([]string, 0, len(s.ClusterIPs))
	for c := range s.ClusterIPs {
		clusters = append(clusters, string(c))
	}
	sort.Strings(clusters)
	for _, c := range clusters {
		fmt.Fprintf(b, " %s=%v", c, s.ClusterIPs[model.ClusterID(c)])
	}
}

// cdsKey identifies a service's part of the CDS output: clusters depend
// only on the service ports (their protocols: HTTP/2 upstream or not), the
// identities behind them and the clusters where the service is headless
// (whose sidecars get its pod clusters), so an endpoint-only change keeps
// the key and skips the build.
func cdsKey(s *model.Service, opts translate.Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "headless=%v\n", s.Headless) // its pods' clusters (translate.PodClusters)
	for _, p := range s.Ports {
		b.WriteString(translate.ClusterName(p.Port, s.Hostname) + " " + string(p.Selected()))
		for _, id := range translate.SpiffeIDs(s, p.Port, opts) {
			b.WriteString(" " + id)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
