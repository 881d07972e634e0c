package ops

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/internal/xds/server"
)

// nodeFor builds the node a proxy of that network and cluster would send,
// so that /debug/eds validates its query exactly as the xDS server does.
func nodeFor(network, cluster, ips string) *corev3.Node {
	fields := map[string]*structpb.Value{server.MetaNetwork: structpb.NewStringValue(network)}
	if cluster != "" {
		fields[server.MetaClusterID] = structpb.NewStringValue(cluster)
	}
	if ips != "" {
		// As a sidecar's INSTANCE_IPS: the mesh finds its workload there
		// (and so its locality), as it does for the live proxy.
		fields[server.MetaInstanceIPs] = structpb.NewStringValue(ips)
	}
	return &corev3.Node{Id: "debug", Metadata: &structpb.Struct{Fields: fields}}
}
