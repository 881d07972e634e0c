package ops

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/internal/xds/server"
)

// nodeFor builds the node a proxy of that network and cluster would send,
// so that /debug/eds validates its query exactly as the xDS server does.
func nodeFor(network, cluster string) *corev3.Node {
	fields := map[string]*structpb.Value{server.MetaNetwork: structpb.NewStringValue(network)}
	if cluster != "" {
		fields[server.MetaClusterID] = structpb.NewStringValue(cluster)
	}
	return &corev3.Node{Id: "debug", Metadata: &structpb.Struct{Fields: fields}}
}
