package translate

import (
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/horizonmesh/horizon/internal/model"
)

// Input is everything a view's resources are built from.
type Input struct {
	Mesh *model.Mesh
	// Gateways are the config cluster's valid Istio Gateways; a router
	// view's listeners and clusters come from those selecting its Labels.
	Gateways []*model.IstioGateway
	Options  Options
}

// Types are the xDS types Build serves to Envoy, in the order Envoy applies
// them. Build also serves NameTableType, which only Istio's agent asks for.
var Types = []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType}

// Build returns the resources of type typeURL that the proxies of view v
// receive, by name. It is the one translation of a view: the live control
// plane, `horizon translate` and the golden tests all call it. A type it
// does not serve (or one a role has none of, like a router's routes) gives
// nothing.
func Build(in Input, typeURL string, v View) map[string]types.Resource {
	out := map[string]types.Resource{}
	m := in.Mesh
	if m == nil {
		return out
	}
	if v.Role == RoleRouter {
		gv := GatewayView{Network: v.Network, Gateways: selecting(in.Gateways, v.Labels)}
		switch typeURL {
		case resource.ListenerType:
			for _, l := range GatewayLDS(m, gv) {
				out[l.Name] = l
			}
		case resource.ClusterType:
			for _, c := range GatewayCDS(m, gv) {
				out[c.Name] = c
			}
		case resource.EndpointType:
			for _, cla := range GatewayEDS(m, gv) {
				out[cla.ClusterName] = cla
			}
		}
		return out
	}
	sv := SidecarView{Cluster: v.Cluster, Namespace: v.Namespace, Inbound: v.Inbound.List(), RegistryOnly: in.Options.registryOnly()}
	switch typeURL {
	case resource.ClusterType:
		for _, c := range CDS(m, in.Options) {
			out[c.Name] = c
		}
		for _, c := range InboundClusters(sv) {
			out[c.Name] = c
		}
		for _, c := range PodClusters(m, v.Cluster, in.Options) {
			out[c.Name] = c
		}
	case resource.ListenerType:
		for _, l := range LDS(m, sv) {
			out[l.Name] = l
		}
	case resource.RouteType:
		for _, r := range RDS(m, sv) {
			out[r.Name] = r
		}
	case resource.EndpointType:
		for _, cla := range EDS(m, EDSViewOf(v)) {
			out[cla.ClusterName] = cla
		}
	case NameTableType:
		out[NameTableName] = NDS(m, v.Cluster)
	}
	return out
}

// selecting returns the Gateways whose selector matches labels.
func selecting(gws []*model.IstioGateway, labels Labels) []*model.IstioGateway {
	ls := labels.Map()
	var out []*model.IstioGateway
	for _, g := range gws {
		if g.Selects(ls) {
			out = append(out, g)
		}
	}
	return out
}

// EDSViewOf is the EDS part of a sidecar's view.
func EDSViewOf(v View) EDSView {
	return EDSView{Network: v.Network, Cluster: v.Cluster, Locality: v.Locality, Located: v.Located}
}
