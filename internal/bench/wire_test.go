//go:build bench

package bench

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The wire-level reading agrees with decoding: unset weights count 1.
func TestWeightSum(t *testing.T) {
	ep := func(w *wrapperspb.UInt32Value) *endpointv3.LbEndpoint {
		return &endpointv3.LbEndpoint{LoadBalancingWeight: w, HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "10.0.0.1"}}}}}}
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: "outbound|5000||a.b.svc.cluster.local", Endpoints: []*endpointv3.LocalityLbEndpoints{
		{LbEndpoints: []*endpointv3.LbEndpoint{ep(nil), ep(wrapperspb.UInt32(7))}, LoadBalancingWeight: wrapperspb.UInt32(100)},
		{Locality: &corev3.Locality{Zone: "z"}, LbEndpoints: []*endpointv3.LbEndpoint{ep(wrapperspb.UInt32(3))}},
	}}
	b, err := proto.Marshal(cla)
	if err != nil {
		t.Fatal(err)
	}
	name, sum, err := weightSum(b, "")
	if err != nil || name != cla.ClusterName || sum != 11 {
		t.Errorf("weightSum = %q, %d, %v; want %q, 11", name, sum, err, cla.ClusterName)
	}
	if name, sum, _ := weightSum(b, "other"); name != cla.ClusterName || sum != 0 {
		t.Errorf("weightSum(other) = %q, %d", name, sum)
	}
}
