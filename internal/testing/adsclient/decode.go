package adsclient

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
)

// LoadAssignments decodes the ClusterLoadAssignments of a response by name.
func LoadAssignments(r *discovery.DiscoveryResponse) (map[string]*endpointv3.ClusterLoadAssignment, error) {
	out := map[string]*endpointv3.ClusterLoadAssignment{}
	for _, a := range r.GetResources() {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := a.UnmarshalTo(cla); err != nil {
			return nil, err
		}
		out[cla.ClusterName] = cla
	}
	return out, nil
}

// Clusters decodes the Clusters of a response by name.
func Clusters(r *discovery.DiscoveryResponse) (map[string]*clusterv3.Cluster, error) {
	out := map[string]*clusterv3.Cluster{}
	for _, a := range r.GetResources() {
		c := &clusterv3.Cluster{}
		if err := a.UnmarshalTo(c); err != nil {
			return nil, err
		}
		out[c.Name] = c
	}
	return out, nil
}

// Weights flattens a load assignment to "addr:port" → weight.
func Weights(cla *endpointv3.ClusterLoadAssignment) map[string]uint32 {
	out := map[string]uint32{}
	for _, l := range cla.GetEndpoints() {
		for _, lb := range l.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			out[fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())] = lb.GetLoadBalancingWeight().GetValue()
		}
	}
	return out
}
