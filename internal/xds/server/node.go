// Package server serves xDS over gRPC (ADS, state-of-the-world and delta)
// from per-view caches: proxies that would receive identical resources share
// one built and marshalled copy.
package server

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
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
	// MetaIstioVersion is an Istio proxy's version; kept (not read) so
	// that proxy-status and istioctl can show it.
	MetaIstioVersion = "ISTIO_VERSION"
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
	// Verified: Namespace and ServiceAccount were proved by the stream's
	// connection (client certificate or reviewed token), not only stated.
	Verified bool
	// Client names who stands behind the stream, for bounds per client:
	// its proved identity, else its peer address.
	Client string
}

var networkRE = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)

// Bounds on what a node may carry: a proxy's metadata is client input, and
// everything in it may end up in logs, view keys and /debug output.
const (
	maxNodeIDLen    = 1024
	maxNameLen      = 253 // namespace, service account: DNS subdomain length
	maxInstanceIPs  = 16
	maxLabels       = 64
	maxLabelLen     = 317 // a qualified label key (253 + "/" + 63)
	maxQuotedInputs = 64  // bytes of a rejected value echoed in an error
)

// MaxNodeBytes bounds a node as a proxy sends it. Istio's agents send
// their pod's annotations and labels in the metadata, which Kubernetes
// bounds at 256 KiB each; anything larger is not a proxy's node.
const MaxNodeBytes = 1 << 20

// keptMetadata are the node metadata fields Horizon reads; a stream keeps
// only these of its node (see KeptNode), whatever else the proxy sends.
var keptMetadata = []string{MetaNetwork, MetaClusterID, MetaNamespace, MetaServiceAccount, MetaInstanceIPs, MetaLabels}

// maxVersionLen bounds the version strings a stream keeps.
const maxVersionLen = 64

// KeptNode returns the part of a node a stream keeps: its id, cluster,
// locality, the metadata fields Horizon reads and, for the tools that show
// proxies, its versions (Envoy's build, Istio's ISTIO_VERSION) cut to
// maxVersionLen. A node's other metadata (megabytes, if a client wants) is
// dropped with the request that carried it, and later requests are
// compared with this, not with the whole node.
func KeptNode(n *corev3.Node) *corev3.Node {
	out := &corev3.Node{Id: n.GetId(), Cluster: cut(n.GetCluster(), maxNameLen), UserAgentName: cut(n.GetUserAgentName(), maxVersionLen)}
	if v := n.GetUserAgentBuildVersion().GetVersion(); v != nil {
		out.UserAgentVersionType = &corev3.Node_UserAgentBuildVersion{UserAgentBuildVersion: &corev3.BuildVersion{
			Version: &typev3.SemanticVersion{MajorNumber: v.GetMajorNumber(), MinorNumber: v.GetMinorNumber(), Patch: v.GetPatch()}}}
	}
	if l := n.GetLocality(); l != nil {
		out.Locality = &corev3.Locality{Region: cut(l.GetRegion(), maxNameLen), Zone: cut(l.GetZone(), maxNameLen),
			SubZone: cut(l.GetSubZone(), maxNameLen)}
	}
	if f := n.GetMetadata().GetFields(); len(f) > 0 {
		md := &structpb.Struct{Fields: map[string]*structpb.Value{}}
		for _, k := range keptMetadata {
			if v, ok := f[k]; ok {
				md.Fields[k] = v
			}
		}
		if v := f[MetaIstioVersion].GetStringValue(); v != "" {
			md.Fields[MetaIstioVersion] = structpb.NewStringValue(cut(v, maxVersionLen))
		}
		out.Metadata = md
	}
	return out
}

// ProxyFromNode validates a node and reads what it says of the proxy. Every
// metadata key Horizon reads must have the type Istio proxies send (strings,
// LABELS a struct of strings): a value of another type is an error rather
// than silently ignored. Errors quote at most maxQuotedInputs bytes of the
// offending value.
func ProxyFromNode(n *corev3.Node) (Proxy, error) {
	if n == nil {
		return Proxy{}, fmt.Errorf("request has no node")
	}
	if n.GetId() == "" {
		return Proxy{}, fmt.Errorf("node.id is empty")
	}
	if size := proto.Size(n); size > MaxNodeBytes {
		return Proxy{}, fmt.Errorf("node %s is %d bytes, more than %d", quote(n.GetId()), size, MaxNodeBytes)
	}
	if len(n.GetId()) > maxNodeIDLen {
		return Proxy{}, fmt.Errorf("node.id %s is longer than %d bytes", quote(n.GetId()), maxNodeIDLen)
	}
	p := Proxy{ID: n.GetId(), Router: strings.HasPrefix(n.GetId(), "router~")}
	fields := n.GetMetadata().GetFields()
	str := func(key string, max int) (string, error) {
		v, ok := fields[key]
		if !ok {
			return "", nil
		}
		if _, isStr := v.GetKind().(*structpb.Value_StringValue); !isStr {
			return "", fmt.Errorf("node %s: metadata.%s must be a string", quote(p.ID), key)
		}
		if s := v.GetStringValue(); len(s) > max {
			return "", fmt.Errorf("node %s: metadata.%s %s is longer than %d bytes", quote(p.ID), key, quote(s), max)
		}
		return v.GetStringValue(), nil
	}
	var err error
	if p.Network, err = str(MetaNetwork, 63); err != nil {
		return Proxy{}, err
	}
	if !networkRE.MatchString(p.Network) {
		return Proxy{}, fmt.Errorf("node %s: metadata.%s %s is not a valid network name", quote(p.ID), MetaNetwork, quote(p.Network))
	}
	cluster, err := str(MetaClusterID, maxNameLen)
	if err != nil {
		return Proxy{}, err
	}
	if cluster != "" {
		if err := model.ValidateClusterID(cluster); err != nil {
			return Proxy{}, fmt.Errorf("node %s: metadata.%s: %w", quote(p.ID), MetaClusterID, err)
		}
		p.Cluster = model.ClusterID(cluster)
	}
	if p.Namespace, err = str(MetaNamespace, maxNameLen); err != nil {
		return Proxy{}, err
	}
	if p.ServiceAccount, err = str(MetaServiceAccount, maxNameLen); err != nil {
		return Proxy{}, err
	}
	ips, err := str(MetaInstanceIPs, maxInstanceIPs*40)
	if err != nil {
		return Proxy{}, err
	}
	for _, s := range strings.Split(ips, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return Proxy{}, fmt.Errorf("node %s: metadata.%s: %s is not an IP", quote(p.ID), MetaInstanceIPs, quote(s))
		}
		if len(p.IPs) == maxInstanceIPs {
			return Proxy{}, fmt.Errorf("node %s: metadata.%s: more than %d addresses", quote(p.ID), MetaInstanceIPs, maxInstanceIPs)
		}
		p.IPs = append(p.IPs, ip.Unmap())
	}
	if p.Labels, err = labels(p.ID, fields[MetaLabels]); err != nil {
		return Proxy{}, err
	}
	return p, nil
}

// labels reads metadata LABELS: a struct of at most maxLabels strings.
func labels(id string, v *structpb.Value) (map[string]string, error) {
	if v == nil {
		return nil, nil
	}
	st, ok := v.GetKind().(*structpb.Value_StructValue)
	if !ok {
		return nil, fmt.Errorf("node %s: metadata.%s must be a struct of strings", quote(id), MetaLabels)
	}
	fields := st.StructValue.GetFields()
	if len(fields) > maxLabels {
		return nil, fmt.Errorf("node %s: metadata.%s has %d labels, more than %d", quote(id), MetaLabels, len(fields), maxLabels)
	}
	out := make(map[string]string, len(fields))
	for k, lv := range fields {
		if _, isStr := lv.GetKind().(*structpb.Value_StringValue); !isStr {
			return nil, fmt.Errorf("node %s: metadata.%s.%s must be a string", quote(id), MetaLabels, quote(k))
		}
		if len(k) > maxLabelLen || len(lv.GetStringValue()) > maxLabelLen {
			return nil, fmt.Errorf("node %s: metadata.%s.%s is longer than %d bytes", quote(id), MetaLabels, quote(k), maxLabelLen)
		}
		out[k] = lv.GetStringValue()
	}
	return out, nil
}

// quote quotes s for an error message, cut to maxQuotedInputs bytes: a
// client must not be able to make the server echo a megabyte back.
func quote(s string) string {
	if len(s) <= maxQuotedInputs {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:maxQuotedInputs]) + fmt.Sprintf("... (%d bytes)", len(s))
}
