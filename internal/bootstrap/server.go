// Package bootstrap is `horizon discovery`'s application, as Istio's
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
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

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

// Listeners lets tests pass pre-bound listeners (nil: bind the flags' addresses).
type Listeners struct {
	XDS, HTTP, Secure, Inject net.Listener
	// Started, if set, receives the control plane once it is running.
	Started func(*controlplane.ControlPlane)
}

// Run runs the control plane until ctx ends.
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
		RefreshInterval: c.DNSRefresh, Resolver: net.DefaultResolver,
		Logger: log, Registry: reg,
		MaxViews: c.MaxViews, Limits: server.Limits{MaxStreams: c.MaxStreams, MaxStreamsPerClient: c.MaxStreamsPerClient},
	})

	restCfg, err := LocalConfig(c.Kubeconfig)
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
					PublishRootCert(ctx, local, a.RootPEM(), log)
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

func startLocal(ctx context.Context, c Config, client kubernetes.Interface, clients *kube.Clients, cp *controlplane.ControlPlane, log *slog.Logger) {
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

func serve(ctx context.Context, c Config, cp *controlplane.ControlPlane, reg *prometheus.Registry, lis *Listeners,
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
