package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/horizonmesh/horizon/internal/authn"
	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/controlplane"
	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/ops"
	"github.com/horizonmesh/horizon/internal/source"
	istiosource "github.com/horizonmesh/horizon/internal/source/istio"
	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/source/manifest"
	"github.com/horizonmesh/horizon/internal/source/meshnetworks"
	"github.com/horizonmesh/horizon/internal/source/remote"
	"github.com/horizonmesh/horizon/internal/xds/server"
)

// DiscoveryConfig is everything `horizon discovery` is configured with.
type DiscoveryConfig struct {
	Kubeconfig        string
	ClusterID         string
	Namespace         string
	SystemNamespace   string
	MeshNetworksFile  string
	Clusters          []string
	XDSAddr           string
	HTTPAddr          string
	Debounce          time.Duration
	DebounceMax       time.Duration
	RemoteSyncTimeout time.Duration
	AllowInsecure     bool
	DomainSuffix      string
	PollInterval      time.Duration
	DNSRefresh        time.Duration
	// The CA and the TLS port.
	CACertsDir     string
	TrustDomain    string
	SecureAddr     string
	SecureSANs     []string
	TokenAudiences []string
	CertTTL        time.Duration
	MaxCertTTL     time.Duration
	// TokenReview sizes the bearer-token path of both (its own client
	// per cluster, cache, per-peer back-off).
	TokenReview authn.Config

	// HTTPIdleTimeout closes ops HTTP keep-alive connections idle that long.
	HTTPIdleTimeout time.Duration

	// ShutdownGrace bounds a graceful stop: streams are ended with
	// Unavailable and in-flight calls may finish; then connections close.
	ShutdownGrace time.Duration
	// MaxViews and MaxStreams bound what xDS clients can make discovery
	// hold (views are also freed with their last stream).
	MaxViews   int
	MaxStreams int
	// MaxStreamsPerClient bounds one client's streams (a proved identity,
	// else a peer address); 0: a quarter of MaxStreams.
	MaxStreamsPerClient int
	// Sidecar injection (needs a local cluster and the CA): the webhook's
	// TLS address, and what the injected sidecars are told.
	InjectAddr             string
	Network                string
	ProxyImage             string
	InjectDiscoveryAddress string
}

// DefaultDiscoveryConfig is the configuration with every flag at its default.
func DefaultDiscoveryConfig() DiscoveryConfig {
	return DiscoveryConfig{
		ClusterID: "Kubernetes", Namespace: "istio-system", SystemNamespace: "istio-system",
		XDSAddr: ":15010", HTTPAddr: "127.0.0.1:15014", SecureAddr: ":15012", ShutdownGrace: 10 * time.Second,
		HTTPIdleTimeout: ops.DefaultIdleTimeout, MaxViews: server.DefaultMaxViews, MaxStreams: 10000, ProxyImage: "horizon/proxy:latest",
		Debounce: 10 * time.Millisecond, DebounceMax: time.Second, RemoteSyncTimeout: 30 * time.Second,
		DomainSuffix: model.DefaultDomainSuffix, PollInterval: 2 * time.Second, DNSRefresh: 30 * time.Second,
		TrustDomain: "cluster.local", TokenAudiences: []string{"istio-ca"}, CertTTL: 24 * time.Hour, MaxCertTTL: 7 * 24 * time.Hour,
		TokenReview: authn.DefaultConfig(),
	}
}

func newDiscoveryCommand(logger *slog.Logger) *cobra.Command {
	var c DiscoveryConfig
	d := DefaultDiscoveryConfig()
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
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// After the first signal, the default action again: a second
			// one ends the process without waiting for the grace period.
			context.AfterFunc(ctx, stop)
			return RunDiscovery(ctx, c, logger, nil)
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
	fl.BoolVar(&c.AllowInsecure, "allow-insecure-kubeconfig", false, "accept remote kubeconfigs with exec/auth-provider plugins, file paths, a proxy-url or a server not dialled over TLS")
	fl.StringVar(&c.DomainSuffix, "domain-suffix", d.DomainSuffix, "domain suffix of service hostnames")
	fl.DurationVar(&c.PollInterval, "poll-interval", d.PollInterval, "how often watched files are checked")
	fl.DurationVar(&c.DNSRefresh, "dns-refresh", d.DNSRefresh, "how often gateway DNS names are resolved again (in the background; a changed answer is pushed)")
	fl.StringVar(&c.CACertsDir, "cacerts-dir", "", "plug-in CA directory (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem); default: the cacerts Secret in --namespace, else a self-signed root")
	fl.StringVar(&c.TrustDomain, "trust-domain", d.TrustDomain, "SPIFFE trust domain of workload identities")
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

func (c DiscoveryConfig) validate() ([]manifest.ClusterSource, error) {
	if err := model.ValidateClusterID(c.ClusterID); err != nil {
		return nil, usageErrorf("--cluster-id: %v", err)
	}
	if c.Debounce <= 0 || c.DebounceMax < c.Debounce {
		return nil, usageErrorf("--debounce must be > 0 and --debounce-max >= --debounce")
	}
	if c.RemoteSyncTimeout <= 0 || c.PollInterval <= 0 || c.DNSRefresh <= 0 {
		return nil, usageErrorf("--remote-sync-timeout, --poll-interval and --dns-refresh must be > 0")
	}
	if err := model.ValidateTrustDomain(c.TrustDomain); err != nil {
		return nil, usageErrorf("--trust-domain: %v", err)
	}
	if c.InjectAddr != "" {
		if err := c.injectConfig().Validate(); err != nil {
			return nil, usageErrorf("sidecar injection: %v", err)
		}
	}
	if c.MaxViews < 1 || c.MaxStreams < 1 || c.MaxStreamsPerClient < 0 {
		return nil, usageErrorf("--max-views and --max-streams must be at least 1, --max-streams-per-client at least 0")
	}
	if c.HTTPAddr == "" {
		return nil, usageErrorf("--http-addr is required")
	}
	if c.HTTPIdleTimeout <= 0 {
		return nil, usageErrorf("--http-idle-timeout must be > 0")
	}
	if c.ShutdownGrace <= 0 {
		return nil, usageErrorf("--shutdown-grace must be > 0")
	}
	if len(c.TokenAudiences) == 0 {
		return nil, usageErrorf("--token-audience must not be empty")
	}
	if c.CertTTL <= 0 || c.MaxCertTTL < c.CertTTL {
		return nil, usageErrorf("--cert-ttl must be > 0 and --max-cert-ttl >= --cert-ttl")
	}
	if c.TokenReview.QPS <= 0 || c.TokenReview.Burst < 1 {
		return nil, usageErrorf("--token-review-qps must be > 0 and --token-review-burst >= 1")
	}
	var out []manifest.ClusterSource
	seen := map[model.ClusterID]bool{model.ClusterID(c.ClusterID): c.Kubeconfig != ""}
	for _, s := range c.Clusters {
		cs, err := manifest.ParseClusterFlag(s)
		if err != nil {
			return nil, usageError{err}
		}
		if seen[cs.ID] {
			return nil, usageErrorf("--cluster %q: cluster ID %s is defined twice", s, cs.ID)
		}
		seen[cs.ID] = true
		out = append(out, cs)
	}
	return out, nil
}

// Listeners lets tests pass pre-bound listeners (nil: bind the flags' addresses).
type Listeners struct {
	XDS, HTTP, Secure, Inject net.Listener
	// Started, if set, receives the control plane once it is running.
	Started func(*controlplane.ControlPlane)
}

// RunDiscovery runs the control plane until ctx ends.
func RunDiscovery(ctx context.Context, c DiscoveryConfig, log *slog.Logger, lis *Listeners) error {
	manifests, err := c.validate()
	if err != nil {
		return err
	}
	if lis == nil {
		lis = &Listeners{}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cp := controlplane.New(controlplane.Options{
		DomainSuffix: c.DomainSuffix,
		Debounce:     c.Debounce, DebounceMax: c.DebounceMax, RemoteSyncTimeout: c.RemoteSyncTimeout,
		RefreshInterval: c.DNSRefresh, Resolver: net.DefaultResolver,
		Logger: log, Registry: reg,
		MaxViews: c.MaxViews, Limits: server.Limits{MaxStreams: c.MaxStreams, MaxStreamsPerClient: c.MaxStreamsPerClient},
	})

	restCfg, err := localConfig(c.Kubeconfig)
	if err != nil {
		return err
	}
	clients := kube.NewClients()
	clients.ReviewQPS, clients.ReviewBurst = c.TokenReview.QPS, c.TokenReview.Burst
	var local kubernetes.Interface
	if restCfg != nil {
		// Like a remote cluster's, the local API server's reachability
		// shows in the cluster's status: its last state keeps serving.
		id := model.ClusterID(c.ClusterID)
		contact := kube.NewContact(func(reachable bool, msg string) {
			if reachable {
				log.Info("local cluster reachable again", "cluster", id)
			} else {
				log.Warn("local cluster unreachable; its last known state keeps serving", "cluster", id, "error", msg)
			}
			cp.ClusterError(id, "kubernetes (local)", msg)
		})
		restCfg.Wrap(contact.Wrap)
		if local, err = clients.NewClient(restCfg); err != nil {
			return fmt.Errorf("local cluster: %w", err)
		}
		clients.Set(model.ClusterID(c.ClusterID), local)
	}
	var caL *caLoader
	if c.SecureAddr != "" || lis.Secure != nil {
		if c.CACertsDir != "" || local == nil {
			// No API server involved: a bad CA stops the start at once.
			a, err := loadAuthority(ctx, c, local, log)
			if err != nil {
				return err
			}
			caL = loadedCA(a)
		} else {
			caL = startCALoader(ctx, c, local, log)
		}
		cp.AddReadinessGate("CA", caL.loaded.Load)
		if len(c.SecureSANs) == 0 {
			c.SecureSANs = defaultSecureSANs(c.Namespace)
		}
	}
	if restCfg == nil && len(manifests) == 0 {
		return usageErrorf("nothing to serve: give --kubeconfig, run in a cluster, or give --cluster ID=PATH")
	}
	if c.MeshNetworksFile != "" {
		if err := meshnetworks.WatchFile(ctx, c.MeshNetworksFile, c.PollInterval, cp, log); err != nil {
			return err
		}
	}
	if local != nil {
		if caL != nil {
			go func() {
				if a, err := caL.wait(ctx); err == nil {
					publishRootCert(ctx, local, a.RootPEM(), log)
				}
			}()
		}
		startLocal(ctx, c, local, clients, cp, log)
		if err := startGateways(ctx, restCfg, local, cp, log); err != nil {
			return err
		}
	}
	for _, m := range manifests {
		if err := manifest.Watch(ctx, m, c.PollInterval, c.convertOptions(), cp, log); err != nil {
			return err
		}
	}
	go cp.Run(ctx)
	return serve(ctx, c, cp, reg, lis, caL, clients, log)
}

// localConfig returns the local cluster's client config: the kubeconfig
// flag, else in-cluster config, else nil (manifests only).
func localConfig(path string) (*rest.Config, error) {
	if path != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", path, err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if errors.Is(err, rest.ErrNotInCluster) {
		return nil, nil
	}
	return cfg, err
}

// convertOptions say how every cluster's objects are read into the model.
func (c DiscoveryConfig) convertOptions() kube.Options {
	return kube.Options{DomainSuffix: c.DomainSuffix, SystemNamespace: c.SystemNamespace}
}

func startLocal(ctx context.Context, c DiscoveryConfig, client kubernetes.Interface, clients *kube.Clients, cp *controlplane.ControlPlane, log *slog.Logger) {
	id := model.ClusterID(c.ClusterID)
	w := kube.NewWatcher(id, client, cp.ClusterChanged)
	w.Start()
	go func() { <-ctx.Done(); w.Stop() }()
	cp.SetCluster(source.Cluster{ID: id, Origin: "kubernetes (local)", Local: true,
		Source: &kube.Source{Store: w.Store, Options: c.convertOptions(), IsSynced: w.HasSynced, Last: w.LastEvent}})
	go func() { // surface why the local cluster is not syncing
		for !w.HasSynced() && ctx.Err() == nil {
			if e := w.LastError(); e != "" {
				cp.ClusterError(id, "kubernetes (local)", e)
			}
			time.Sleep(time.Second)
		}
		cp.ClusterError(id, "kubernetes (local)", "")
	}()

	rc := remote.NewController(remote.Options{Namespace: c.Namespace, LocalCluster: id,
		AllowInsecure: c.AllowInsecure, SyncTimeout: c.RemoteSyncTimeout, Clients: clients, NewClient: clients.NewClient, Convert: c.convertOptions(), Logger: log}, cp)
	go rc.Run(ctx, client)

	if c.MeshNetworksFile == "" {
		var read atomic.Bool
		cp.AddReadinessGate("meshNetworks ConfigMap", read.Load)
		go func() {
			if err := meshnetworks.WatchConfigMap(ctx, client, c.Namespace, "istio", cp); err != nil {
				log.Error("meshNetworks ConfigMap", "error", err)
				return
			}
			read.Store(true)
		}()
	}
}

func serve(ctx context.Context, c DiscoveryConfig, cp *controlplane.ControlPlane, reg *prometheus.Registry, lis *Listeners,
	caL *caLoader, clients *kube.Clients, log *slog.Logger) error {
	ls, err := bindListeners(c, lis)
	if err != nil {
		return err
	}
	local := clients.Get(model.ClusterID(c.ClusterID))
	if ls.inject != nil && (caL == nil || local == nil) {
		ls.closeAll()
		return usageErrorf("--inject-addr needs a local cluster (--kubeconfig or in-cluster) and the CA (--secure-addr)")
	}
	// ADS streams run on their own context: the servers stop accepting when
	// ctx ends, and only then are the streams ended (with Unavailable).
	streamsCtx, endStreams := context.WithCancel(context.WithoutCancel(ctx))
	defer endStreams()
	serveCtx, stopServing := context.WithCancel(ctx)
	defer stopServing()
	s := &servers{done: make(chan error, 4)}
	startGRPC := func(l net.Listener, newServer func() (*grpc.Server, error), started func()) {
		nl := &notifyListener{Listener: l, closed: make(chan struct{})}
		s.add(nl.closed)
		go func() {
			g, err := newServer()
			if err != nil || !s.addGRPC(g) {
				_ = nl.Close()
				s.done <- err
				return
			}
			started()
			s.done <- server.Serve(serveCtx, g, nl)
		}()
	}
	startHTTP := func(l net.Listener, newServer func() (*http.Server, error), tls bool) {
		s.add(nil)
		go func() {
			h, err := newServer()
			if err != nil || !s.addHTTP(h) {
				l.Close()
				s.done <- err
				return
			}
			if tls {
				err = h.ServeTLS(l, "", "")
			} else {
				err = h.Serve(l)
			}
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			s.done <- err
		}()
	}
	// The TLS port and injection wait for the CA, which may wait for the
	// API server; ops HTTP and plaintext xDS serve (not ready) meanwhile.
	awaitCA := func() (*ca.Authority, error) {
		a, err := caL.wait(serveCtx)
		if serveCtx.Err() != nil {
			return nil, nil //nolint:nilerr // shutting down before the CA came: no error to report
		}
		return a, err
	}
	if ls.secure != nil {
		startGRPC(ls.secure, func() (*grpc.Server, error) {
			a, err := awaitCA()
			if a == nil {
				return nil, err
			}
			return newSecureServer(streamsCtx, c, cp, a, clients, reg, log)
		}, func() {
			log.Info("serving xDS and CSR over TLS", "addr", ls.secure.Addr().String(), "sans", c.SecureSANs)
		})
	}
	startHTTP(ls.http, func() (*http.Server, error) {
		return ops.NewServer(ops.Handler(cp, reg), c.HTTPIdleTimeout), nil
	}, false)
	if ls.inject != nil {
		startHTTP(ls.inject, func() (*http.Server, error) {
			a, err := awaitCA()
			if a == nil {
				return nil, err
			}
			log.Info("serving sidecar injection", "addr", ls.inject.Addr().String())
			return injectionServer(ctx, c, local, a, log)
		}, true)
	}
	if ls.xds != nil {
		startGRPC(ls.xds, func() (*grpc.Server, error) {
			return server.NewGRPC(streamsCtx, cp.Views, cp.Tracker, grpc.ChainStreamInterceptor(shutdownStatus(streamsCtx))), nil
		}, func() { log.Info("serving xDS", "addr", ls.xds.Addr().String()) })
	}
	log.Info("serving ops HTTP", "addr", ls.http.Addr().String())
	if lis.Started != nil {
		lis.Started(cp)
	}
	running := s.count()
	var failed error
	select {
	case <-ctx.Done():
	case failed = <-s.done:
		running--
		stopServing()
	}
	begin := time.Now()
	log.Info("shutting down: no new connections, ending xDS streams", "streams", len(cp.Tracker.Streams()), "grace", c.ShutdownGrace)
	graceCtx, cancelGrace := context.WithTimeout(context.Background(), c.ShutdownGrace)
	defer cancelGrace()
	grpcs, https, closed := s.stop()
	// Streams end once their servers have closed their listeners: a proxy
	// that reconnects at once then finds another replica, not this one.
	for _, ch := range closed {
		select {
		case <-ch:
		case <-graceCtx.Done():
		}
	}
	endStreams()
	httpDone := make(chan struct{})
	go func() {
		for _, h := range https {
			if h.Shutdown(graceCtx) != nil {
				_ = h.Close() // the grace period is over
			}
		}
		close(httpDone)
	}()
	forced, force := false, graceCtx.Done()
	for running > 0 {
		select {
		case err := <-s.done:
			running--
			if err != nil && failed == nil {
				failed = err
			}
		case <-force:
			force, forced = nil, true
			log.Warn("shutdown grace period over: closing the remaining connections", "streams", len(cp.Tracker.Streams()))
			for _, g := range grpcs {
				g.Stop()
			}
		}
	}
	<-httpDone
	log.Info("shutdown complete", "took", time.Since(begin).Round(time.Millisecond), "forced", forced, "streams", len(cp.Tracker.Streams()))
	return failed
}

// shutdownStatus ends with Unavailable "server shutting down" the streams
// that ended because shutdown did: go-control-plane returns nil when its
// context ends, which a client sees as a bare end of stream (EOF).
// Unavailable tells Envoy to reconnect, as for any transient failure.
func shutdownStatus(shutdown context.Context) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		err := handler(srv, ss)
		if err == nil && shutdown.Err() != nil {
			return status.Error(codes.Unavailable, "server shutting down")
		}
		return err
	}
}

// notifyListener tells when the gRPC server has closed it.
type notifyListener struct {
	net.Listener
	once   sync.Once
	closed chan struct{}
}

func (l *notifyListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// startGateways follows Istio Gateways in the config (local) cluster when
// their CRD is installed; without it there are simply none. The CRD is
// looked up until the API server answers (it may be down at start):
// only a definite "not served" means no Gateways, and readiness waits.
func startGateways(ctx context.Context, cfg *rest.Config, local kubernetes.Interface, cp *controlplane.ControlPlane, log *slog.Logger) error {
	ic, err := istioclient.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("istio client: %w", err)
	}
	var read atomic.Bool
	cp.AddReadinessGate("Istio Gateways", read.Load)
	go func() {
		backoff := time.Second
		for {
			served, err := gatewayCRDServed(local)
			if err == nil && !served {
				log.Info("no networking.istio.io/v1 Gateway CRD in the config cluster: no Istio Gateways")
				read.Store(true)
				return
			}
			if err == nil {
				break
			}
			log.Warn("cannot tell whether Istio Gateways are served yet; retrying", "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
		}
		istiosource.WatchGateways(ctx, ic, cp)
		read.Store(true)
	}()
	return nil
}

// gatewayCRDServed asks the API server whether it serves
// networking.istio.io/v1 gateways; an error means it did not say.
func gatewayCRDServed(local kubernetes.Interface) (bool, error) {
	resources, err := local.Discovery().ServerResourcesForGroupVersion("networking.istio.io/v1")
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, r := range resources.APIResources {
		if r.Name == "gateways" {
			return true, nil
		}
	}
	return false, nil
}
