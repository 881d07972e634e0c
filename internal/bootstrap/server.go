// Package bootstrap is `horizon-discovery discovery`'s application, as Istio's
// pilot/pkg/bootstrap is pilot-discovery's: its Config, Run (the control
// plane, its sources, the CA) and the servers Run starts and shuts down.
// The command (internal/cli) only binds flags to a Config and calls Run.
package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/horizonmesh/horizon/internal/cmdutil"
	"github.com/horizonmesh/horizon/internal/controlplane"
	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source"
	istiosource "github.com/horizonmesh/horizon/internal/source/istio"
	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/source/manifest"
	"github.com/horizonmesh/horizon/internal/source/meshnetworks"
	"github.com/horizonmesh/horizon/internal/source/remote"
	"github.com/horizonmesh/horizon/internal/xds/server"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// Listeners lets tests pass pre-bound listeners (nil: bind the flags' addresses).
type Listeners struct {
	XDS, HTTP, Secure, Inject net.Listener
	// Started, if set, receives the control plane once it is running.
	Started func(*controlplane.ControlPlane)
}

// Run runs the control plane until ctx ends: it validates c, sets up the
// control plane, its sources (the local cluster and its remote Secrets,
// Istio Gateways, meshNetworks, manifests) and the CA, then serves.
func Run(ctx context.Context, c Config, log *slog.Logger, lis *Listeners) error {
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
		StaleEndpointTTL: c.StaleEndpointTTL,
		RefreshInterval:  c.DNSRefresh, Resolver: net.DefaultResolver,
		Logger: log, Registry: reg,
		MaxViews: c.MaxViews, Limits: server.Limits{MaxStreams: c.MaxStreams, MaxStreamsPerClient: c.MaxStreamsPerClient},
		Translate:        translate.Options{TrustDomain: c.TrustDomain, OutboundTrafficPolicy: c.OutboundTrafficPolicy},
		LocalityFailover: c.LocalityFailover,
		// Istio's root namespace is the control plane's.
		RootNamespace: c.Namespace, DefaultMTLSMode: model.MTLSMode(c.DefaultMTLSMode),
	})

	// CSDS and istioctl's debug status: identities of the control plane's
	// namespace read every proxy's on the TLS port.
	hostname, _ := os.Hostname()
	cp.Tracker.ServeStatus(server.StatusOptions{Namespace: c.Namespace, ID: hostname, Version: cmdutil.Version})

	restCfg, err := LocalConfig(c.Kubeconfig)
	if err != nil {
		return err
	}
	clients := kube.NewClients()
	clients.ReviewQPS, clients.ReviewBurst = c.TokenReview.QPS, c.TokenReview.Burst
	local, contact, err := connectLocal(c, restCfg, clients, cp, log)
	if err != nil {
		return err
	}
	var caL *caLoader
	if c.SecureAddr != "" || lis.Secure != nil {
		if caL, err = loadCA(ctx, c, local, log); err != nil {
			return err
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
					PublishRootCert(ctx, local, a.RootPEM(), log)
				}
			}()
		}
		startLocal(ctx, c, local, contact, clients, cp, log)
		if err := startGateways(ctx, restCfg, local, cp, log); err != nil {
			return err
		}
		if err := startPeerAuthentications(ctx, restCfg, local, cp, log); err != nil {
			return err
		}
	}
	for _, m := range manifests {
		if err := manifest.Watch(ctx, m, c.PollInterval, c.convertOptions(), cp, log); err != nil {
			return err
		}
	}
	go cp.Run(ctx)
	return serve(ctx, &app{c: c, cp: cp, reg: reg, caL: caL, clients: clients, log: log}, lis)
}

// connectLocal makes the local cluster's client (none without restCfg)
// and the Contact following its API server. Like a remote cluster's, the
// local API server's reachability shows in the cluster's status: its last
// state keeps serving (never withdrawn, whatever --stale-endpoint-ttl).
func connectLocal(c Config, restCfg *rest.Config, clients *kube.Clients, cp *controlplane.ControlPlane, log *slog.Logger) (kubernetes.Interface, *kube.Contact, error) {
	if restCfg == nil {
		return nil, nil, nil
	}
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
	local, err := clients.NewClient(restCfg)
	if err != nil {
		return nil, nil, fmt.Errorf("local cluster: %w", err)
	}
	clients.Set(id, local)
	return local, contact, nil
}

// LocalConfig returns the local cluster's client config: the kubeconfig
// flag, else in-cluster config, else nil (manifests only).
func LocalConfig(path string) (*rest.Config, error) {
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

func startLocal(ctx context.Context, c Config, client kubernetes.Interface, contact *kube.Contact, clients *kube.Clients, cp *controlplane.ControlPlane, log *slog.Logger) {
	id := model.ClusterID(c.ClusterID)
	w := kube.NewWatcher(id, client, cp.ClusterChanged)
	w.Start()
	go func() { <-ctx.Done(); w.Stop() }()
	cp.SetCluster(source.Cluster{ID: id, Origin: "kubernetes (local)", Local: true,
		Source: &kube.Source{Store: w.Store, Options: c.convertOptions(), IsSynced: w.HasSynced, Last: w.LastEvent, Contact: contact}})
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

// app is what Run has set up; its servers serve it.
type app struct {
	c       Config
	cp      *controlplane.ControlPlane
	reg     *prometheus.Registry
	caL     *caLoader // nil: no TLS port
	clients *kube.Clients
	log     *slog.Logger
}

// serve runs discovery's servers (servers.go) on their listeners until
// ctx ends or one of them stops, then shuts them all down (shutdown.go).
func serve(ctx context.Context, a *app, lis *Listeners) error {
	ls, err := bindListeners(a.c, lis)
	if err != nil {
		return err
	}
	local := a.clients.Get(model.ClusterID(a.c.ClusterID))
	if ls.inject != nil && (a.caL == nil || local == nil) {
		ls.closeAll()
		return usageErrorf("--inject-addr needs a local cluster (--kubeconfig or in-cluster) and the CA (--secure-addr)")
	}
	s := newServers(ctx)
	defer s.release()
	// The TLS port and injection wait for the CA, which may wait for the
	// API server; ops HTTP and plaintext xDS serve (not ready) meanwhile.
	if ls.secure != nil {
		a.secureXDS(ls.secure).start(s)
	}
	a.opsHTTP(ls.http).start(s)
	if ls.inject != nil {
		a.webhook(ctx, ls.inject, local).start(s)
	}
	if ls.xds != nil {
		a.plaintextXDS(ls.xds).start(s)
	}
	if lis.Started != nil {
		lis.Started(a.cp)
	}
	return s.run(ctx, a.c.ShutdownGrace, a.cp, a.log)
}

// startGateways follows Istio Gateways and DestinationRules in the config
// (local) cluster when their CRDs are installed; without one there are
// simply none of it. The CRDs are looked up until the API server answers
// (it may be down at start): only a definite "not served" means none, and
// readiness waits.
func startGateways(ctx context.Context, cfg *rest.Config, local kubernetes.Interface, cp *controlplane.ControlPlane, log *slog.Logger) error {
	ic, err := istioclient.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("istio client: %w", err)
	}
	var gwRead, drRead atomic.Bool
	cp.AddReadinessGate("Istio Gateways", gwRead.Load)
	cp.AddReadinessGate("Istio DestinationRules", drRead.Load)
	go func() {
		backoff := time.Second
		var served map[string]bool
		for {
			served, err = istioResourcesServed(local)
			if err == nil {
				break
			}
			log.Warn("cannot tell whether Istio Gateways and DestinationRules are served yet; retrying", "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
		}
		if served["destinationrules"] {
			go func() {
				istiosource.WatchDestinationRules(ctx, ic, cp)
				drRead.Store(true)
			}()
		} else {
			log.Info("no networking.istio.io/v1 DestinationRule CRD in the config cluster: no DestinationRules")
			drRead.Store(true)
		}
		if !served["gateways"] {
			log.Info("no networking.istio.io/v1 Gateway CRD in the config cluster: no Istio Gateways")
			gwRead.Store(true)
			return
		}
		istiosource.WatchGateways(ctx, ic, cp)
		gwRead.Store(true)
	}()
	return nil
}

// istioResourcesServed asks the API server which networking.istio.io/v1
// resources it serves; an error means it did not say.
func istioResourcesServed(local kubernetes.Interface) (map[string]bool, error) {
	resources, err := local.Discovery().ServerResourcesForGroupVersion("networking.istio.io/v1")
	if apierrors.IsNotFound(err) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, r := range resources.APIResources {
		out[r.Name] = true
	}
	return out, nil
}
