package controlplane

import (
	"sync"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/xds/server"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// edsBuild is what an EDS view's last build read and produced.
type edsBuild struct {
	mesh      *model.Mesh
	resources map[string]types.Resource
}

// buildEDS builds an EDS view's load assignments from m. A service whose
// endpoints (and the mesh's gateways, and its policy) are as in the mesh
// of the view's previous build keeps that build's load assignments — the
// same pointers, which ViewCache.Update then recognises without comparing
// — so an endpoint change costs the changed services, not the mesh.
//
// A sidecar view takes the services without a locality policy from its
// network's shared build (plainFor): the views of one network's
// localities hold the same pointers, built once per push.
func (cp *ControlPlane) buildEDS(m *model.Mesh, v server.View) map[string]types.Resource {
	network := v.Key.Network
	router := v.Key.Role == translate.RoleRouter
	name, assign := translate.ClusterName, func(svc *model.Service, port uint32) *endpointv3.ClusterLoadAssignment {
		return translate.LoadAssignment(m, translate.EDSViewOf(v.Key), svc, port)
	}
	var plain map[string]*endpointv3.ClusterLoadAssignment
	if router {
		// A gateway's SNI clusters: its network's endpoints.
		name, assign = translate.SNI, func(svc *model.Service, port uint32) *endpointv3.ClusterLoadAssignment {
			return translate.GatewayLoadAssignment(m, network, svc, port)
		}
	} else {
		plain = cp.plainFor(m, network)
	}
	cp.edsMu.Lock()
	prev := cp.eds[v]
	cp.edsMu.Unlock()
	reuse := prev.mesh != nil && model.SameRouting(prev.mesh, m)
	out := make(map[string]types.Resource, len(prev.resources))
	built, reused := 0, 0
	for _, svc := range m.Services() {
		pol := m.Policy(svc.Hostname)
		if !router && !pol.LocalityAware() {
			for _, p := range svc.Ports {
				n := name(p.Port, svc.Hostname)
				out[n] = plain[n]
			}
			continue // counted by plainFor
		}
		if reuse && model.SameEndpoints(prev.mesh.Service(svc.Hostname), svc) &&
			(router || prev.mesh.Policy(svc.Hostname).Key() == pol.Key()) {
			for _, p := range svc.Ports {
				n := name(p.Port, svc.Hostname)
				out[n] = prev.resources[n]
			}
			reused += len(svc.Ports)
			continue
		}
		for _, p := range svc.Ports {
			cla := assign(svc, p.Port)
			out[cla.ClusterName] = cla
		}
		built += len(svc.Ports)
	}
	cp.metrics.assignments.WithLabelValues("built").Add(float64(built))
	cp.metrics.assignments.WithLabelValues("reused").Add(float64(reused))
	cp.edsMu.Lock()
	// Builds of one view may race (a proxy's first request, a push): keep
	// the one from the newer mesh. Either result is right for its mesh.
	if cur, ok := cp.eds[v]; !ok || cur.mesh == prev.mesh {
		cp.eds[v] = edsBuild{mesh: m, resources: out}
	}
	cp.edsMu.Unlock()
	return out
}

// plainBuild is one network's load assignments of the services without a
// locality policy, as of mesh.
type plainBuild struct {
	mu        sync.Mutex
	mesh      *model.Mesh
	resources map[string]*endpointv3.ClusterLoadAssignment
}

// plainFor returns network's load assignments of m's services without a
// locality policy, which do not depend on where on the network a proxy
// stands: built once per mesh, each reused from the previous mesh's when
// its service's endpoints (and the gateways) did not change.
func (cp *ControlPlane) plainFor(m *model.Mesh, network string) map[string]*endpointv3.ClusterLoadAssignment {
	cp.edsMu.Lock()
	pb := cp.plain[network]
	if pb == nil {
		pb = &plainBuild{}
		cp.plain[network] = pb
	}
	cp.edsMu.Unlock()
	pb.mu.Lock()
	defer pb.mu.Unlock()
	if pb.mesh == m {
		return pb.resources
	}
	prev := pb.mesh
	reuse := prev != nil && model.SameRouting(prev, m)
	out := make(map[string]*endpointv3.ClusterLoadAssignment, len(pb.resources))
	built, reused := 0, 0
	for _, svc := range m.Services() {
		if m.Policy(svc.Hostname).LocalityAware() {
			continue
		}
		// A service whose policy was locality-aware in prev has no
		// assignment here to reuse.
		if reuse && model.SameEndpoints(prev.Service(svc.Hostname), svc) && !prev.Policy(svc.Hostname).LocalityAware() {
			for _, p := range svc.Ports {
				n := translate.ClusterName(p.Port, svc.Hostname)
				out[n] = pb.resources[n]
			}
			reused += len(svc.Ports)
			continue
		}
		for _, p := range svc.Ports {
			cla := translate.LoadAssignment(m, translate.EDSView{Network: network}, svc, p.Port)
			out[cla.ClusterName] = cla
		}
		built += len(svc.Ports)
	}
	cp.metrics.assignments.WithLabelValues("built").Add(float64(built))
	cp.metrics.assignments.WithLabelValues("reused").Add(float64(reused))
	pb.mesh, pb.resources = m, out
	return out
}

// forgetEDS drops the builds of EDS views that no longer exist (their last
// proxy left).
func (cp *ControlPlane) forgetEDS(live []server.View) {
	keep := make(map[server.View]bool, len(live))
	for _, v := range live {
		keep[v] = true
	}
	networks := map[string]bool{}
	for _, v := range live {
		if v.TypeURL == resource.EndpointType && v.Key.Role == translate.RoleSidecar {
			networks[v.Key.Network] = true
		}
	}
	cp.edsMu.Lock()
	defer cp.edsMu.Unlock()
	for v := range cp.eds {
		if !keep[v] {
			delete(cp.eds, v)
		}
	}
	for n := range cp.plain {
		if !networks[n] {
			delete(cp.plain, n)
		}
	}
}
