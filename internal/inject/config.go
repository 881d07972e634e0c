// Package inject is Horizon's sidecar injector: a mutating admission
// webhook that adds the traffic-capture init container (`horizon-agent agent
// iptables`) and the sidecar (`horizon-agent agent`) to pods created in namespaces
// labelled istio-injection=enabled. Inject is a pure function of the pod,
// its namespace and a Config; Handler serves it as admission.k8s.io/v1
// AdmissionReviews with RFC 6902 JSON patches.
//
// Wiring (in `horizon-discovery discovery`): serve Handler on WebhookPath over TLS
// with a certificate the API server trusts, build Config from the
// discovery flags, and look namespaces up in the local cluster's informer.
// The MutatingWebhookConfiguration should use the Recommended* values below.
package inject

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/horizonmesh/horizon/internal/model"
)

// WebhookPath is where Handler is served.
const WebhookPath = "/inject"

// Recommended settings of the MutatingWebhookConfiguration that sends pods
// to Handler. Failing closed: a pod created while discovery is down waits
// (the ReplicaSet retries) rather than starting outside the mesh, without
// mTLS. Only enabled namespaces are sent, so an outage of discovery never
// blocks pods elsewhere (kube-system in particular); pods labelled
// sidecar.istio.io/inject=false are not even sent. Handler applies the same
// policy again, so a broader selector is safe too.
const (
	RecommendedFailurePolicy  = "Fail"
	RecommendedTimeoutSeconds = 10
	RecommendedSideEffects    = "None"
	// RecommendedNamespaceSelector: matchLabels istio-injection=enabled.
	RecommendedNamespaceSelector = NamespaceInjectionLabel + "=enabled"
	// RecommendedObjectSelector: sidecar.istio.io/inject NotIn [false].
	RecommendedObjectSelector = InjectLabel + " notin (false)"
	// RecommendedReinvocationPolicy: the patch does not depend on other
	// webhooks' changes, except the pod's labels passed to the agent.
	RecommendedReinvocationPolicy = "Never"
)

// Labels and annotations the injector reads or writes (Istio's names, so
// existing manifests keep working).
const (
	NamespaceInjectionLabel = "istio-injection"         // on the Namespace: enabled | disabled
	RevisionLabel           = "istio.io/rev"            // on the Namespace: another (Istio) control plane's revision
	InjectLabel             = "sidecar.istio.io/inject" // on the pod, label or annotation: "false" opts out
	StatusAnnotation        = "sidecar.istio.io/status" // what was injected; its presence means injected
	ExcludeInboundPortsAnn  = "traffic.sidecar.istio.io/excludeInboundPorts"
	ExcludeOutboundPortsAnn = "traffic.sidecar.istio.io/excludeOutboundPorts"
	TLSModeLabel            = "security.istio.io/tlsMode"
	NetworkLabel            = "topology.istio.io/network"
	CanonicalNameLabel      = "service.istio.io/canonical-name"
	CanonicalRevisionLabel  = "service.istio.io/canonical-revision"
	DefaultContainerAnn     = "kubectl.kubernetes.io/default-container"
)

// Names and paths of what is injected.
const (
	InitContainerName  = "istio-init"
	ProxyContainerName = "istio-proxy"

	TokenVolume    = "istio-token"
	RootCertVolume = "istio-ca-root-cert"
	WorkVolume     = "horizon-work"

	TokenDir      = "/var/run/secrets/tokens"
	TokenFile     = TokenDir + "/istio-token"
	RootCertDir   = "/var/run/secrets/istio"
	WorkDir       = "/var/run/horizon"
	TokenAudience = "istio-ca"
	TokenTTL      = 43200 // seconds

	// StatusPort and ReadyPath are where the agent answers the sidecar's
	// readiness probe (Istio's status port; agent.DefaultStatusPort and
	// agent.ReadyPath). StatusPort is never captured inbound.
	StatusPort = 15021
	ReadyPath  = "/healthz/ready"
)

// The sidecar's readiness probe (ReadinessProbe): the pod is Ready, and its endpoint
// reaches callers, only once Envoy has its config and serves inbound;
// without it the pod was Ready as soon as the containers started, its
// first callers were refused and ejected it (found by the lab's
// failover demo). A first check 1 s after start, then every 2 s: Envoy
// usually has its config within a few seconds, and readiness is seen at
// the first check after that. The agent answers within 2 s (it bounds its
// calls to Envoy's admin), under the 3 s timeout. A readiness failure
// never restarts anything, it only takes the pod out of its Services'
// endpoints: 4 failures in a row (about 8 s) do that for a pod whose Envoy
// died or restarted without config, while a single slow answer under
// load does not. Istio's injector long used failureThreshold 30 (a minute
// of a dead proxy still receiving calls); the first Ready needs one
// success whatever the threshold.
const (
	ProbeInitialDelaySeconds = 1
	ProbePeriodSeconds       = 2
	ProbeTimeoutSeconds      = 3
	ProbeFailureThreshold    = 4
)

// Config is what the injector puts into pods. Start from Defaults.
type Config struct {
	// ProxyImage runs `horizon-agent agent` (the agent, Envoy and iptables).
	ProxyImage string
	// InitImage runs `horizon-agent agent iptables` (default: ProxyImage).
	InitImage       string
	ImagePullPolicy corev1.PullPolicy
	// Binary is the horizon-agent executable in the proxy image.
	Binary string
	// EnvoyPath is Envoy in the proxy image ("": the agent's default, envoy in PATH).
	EnvoyPath string

	// ClusterID and Network of the cluster the pods run in. A pod's own
	// topology.istio.io/network label wins over Network.
	ClusterID string
	Network   string
	// DiscoveryAddress is host:port of discovery's TLS port as pods reach
	// it: discovery's Service in the primary cluster; cluster1's gateway
	// (GW:15443) from a remote cluster on another network, with
	// DiscoverySAN outbound_.15012_._.horizon.istio-system.svc.cluster.local.
	DiscoveryAddress string
	DiscoverySAN     string
	// TrustDomain of workload identities. The agent learns its identity
	// from its certificate and takes no flag for it; kept so that the
	// injector's settings and discovery's stay one value.
	TrustDomain string

	// RootCertConfigMap holds the mesh root under RootCertKey, in every
	// injected namespace.
	RootCertConfigMap string
	RootCertKey       string

	// ProxyUID is the uid (and gid) of the agent and Envoy; traffic from it
	// is never captured.
	ProxyUID int64
	// Resources of the sidecar (and of the init container).
	Resources corev1.ResourceRequirements
	// EnvoyLogLevel is Envoy's log level (--envoy-log-level).
	EnvoyLogLevel string
	// ExcludeInboundPorts are never captured inbound, in every pod (the
	// agent's health and metrics ports by default).
	ExcludeInboundPorts []int32
}

// Defaults returns a Config with every field but the cluster-specific ones
// (ClusterID, Network, DiscoveryAddress, DiscoverySAN) at its default.
func Defaults() Config {
	return Config{
		ProxyImage:        "horizon/proxy:latest",
		ImagePullPolicy:   corev1.PullIfNotPresent,
		Binary:            "horizon-agent",
		ClusterID:         "Kubernetes",
		TrustDomain:       "cluster.local",
		RootCertConfigMap: "istio-ca-root-cert",
		RootCertKey:       "root-cert.pem",
		ProxyUID:          1337,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("1Gi")},
		},
		EnvoyLogLevel:       "warning",
		ExcludeInboundPorts: []int32{15021, 15090},
	}
}

// Validate names every bad field. Handler refuses every pod (allowed:
// false, naming the error) while its Config is invalid, so call Validate
// at start.
func (c Config) Validate() error {
	var errs []string
	bad := func(field, format string, a ...any) { errs = append(errs, field+": "+fmt.Sprintf(format, a...)) }
	if c.ProxyImage == "" {
		bad("ProxyImage", "must not be empty")
	}
	if c.Binary == "" {
		bad("Binary", "must not be empty")
	}
	if err := model.ValidateClusterID(c.ClusterID); err != nil {
		bad("ClusterID", "%v", err)
	}
	if err := model.ValidateTrustDomain(c.TrustDomain); err != nil {
		bad("TrustDomain", "%v", err)
	}
	if host, port, err := net.SplitHostPort(c.DiscoveryAddress); err != nil || host == "" {
		bad("DiscoveryAddress", "%q is not host:port", c.DiscoveryAddress)
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		bad("DiscoveryAddress", "port %q out of range", port)
	}
	if c.RootCertConfigMap == "" || c.RootCertKey == "" {
		bad("RootCertConfigMap/RootCertKey", "must not be empty")
	}
	if c.ProxyUID <= 0 {
		bad("ProxyUID", "%d must be a non-root uid", c.ProxyUID)
	}
	for _, p := range c.ExcludeInboundPorts {
		if p < 1 || p > 65535 {
			bad("ExcludeInboundPorts", "%d out of range", p)
		}
	}
	for _, f := range [][2]string{{"Network", c.Network}, {"DiscoveryAddress", c.DiscoveryAddress}, {"DiscoverySAN", c.DiscoverySAN},
		{"EnvoyPath", c.EnvoyPath}, {"EnvoyLogLevel", c.EnvoyLogLevel}, {"TrustDomain", c.TrustDomain}} {
		// They become container arguments, where the kubelet expands $(VAR).
		if strings.ContainsAny(f[1], "$ \t\n") {
			bad(f[0], "%q must not contain '$' or white space", f[1])
		}
	}
	switch c.ImagePullPolicy {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		bad("ImagePullPolicy", "%q is not Always, IfNotPresent or Never", c.ImagePullPolicy)
	}
	if len(errs) > 0 {
		return fmt.Errorf("injector config: %s", strings.Join(errs, "; "))
	}
	return nil
}
