// Package server serves xDS over gRPC (ADS, state-of-the-world and delta)
// from per-view caches: proxies that would receive identical resources share
// one built and marshalled copy.
package server

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/internal/model"
)

// Node metadata keys a proxy sets in its bootstrap, as Istio proxies do.
const (
	MetaNetwork        = "NETWORK"
	MetaClusterID      = "CLUSTER_ID"
	MetaNamespace      = "NAMESPACE"
	MetaServiceAccount = "SERVICE_ACCOUNT"
	MetaInstanceIPs    = "INSTANCE_IPS"
	MetaLabels         = "LABELS"
)

// Proxy is what the control plane knows of a connected proxy from its node.
type Proxy struct {
	ID             string
	Network        string
	Cluster        model.ClusterID
	Namespace      string
	ServiceAccount string
	// IPs are the workload's addresses (metadata INSTANCE_IPS): they tell
	// which endpoints, and so which inbound ports, are its own.
	IPs []netip.Addr
	// Router is set for gateway proxies (node id "router~..."), whose
	// config comes from the Istio Gateways their Labels match.
	Router bool
	Labels map[string]string
}

var networkRE = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)

// ProxyFromNode validates a node and reads its network and cluster.
func ProxyFromNode(n *corev3.Node) (Proxy, error) {
	if n == nil {
		return Proxy{}, fmt.Errorf("request has no node")
	}
	if n.GetId() == "" {
		return Proxy{}, fmt.Errorf("node.id is empty")
	}
	p := Proxy{ID: n.GetId()}
	fields := n.GetMetadata().GetFields()
	if v, ok := fields[MetaNetwork]; ok {
		if _, isStr := v.GetKind().(*structpb.Value_StringValue); !isStr {
			return Proxy{}, fmt.Errorf("node %s: metadata.%s must be a string", p.ID, MetaNetwork)
		}
		p.Network = v.GetStringValue()
		if len(p.Network) > 63 || !networkRE.MatchString(p.Network) {
			return Proxy{}, fmt.Errorf("node %s: metadata.%s %q is not a valid network name", p.ID, MetaNetwork, p.Network)
		}
	}
	if v, ok := fields[MetaClusterID]; ok && v.GetStringValue() != "" {
		if err := model.ValidateClusterID(v.GetStringValue()); err != nil {
			return Proxy{}, fmt.Errorf("node %s: metadata.%s: %v", p.ID, MetaClusterID, err)
		}
		p.Cluster = model.ClusterID(v.GetStringValue())
	}
	for _, s := range strings.Split(fields[MetaInstanceIPs].GetStringValue(), ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return Proxy{}, fmt.Errorf("node %s: metadata.%s: %q is not an IP", p.ID, MetaInstanceIPs, s)
		}
		p.IPs = append(p.IPs, ip.Unmap())
	}
	p.Router = strings.HasPrefix(p.ID, "router~")
	if l := fields[MetaLabels].GetStructValue(); l != nil {
		p.Labels = map[string]string{}
		for k, v := range l.GetFields() {
			p.Labels[k] = v.GetStringValue()
		}
	}
	p.Namespace = fields[MetaNamespace].GetStringValue()
	p.ServiceAccount = fields[MetaServiceAccount].GetStringValue()
	return p, nil
}

func clusterID(s string) model.ClusterID { return model.ClusterID(s) }
