package translate

import (
	"sort"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/horizonmesh/horizon/internal/model"
)

// ConnectTimeout is the upstream connect timeout of every outbound cluster.
const ConnectTimeout = 10 * time.Second

// CDS returns one EDS cluster per service port, sorted by name. Clusters do
// not depend on the proxy's network: every sidecar shares one CDS view, and
// an endpoint-only change leaves them alone.
func CDS(m *model.Mesh) []*clusterv3.Cluster {
	var out []*clusterv3.Cluster
	for _, svc := range m.Services() {
		for _, p := range svc.Ports {
			out = append(out, OutboundCluster(ClusterName(p.Port, svc.Hostname)))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// OutboundCluster is an EDS cluster fed over ADS.
func OutboundCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
			ResourceApiVersion:    corev3.ApiVersion_V3,
		}},
		ConnectTimeout: durationpb.New(ConnectTimeout),
	}
}
