// Package install renders the Kubernetes objects that install Horizon on a
// cluster from one typed Settings value: the primary cluster (discovery,
// its RBAC, Service, injection webhook), a remote cluster (what its pods
// need to join), and a network gateway on either. Rendering is pure; the
// CLI prints the objects (`horizon manifest generate`) or applies them.
package install

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/internal/model"
)

// ManagedByLabel marks every object Horizon's installer creates, so that
// uninstall removes exactly those.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedBy      = "horizon"
)

// Settings are everything an installation is configured with; flags and a
// values file (`-f`) set the same fields.
type Settings struct {
	// ClusterID names this cluster (CLUSTER_ID of its proxies).
	ClusterID string `json:"clusterID"`
	// Network is this cluster's network ("" for none).
	Network string `json:"network,omitempty"`
	// Namespace holds the control plane (Istio's istio-system).
	Namespace string `json:"namespace,omitempty"`
	// Remote renders a remote cluster: no discovery; its pods join the
	// primary's discovery at DiscoveryAddress.
	Remote bool `json:"remote,omitempty"`
	// DiscoveryAddress is host:port of discovery's TLS port as this
	// cluster's pods reach it (for a remote cluster: the primary's gateway).
	DiscoveryAddress string `json:"discoveryAddress,omitempty"`
	// Replicas of discovery (primary only).
	Replicas int32 `json:"replicas,omitempty"`
	// PlaintextXDS serves xDS without TLS or authentication on 15010 too
	// (discovery's --xds-addr, and the Service port grpc-xds): for
	// trusted networks only. Off, discovery serves only the TLS port
	// 15012, where every stream is authenticated (primary only).
	PlaintextXDS bool `json:"plaintextXDS,omitempty"`
	// InjectionWebhook installs the sidecar-injection webhook
	// (MutatingWebhookConfiguration horizon-sidecar-injector) and has
	// discovery serve it and keep its caBundle. Off, nothing of it is
	// installed or served: pods are injected by another injector (Istio's,
	// during a migration) or not at all (primary only; default on).
	InjectionWebhook bool `json:"injectionWebhook"`
	// IstiodService adds a Service named istiod, with the ports of Istio's
	// istiod Service, selecting discovery's pods: pods Istio injected dial
	// istiod.<namespace>.svc:15012 and reach Horizon without edits. An
	// istiod Service Horizon did not create (Istio's) is never taken over:
	// install refuses (primary only).
	IstiodService bool `json:"istiodService,omitempty"`
	// Gateway adds the east-west network gateway.
	Gateway bool `json:"gateway,omitempty"`
	// ExposeServices adds the Istio Gateway that exposes every mesh
	// service on port 15443 with tls.mode AUTO_PASSTHROUGH.
	ExposeServices bool `json:"exposeServices,omitempty"`
	// MeshNetworks is meshNetworks YAML, published in the istio ConfigMap.
	MeshNetworks string `json:"meshNetworks,omitempty"`
	// TrustDomain of workload identities.
	TrustDomain string `json:"trustDomain,omitempty"`
	// StaleEndpointTTL is discovery's --stale-endpoint-ttl (e.g. "10m"):
	// a remote cluster whose API server has not answered that long has
	// its endpoints withdrawn until it answers again. 0 (the default):
	// never; its last endpoints keep serving (primary only).
	StaleEndpointTTL metav1.Duration `json:"staleEndpointTTL,omitzero"`
	// LocalityFailover is discovery's --locality-failover: Istio's
	// locality failover for every service without a DestinationRule.
	LocalityFailover bool `json:"localityFailover,omitempty"`
	// DefaultMTLSMode is how sidecars accept inbound connections where no
	// PeerAuthentication says: PERMISSIVE (Istio's default: mTLS and
	// plaintext) or STRICT (mTLS only) (discovery's --default-mtls-mode;
	// primary only).
	DefaultMTLSMode string `json:"defaultMTLSMode,omitempty"`
	// OutboundTrafficPolicy is where sidecars send traffic to destinations
	// the mesh does not know: ALLOW_ANY or REGISTRY_ONLY, as Istio's
	// meshConfig.outboundTrafficPolicy.mode (discovery's
	// --outbound-traffic-policy; primary only).
	OutboundTrafficPolicy string `json:"outboundTrafficPolicy,omitempty"`
	// Images of discovery and of the proxy (agent + Envoy).
	DiscoveryImage  string `json:"discoveryImage,omitempty"`
	ProxyImage      string `json:"proxyImage,omitempty"`
	ImagePullPolicy string `json:"imagePullPolicy,omitempty"`
}

// Defaults returns Settings with every field at its default.
func Defaults() Settings {
	return Settings{
		ClusterID: "Kubernetes", Namespace: "istio-system", Replicas: 2, TrustDomain: "cluster.local", InjectionWebhook: true,
		DefaultMTLSMode: string(model.DefaultMTLSMode), OutboundTrafficPolicy: "ALLOW_ANY",
		DiscoveryImage: "horizon/discovery:latest", ProxyImage: "horizon/proxy:latest", ImagePullPolicy: "IfNotPresent",
	}
}

// LoadValues overlays a values file (YAML or JSON, the Settings fields) on
// s. An unknown field is an error naming it: a typo must not be ignored.
func LoadValues(s Settings, name string, data []byte) (Settings, error) {
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return s, fmt.Errorf("%s: %w", name, err)
	}
	return s, nil
}

// Validate checks every field and names the bad ones.
func (s Settings) Validate() error {
	var errs []string
	bad := func(field, format string, a ...any) { errs = append(errs, field+": "+fmt.Sprintf(format, a...)) }
	if err := model.ValidateClusterID(s.ClusterID); err != nil {
		bad("clusterID", "%v", err)
	}
	if s.Network != "" && (len(s.Network) > 63 || !networkRE.MatchString(s.Network)) {
		bad("network", "%q is not a valid network name", s.Network)
	}
	if !dnsLabelish(s.Namespace) {
		bad("namespace", "%q is not a valid namespace", s.Namespace)
	}
	if s.Remote {
		if s.DiscoveryAddress == "" {
			bad("discoveryAddress", "required for a remote cluster (the primary's gateway, host:port)")
		}
	} else if s.Replicas < 1 {
		bad("replicas", "must be at least 1")
	}
	if s.Remote && s.PlaintextXDS {
		bad("plaintextXDS", "only for a primary cluster (a remote cluster runs no discovery)")
	}
	if s.Remote && s.IstiodService {
		bad("istiodService", "only for a primary cluster (a remote cluster runs no discovery)")
	}
	if s.Remote && !s.InjectionWebhook {
		bad("injectionWebhook", "a remote cluster is its injector: it cannot be left out")
	}
	if s.DiscoveryAddress != "" {
		if _, port, err := net.SplitHostPort(s.DiscoveryAddress); err != nil {
			bad("discoveryAddress", "%v", err)
		} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			bad("discoveryAddress", "port %q is not a port number", port)
		}
	}
	if s.ExposeServices && !s.Gateway {
		bad("exposeServices", "needs gateway")
	}
	if err := model.ValidateTrustDomain(s.TrustDomain); err != nil {
		bad("trustDomain", "%v", err)
	}
	// Discovery's own rule (bootstrap.MinStaleEndpointTTL), checked here so
	// that a bad value fails the install, not the rollout.
	if ttl := s.StaleEndpointTTL.Duration; ttl != 0 && ttl < time.Second {
		bad("staleEndpointTTL", "%s: must be 0 (never withdraw) or at least 1s", ttl)
	}
	if s.Remote && s.StaleEndpointTTL.Duration != 0 {
		bad("staleEndpointTTL", "only for a primary cluster (a remote cluster runs no discovery)")
	}
	if err := model.ValidateDefaultMTLSMode(s.DefaultMTLSMode); err != nil {
		bad("defaultMTLSMode", "%v", err)
	}
	switch s.OutboundTrafficPolicy {
	case "ALLOW_ANY", "REGISTRY_ONLY":
	default:
		bad("outboundTrafficPolicy", "%q is neither ALLOW_ANY nor REGISTRY_ONLY", s.OutboundTrafficPolicy)
	}
	if s.DiscoveryImage == "" || s.ProxyImage == "" {
		bad("discoveryImage/proxyImage", "must not be empty")
	}
	switch s.ImagePullPolicy {
	case "Always", "IfNotPresent", "Never":
	default:
		bad("imagePullPolicy", "%q is not Always, IfNotPresent or Never", s.ImagePullPolicy)
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid settings:\n  %s", strings.Join(errs, "\n  "))
	}
	return nil
}

// networkRE is the rule proxies' NETWORK metadata follows.
var networkRE = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)

// dnsLabelish: a DNS label (lower case, digits, '-'), as namespace and
// network names are.
func dnsLabelish(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}
