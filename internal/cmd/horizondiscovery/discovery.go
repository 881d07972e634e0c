package horizondiscovery

import (
	"errors"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/horizonmesh/horizon/internal/bootstrap"
	"github.com/horizonmesh/horizon/internal/cmdutil"
)

// newDiscoveryCommand is `horizon-discovery discovery`: its flags set a
// bootstrap.Config, and bootstrap.Run serves it until SIGTERM or SIGINT.
func newDiscoveryCommand(logger *slog.Logger) *cobra.Command {
	var c bootstrap.Config
	d := bootstrap.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "discovery",
		Short: "Run the multi-cluster control plane, serving xDS (CDS, EDS) over ADS",
		Long: `discovery watches the local cluster (--kubeconfig or in-cluster), every remote cluster
joined through a Secret labelled istio/multiCluster=true in --namespace, meshNetworks
(the istio ConfigMap's meshNetworks key, or --mesh-networks FILE) and any --cluster
ID=PATH manifest directories, and serves split-horizon EDS to Envoy proxies.
With neither a kubeconfig nor in-cluster config it runs on manifests alone.

Ops HTTP (--http-addr) serves /ready, /metrics and /debug/{clusters,syncz,eds}.
It listens on loopback by default. In a Pod the kubelet's probes and Prometheus
come from outside the Pod's loopback: give --http-addr :15014. /debug/* is then
reachable too; it only reads what the control plane already holds (what the
plaintext xDS port serves anyway), pages /debug/eds and runs at most 2 requests
at a time (429 beyond).

On SIGTERM or SIGINT it stops accepting, ends xDS streams with Unavailable
("server shutting down", which proxies retry elsewhere), lets in-flight calls
finish for up to --shutdown-grace, then closes what is left and exits 0.
A second signal exits at once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := bootstrap.SignalContext(cmd.Context())
			defer stop()
			err := bootstrap.Run(ctx, c, logger, nil)
			if errors.As(err, new(bootstrap.UsageError)) {
				return cmdutil.Usage(err) // exit 2
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig of the local (config) cluster; empty: in-cluster config if available")
	fl.StringVar(&c.ClusterID, "cluster-id", d.ClusterID, "ID of the local cluster")
	fl.StringVar(&c.Namespace, "namespace", d.Namespace, "namespace of the control plane: remote-cluster Secrets and the istio ConfigMap")
	fl.StringVar(&c.SystemNamespace, "system-namespace", d.SystemNamespace, "namespace whose topology.istio.io/network label names a cluster's network")
	fl.StringVar(&c.MeshNetworksFile, "mesh-networks", "", "meshNetworks file, watched (default: the istio ConfigMap's meshNetworks key)")
	fl.StringArrayVar(&c.Clusters, "cluster", nil, "a cluster from manifests as ID=PATH, watched (repeatable)")
	fl.StringVar(&c.XDSAddr, "xds-addr", d.XDSAddr, "plaintext xDS gRPC address; empty disables it")
	fl.StringVar(&c.HTTPAddr, "http-addr", d.HTTPAddr, "ops HTTP address: /ready, /metrics, /debug/... (loopback by default; in a Pod give :15014 for probes and scraping)")
	fl.DurationVar(&c.HTTPIdleTimeout, "http-idle-timeout", d.HTTPIdleTimeout, "ops HTTP keep-alive connections idle that long are closed")
	fl.DurationVar(&c.ShutdownGrace, "shutdown-grace", d.ShutdownGrace, "on SIGTERM, how long in-flight calls may finish before connections are closed")
	fl.StringVar(&c.InjectAddr, "inject-addr", "", "TLS address of the sidecar-injection webhook (e.g. :15017); empty disables it")
	fl.StringVar(&c.Network, "network", "", "the local cluster's network, given to the sidecars it injects")
	fl.StringVar(&c.ProxyImage, "proxy-image", d.ProxyImage, "image of injected sidecars (agent + Envoy)")
	fl.StringVar(&c.InjectDiscoveryAddress, "inject-discovery-address", "", "discovery's address as injected sidecars dial it (default horizon.NAMESPACE.svc:15012)")
	fl.IntVar(&c.MaxViews, "max-views", d.MaxViews, "most xDS views held at once (a new view past it is refused with ResourceExhausted)")
	fl.IntVar(&c.MaxStreams, "max-streams", d.MaxStreams, "most ADS streams open at once, both ports together")
	fl.IntVar(&c.MaxStreamsPerClient, "max-streams-per-client", d.MaxStreamsPerClient,
		"most ADS streams of one client (a proved workload identity, else a peer address); 0: a quarter of --max-streams")
	fl.DurationVar(&c.Debounce, "debounce", d.Debounce, "quiet period before a push (a push costs what changed, so it can be short: a burst of events within it is one push)")
	fl.DurationVar(&c.DebounceMax, "debounce-max", d.DebounceMax, "longest a stream of changes may delay a push")
	fl.DurationVar(&c.RemoteSyncTimeout, "remote-sync-timeout", d.RemoteSyncTimeout, "how long readiness waits for remote clusters")
	fl.DurationVar(&c.StaleEndpointTTL, "stale-endpoint-ttl", d.StaleEndpointTTL,
		"withdraw a remote cluster's endpoints once its API server has not answered for that long; they return when it answers (0: never, its last state keeps serving)")
	fl.BoolVar(&c.AllowInsecure, "allow-insecure-kubeconfig", false, "accept remote kubeconfigs with exec/auth-provider plugins, file paths, a proxy-url or a server not dialled over TLS")
	fl.StringVar(&c.DomainSuffix, "domain-suffix", d.DomainSuffix, "domain suffix of service hostnames")
	fl.DurationVar(&c.PollInterval, "poll-interval", d.PollInterval, "how often watched files are checked")
	fl.DurationVar(&c.DNSRefresh, "dns-refresh", d.DNSRefresh, "how often gateway DNS names are resolved again (in the background; a changed answer is pushed)")
	fl.StringVar(&c.CACertsDir, "cacerts-dir", "", "plug-in CA directory (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem); default: the cacerts Secret in --namespace, else a self-signed root")
	fl.StringVar(&c.TrustDomain, "trust-domain", d.TrustDomain, "SPIFFE trust domain of workload identities")
	fl.StringVar(&c.OutboundTrafficPolicy, "outbound-traffic-policy", d.OutboundTrafficPolicy, "where sidecars send traffic to destinations the mesh does not know: ALLOW_ANY (to the original destination) or REGISTRY_ONLY (BlackHoleCluster), as Istio's meshConfig.outboundTrafficPolicy")
	fl.BoolVar(&c.LocalityFailover, "locality-failover", d.LocalityFailover, "order every service's endpoints by the client's locality (same zone, same region, same network, then other networks' gateways) with Istio's outlier detection defaults, as a DestinationRule localityLbSetting would; services with a DestinationRule follow it")
	fl.StringVar(&c.DefaultMTLSMode, "default-mtls-mode", d.DefaultMTLSMode, "how sidecars accept inbound connections where no PeerAuthentication says: PERMISSIVE (mTLS and plaintext, Istio's default) or STRICT (mTLS only)")
	fl.StringVar(&c.SecureAddr, "secure-addr", d.SecureAddr, "TLS address for xDS and the CSR service; empty disables it")
	fl.StringSliceVar(&c.SecureSANs, "secure-san", nil, "names and IPs agents dial, put in the TLS port's certificate (default: localhost, loopback, this host's names and addresses)")
	fl.StringSliceVar(&c.TokenAudiences, "token-audience", d.TokenAudiences, "audiences a CSR caller's token must carry")
	fl.DurationVar(&c.CertTTL, "cert-ttl", d.CertTTL, "lifetime of workload certificates")
	fl.DurationVar(&c.MaxCertTTL, "max-cert-ttl", d.MaxCertTTL, "longest lifetime a CSR may ask for")
	c.TokenReview = d.TokenReview
	fl.Float32Var(&c.TokenReview.QPS, "token-review-qps", d.TokenReview.QPS, "TokenReviews per second per cluster, on a client of their own (informers keep theirs)")
	fl.IntVar(&c.TokenReview.Burst, "token-review-burst", d.TokenReview.Burst, "burst of TokenReviews per cluster above --token-review-qps")
	return cmd
}
