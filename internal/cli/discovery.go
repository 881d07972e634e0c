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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/horizonmesh/horizon/internal/controlplane"
	"github.com/horizonmesh/horizon/internal/dnscache"
	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/ops"
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
}

func newDiscoveryCommand(logger *slog.Logger) *cobra.Command {
	var c DiscoveryConfig
	cmd := &cobra.Command{
		Use:   "discovery",
		Short: "Run the multi-cluster control plane, serving xDS (CDS, EDS) over ADS",
		Long: `discovery watches the local cluster (--kubeconfig or in-cluster), every remote cluster
joined through a Secret labelled istio/multiCluster=true in --namespace, meshNetworks
(the istio ConfigMap's meshNetworks key, or --mesh-networks FILE) and any --cluster
ID=PATH manifest directories, and serves split-horizon EDS to Envoy proxies.
With neither a kubeconfig nor in-cluster config it runs on manifests alone.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return RunDiscovery(ctx, c, logger, nil)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig of the local (config) cluster; empty: in-cluster config if available")
	fl.StringVar(&c.ClusterID, "cluster-id", "Kubernetes", "ID of the local cluster")
	fl.StringVar(&c.Namespace, "namespace", "istio-system", "namespace of the control plane: remote-cluster Secrets and the istio ConfigMap")
	fl.StringVar(&c.SystemNamespace, "system-namespace", "istio-system", "namespace whose topology.istio.io/network label names a cluster's network")
	fl.StringVar(&c.MeshNetworksFile, "mesh-networks", "", "meshNetworks file, watched (default: the istio ConfigMap's meshNetworks key)")
	fl.StringArrayVar(&c.Clusters, "cluster", nil, "a cluster from manifests as ID=PATH, watched (repeatable)")
	fl.StringVar(&c.XDSAddr, "xds-addr", ":15010", "plaintext xDS gRPC address; empty disables it")
	fl.StringVar(&c.HTTPAddr, "http-addr", ":15014", "ops HTTP address: /ready, /metrics, /debug/...")
	fl.DurationVar(&c.Debounce, "debounce", 50*time.Millisecond, "quiet period before a push")
	fl.DurationVar(&c.DebounceMax, "debounce-max", time.Second, "longest a stream of changes may delay a push")
	fl.DurationVar(&c.RemoteSyncTimeout, "remote-sync-timeout", 30*time.Second, "how long readiness waits for remote clusters")
	fl.BoolVar(&c.AllowInsecure, "allow-insecure-kubeconfig", false, "accept remote kubeconfigs with exec/auth-provider plugins or file paths")
	fl.StringVar(&c.DomainSuffix, "domain-suffix", model.DefaultDomainSuffix, "domain suffix of service hostnames")
	fl.DurationVar(&c.PollInterval, "poll-interval", 2*time.Second, "how often watched files are checked")
	fl.DurationVar(&c.DNSRefresh, "dns-refresh", 30*time.Second, "how long gateway DNS answers are kept before re-resolving")
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
	if c.HTTPAddr == "" {
		return nil, usageErrorf("--http-addr is required")
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
	XDS, HTTP net.Listener
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
		DomainSuffix: c.DomainSuffix, SystemNamespace: c.SystemNamespace,
		Debounce: c.Debounce, DebounceMax: c.DebounceMax, RemoteSyncTimeout: c.RemoteSyncTimeout,
		RefreshInterval: c.DNSRefresh, Resolver: dnscache.New(net.DefaultResolver, c.DNSRefresh),
		Logger: log, Registry: reg,
	})

	restCfg, err := localConfig(c.Kubeconfig)
	if err != nil {
		return err
	}
	if restCfg == nil && len(manifests) == 0 {
		return usageErrorf("nothing to serve: give --kubeconfig, run in a cluster, or give --cluster ID=PATH")
	}
	if c.MeshNetworksFile != "" {
		if err := meshnetworks.WatchFile(ctx, c.MeshNetworksFile, c.PollInterval, cp); err != nil {
			return err
		}
	}
	if restCfg != nil {
		if err := startLocal(ctx, c, restCfg, cp, log); err != nil {
			return err
		}
	}
	for _, m := range manifests {
		if err := manifest.Watch(ctx, m, c.PollInterval, cp); err != nil {
			return err
		}
	}
	go cp.Run(ctx)
	return serve(ctx, c, cp, reg, lis, log)
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

func startLocal(ctx context.Context, c DiscoveryConfig, cfg *rest.Config, cp *controlplane.ControlPlane, log *slog.Logger) error {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("local cluster: %w", err)
	}
	id := model.ClusterID(c.ClusterID)
	w := kube.NewWatcher(id, client, cp.ClusterChanged)
	w.Start()
	go func() { <-ctx.Done(); w.Stop() }()
	cp.SetCluster(id, "kubernetes (local)", true, w.Store, w.HasSynced, w.LastEvent)
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
		AllowInsecure: c.AllowInsecure, SyncTimeout: c.RemoteSyncTimeout, Logger: log}, cp)
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
	return nil
}

func serve(ctx context.Context, c DiscoveryConfig, cp *controlplane.ControlPlane, reg *prometheus.Registry, lis *Listeners, log *slog.Logger) error {
	var err error
	httpLis := lis.HTTP
	if httpLis == nil {
		if httpLis, err = net.Listen("tcp", c.HTTPAddr); err != nil {
			return fmt.Errorf("--http-addr: %w", err)
		}
	}
	xdsLis := lis.XDS
	if xdsLis == nil && c.XDSAddr != "" {
		if xdsLis, err = net.Listen("tcp", c.XDSAddr); err != nil {
			return fmt.Errorf("--xds-addr: %w", err)
		}
	}
	errs := make(chan error, 2)
	hs := &http.Server{Handler: ops.Handler(cp, reg), ReadHeaderTimeout: 10 * time.Second}
	go func() { errs <- hs.Serve(httpLis) }()
	if xdsLis != nil {
		g := server.NewGRPC(ctx, cp.Views, cp.Tracker)
		go func() { errs <- server.Serve(ctx, g, xdsLis) }()
		log.Info("serving xDS", "addr", xdsLis.Addr().String())
	}
	log.Info("serving ops HTTP", "addr", httpLis.Addr().String())
	if lis.Started != nil {
		lis.Started(cp)
	}
	select {
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(shutdown)
		return nil
	case err := <-errs:
		return err
	}
}
