package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/horizonmesh/horizon/internal/cmdutil"
	"github.com/horizonmesh/horizon/internal/install"
	"github.com/horizonmesh/horizon/internal/source/meshnetworks"
)

func newManifestCommand(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "manifest", Short: "Render the Kubernetes objects that install Horizon"}
	var s install.Settings
	var values, meshNetworks string
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Print every object a cluster needs as one YAML stream (for kubectl apply or GitOps)",
		Long: `generate renders, from flags or a values file (-f, the same fields), the objects of
a primary cluster (namespace, discovery's ServiceAccount and least-privilege RBAC, its
Deployment, Service, PodDisruptionBudget, the sidecar-injection webhook unless
--injection-webhook=false, Service istiod with --istiod-service, and the istio
ConfigMap with --mesh-networks), or with --remote those of a remote cluster (its
namespace labelled with its network, and ` + "`horizon-discovery injector`" + ` with its RBAC, Service and
webhook configuration: injected pods get this cluster's identity and reach discovery at
--discovery-address, the primary's gateway), and with
--gateway the east-west network gateway (Deployment, LoadBalancer Service labelled with the
network, and with --expose-services the AUTO_PASSTHROUGH Gateway on 15443).
Every object carries app.kubernetes.io/managed-by=horizon (install leaves the label off
an existing namespace or istio ConfigMap it did not create).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			settings, err := resolveSettings(cmd.Flags(), s, values, meshNetworks)
			if err != nil {
				return err
			}
			us, err := renderUnstructured(settings)
			if err != nil {
				return err
			}
			y, err := install.YAML(us)
			if err != nil {
				return err
			}
			_, err = stdout.Write(y)
			return err
		},
	}
	settingsFlags(gen.Flags(), &s, &values, &meshNetworks)
	cmd.AddCommand(gen)
	return cmd
}

// settingsFlags binds install.Settings to flags, defaults included.
func settingsFlags(fl *pflag.FlagSet, s *install.Settings, values, meshNetworks *string) {
	d := install.Defaults()
	fl.StringVarP(values, "values", "f", "", "values file (YAML): the same settings as the flags; flags given explicitly win")
	fl.StringVar(&s.ClusterID, "cluster-id", d.ClusterID, "this cluster's ID (CLUSTER_ID of its proxies)")
	fl.StringVar(&s.Network, "network", d.Network, "this cluster's network (empty: none)")
	fl.StringVar(&s.Namespace, "namespace", d.Namespace, "the control plane's namespace")
	fl.BoolVar(&s.Remote, "remote", d.Remote, "a remote cluster: no discovery; its pods join the primary's at --discovery-address")
	fl.StringVar(&s.DiscoveryAddress, "discovery-address", d.DiscoveryAddress, "host:port of discovery's TLS port as this cluster's pods reach it")
	fl.Int32Var(&s.Replicas, "replicas", d.Replicas, "discovery replicas (with a PodDisruptionBudget above 1)")
	fl.BoolVar(&s.PlaintextXDS, "plaintext-xds", d.PlaintextXDS, "also serve xDS without TLS or authentication on 15010 (Service port grpc-xds): trusted networks only")
	fl.BoolVar(&s.InjectionWebhook, "injection-webhook", d.InjectionWebhook, "install the sidecar-injection webhook and have discovery serve it (false: no MutatingWebhookConfiguration, e.g. to keep Istio's injector); primary only")
	fl.BoolVar(&s.IstiodService, "istiod-service", d.IstiodService, "add Service istiod (Istio's ports) selecting discovery, so pods Istio injected reach Horizon; refused if an istiod Service Horizon did not create exists; primary only")
	fl.BoolVar(&s.Gateway, "gateway", d.Gateway, "add the east-west network gateway")
	fl.BoolVar(&s.ExposeServices, "expose-services", d.ExposeServices, "add the AUTO_PASSTHROUGH Gateway exposing mesh services on 15443 (needs --gateway)")
	fl.StringVar(meshNetworks, "mesh-networks", "", "meshNetworks file, published in the istio ConfigMap")
	fl.StringVar(&s.TrustDomain, "trust-domain", d.TrustDomain, "SPIFFE trust domain")
	fl.DurationVar(&s.StaleEndpointTTL.Duration, "stale-endpoint-ttl", d.StaleEndpointTTL.Duration,
		"discovery withdraws a remote cluster's endpoints once its API server has not answered that long (0: never, they keep serving); primary only")
	fl.BoolVar(&s.LocalityFailover, "locality-failover", d.LocalityFailover, "discovery orders every service's endpoints by the client's locality, with Istio's outlier detection defaults (services with a DestinationRule follow it); primary only")
	fl.StringVar(&s.DefaultMTLSMode, "default-mtls-mode", d.DefaultMTLSMode, "how sidecars accept inbound connections where no PeerAuthentication says: PERMISSIVE (mTLS and plaintext, Istio's default) or STRICT (mTLS only)")
	fl.StringVar(&s.OutboundTrafficPolicy, "outbound-traffic-policy", d.OutboundTrafficPolicy, "where sidecars send traffic to destinations the mesh does not know: ALLOW_ANY or REGISTRY_ONLY (BlackHoleCluster), as Istio's meshConfig.outboundTrafficPolicy")
	fl.StringVar(&s.DiscoveryImage, "discovery-image", d.DiscoveryImage, "discovery's container image")
	fl.StringVar(&s.ProxyImage, "proxy-image", d.ProxyImage, "the proxy's container image (agent + Envoy)")
	fl.StringVar(&s.ImagePullPolicy, "image-pull-policy", d.ImagePullPolicy, "Always, IfNotPresent or Never")
}

// resolveSettings layers defaults, the values file, then the flags the
// user set, and validates the result (every problem named by field).
func resolveSettings(fl *pflag.FlagSet, fromFlags install.Settings, values, meshNetworks string) (install.Settings, error) {
	s := install.Defaults()
	if values != "" {
		b, err := os.ReadFile(values)
		if err != nil {
			return s, cmdutil.Usagef("--values: %v", err)
		}
		if s, err = install.LoadValues(s, values, b); err != nil {
			return s, cmdutil.Usage(err)
		}
	}
	// Explicit flags win over the file.
	explicit := map[string]func(){
		"cluster-id": func() { s.ClusterID = fromFlags.ClusterID }, "network": func() { s.Network = fromFlags.Network },
		"namespace": func() { s.Namespace = fromFlags.Namespace }, "remote": func() { s.Remote = fromFlags.Remote },
		"discovery-address": func() { s.DiscoveryAddress = fromFlags.DiscoveryAddress },
		"replicas":          func() { s.Replicas = fromFlags.Replicas }, "gateway": func() { s.Gateway = fromFlags.Gateway },
		"plaintext-xds":      func() { s.PlaintextXDS = fromFlags.PlaintextXDS },
		"injection-webhook":  func() { s.InjectionWebhook = fromFlags.InjectionWebhook },
		"istiod-service":     func() { s.IstiodService = fromFlags.IstiodService },
		"expose-services":    func() { s.ExposeServices = fromFlags.ExposeServices },
		"trust-domain":       func() { s.TrustDomain = fromFlags.TrustDomain },
		"stale-endpoint-ttl": func() { s.StaleEndpointTTL = fromFlags.StaleEndpointTTL },
		"discovery-image":    func() { s.DiscoveryImage = fromFlags.DiscoveryImage }, "proxy-image": func() { s.ProxyImage = fromFlags.ProxyImage },
		"locality-failover":       func() { s.LocalityFailover = fromFlags.LocalityFailover },
		"default-mtls-mode":       func() { s.DefaultMTLSMode = fromFlags.DefaultMTLSMode },
		"outbound-traffic-policy": func() { s.OutboundTrafficPolicy = fromFlags.OutboundTrafficPolicy },
		"image-pull-policy":       func() { s.ImagePullPolicy = fromFlags.ImagePullPolicy },
	}
	fl.Visit(func(f *pflag.Flag) {
		if set, ok := explicit[f.Name]; ok {
			set()
		}
	})
	if meshNetworks != "" {
		b, err := os.ReadFile(meshNetworks)
		if err != nil {
			return s, cmdutil.Usagef("--mesh-networks: %v", err)
		}
		if _, diags := meshnetworks.Parse(meshNetworks, b); diags.Err() != nil {
			return s, cmdutil.Usagef("--mesh-networks: %v", diags.Err())
		}
		s.MeshNetworks = string(b)
	}
	if err := s.Validate(); err != nil {
		return s, cmdutil.Usage(fmt.Errorf("%w", err))
	}
	return s, nil
}
