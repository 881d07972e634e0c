package controlplane

import (
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

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
// endpoints (and the mesh's gateways) are as in the mesh of the view's
// previous build keeps that build's load assignments — the same pointers,
// which ViewCache.Update then recognises without comparing — so an
// endpoint change costs the changed services, not the mesh.
func (cp *ControlPlane) buildEDS(m *model.Mesh, v server.View) map[string]types.Resource {
	network := v.Key.Network
	name, assign := translate.ClusterName, func(svc *model.Service, port uint32) *endpointv3.ClusterLoadAssignment {
		return translate.LoadAssignment(m, translate.EDSView{Network: network}, svc, port)
	}
	if v.Key.Role == translate.RoleRouter {
		// A gateway's SNI clusters: its network's endpoints.
		name, assign = translate.SNI, func(svc *model.Service, port uint32) *endpointv3.ClusterLoadAssignment {
			return translate.GatewayLoadAssignment(m, network, svc, port)
		}
	}
	cp.edsMu.Lock()
	prev := cp.eds[v]
	cp.edsMu.Unlock()
	reuse := prev.mesh != nil && model.SameRouting(prev.mesh, m)
	out := make(map[string]types.Resource, len(prev.resources))
	built, reused := 0, 0
	for _, svc := range m.Services() {
		if reuse && model.SameEndpoints(prev.mesh.Service(svc.Hostname), svc) {
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

// forgetEDS drops the builds of EDS views that no longer exist (their last
// proxy left).
func (cp *ControlPlane) forgetEDS(live []server.View) {
	keep := make(map[server.View]bool, len(live))
	for _, v := range live {
		keep[v] = true
	}
	cp.edsMu.Lock()
	defer cp.edsMu.Unlock()
	for v := range cp.eds {
		if !keep[v] {
			delete(cp.eds, v)
		}
	}
}
