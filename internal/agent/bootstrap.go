// Package agent is `horizon-agent agent`: beside a workload it generates Envoy's
// bootstrap, obtains the workload certificate from the CA, serves it to
// Envoy over SDS and runs Envoy.
package agent

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/internal/xds/envoyconf"
	"github.com/horizonmesh/horizon/internal/xds/server"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// XDSCluster is the bootstrap's static cluster reaching discovery.
const XDSCluster = "xds-grpc"

// BootstrapConfig is what the bootstrap says about the proxy and where its
// control plane is.
type BootstrapConfig struct {
	NodeID         string
	Cluster        string // cluster ID
	Network        string
	Namespace      string
	ServiceAccount string
	Labels         map[string]string
	IPs            []netip.Addr
	// Discovery is host:port of the control plane's TLS port; DiscoverySAN
	// the name its certificate must carry (checked by Envoy).
	Discovery    string
	DiscoverySNI string
	SDSSocket    string // the agent's SDS Unix socket
	AdminPort    uint32 // on 127.0.0.1
}

// Bootstrap builds Envoy's bootstrap: node identity and metadata, ADS to
// discovery over mutual TLS (the workload certificate from the agent's SDS),
// and the static SDS cluster on the agent's Unix socket.
func Bootstrap(c BootstrapConfig) (*bootstrapv3.Bootstrap, error) {
	host, port, err := splitHostPort(c.Discovery)
	if err != nil {
		return nil, err
	}
	meta := map[string]*structpb.Value{
		server.MetaNetwork:        structpb.NewStringValue(c.Network),
		server.MetaClusterID:      structpb.NewStringValue(c.Cluster),
		server.MetaNamespace:      structpb.NewStringValue(c.Namespace),
		server.MetaServiceAccount: structpb.NewStringValue(c.ServiceAccount),
	}
	if len(c.Labels) > 0 {
		labels := map[string]*structpb.Value{}
		for k, v := range c.Labels {
			labels[k] = structpb.NewStringValue(v)
		}
		meta[server.MetaLabels] = structpb.NewStructValue(&structpb.Struct{Fields: labels})
	}
	if len(c.IPs) > 0 {
		ips := make([]string, 0, len(c.IPs))
		for _, ip := range c.IPs {
			ips = append(ips, ip.String())
		}
		sort.Strings(ips)
		meta["INSTANCE_IPS"] = structpb.NewStringValue(strings.Join(ips, ","))
	}
	xdsTLS := envoyconf.UpstreamTLS(&tlsv3.UpstreamTlsContext{
		Sni: c.DiscoverySNI,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{envoyconf.SDSSecret(translate.SecretDefault, translate.SDSCluster)},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
				ValidationContextSdsSecretConfig: envoyconf.SDSSecret(translate.SecretRootCA, translate.SDSCluster)},
			// "istio" lets a network gateway pass the connection through
			// to discovery on SNI (remote networks reach it that way).
			AlpnProtocols: []string{"h2", translate.MeshALPN[0]},
		},
	})
	ads := envoyconf.GRPCAPIConfigSource(XDSCluster)
	ads.SetNodeOnFirstMessageOnly = true
	return &bootstrapv3.Bootstrap{
		Node: &corev3.Node{Id: c.NodeID, Cluster: c.Cluster, Metadata: &structpb.Struct{Fields: meta}},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: ads,
			CdsConfig: envoyconf.ADSSource(),
			LdsConfig: envoyconf.ADSSource(),
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{
			{
				Name:                 XDSCluster,
				ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
				// A records first, AAAA only when there are none (Envoy's
				// default, AUTO, waits on AAAA first: a minute where no
				// nameserver answers, found in the lab).
				DnsLookupFamily:               clusterv3.Cluster_V4_PREFERRED,
				ConnectTimeout:                durationpb.New(5 * time.Second),
				TypedExtensionProtocolOptions: envoyconf.HTTP2ProtocolOptions(),
				LoadAssignment:                envoyconf.StaticLoadAssignment(XDSCluster, envoyconf.SocketAddress(host, port)),
				TransportSocket:               xdsTLS,
			},
			{
				Name:                          translate.SDSCluster,
				ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
				ConnectTimeout:                durationpb.New(time.Second),
				TypedExtensionProtocolOptions: envoyconf.HTTP2ProtocolOptions(),
				LoadAssignment:                envoyconf.StaticLoadAssignment(translate.SDSCluster, envoyconf.PipeAddress(c.SDSSocket)),
			},
		}},
		Admin: &bootstrapv3.Admin{Address: envoyconf.SocketAddress("127.0.0.1", c.AdminPort)},
	}, nil
}

func splitHostPort(hp string) (string, uint32, error) {
	ap, err := netip.ParseAddrPort(hp)
	if err == nil {
		return ap.Addr().String(), uint32(ap.Port()), nil
	}
	i := strings.LastIndex(hp, ":")
	if i <= 0 {
		return "", 0, fmt.Errorf("discovery address %q: want host:port", hp)
	}
	var port uint32
	if _, err := fmt.Sscanf(hp[i+1:], "%d", &port); err != nil || port == 0 || port > 65535 {
		return "", 0, fmt.Errorf("discovery address %q: invalid port", hp)
	}
	return hp[:i], port, nil
}
