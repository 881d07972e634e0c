// Package controlplane is the live heart of `horizon-discovery discovery`: it holds the
// clusters and meshNetworks the sources report, rebuilds the mesh model when
// they change (debounced), and updates the xDS views that proxies watch.
package controlplane

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/horizonmesh/horizon/internal/dnscache"
	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/xds/server"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// Options configure a ControlPlane.
type Options struct {
	DomainSuffix string
	// Debounce is the quiet period after a change before a push; DebounceMax
	// bounds how long a stream of changes can delay one.
	Debounce    time.Duration
	DebounceMax time.Duration
	// RemoteSyncTimeout bounds how long readiness waits for remote clusters.
	RemoteSyncTimeout time.Duration
	// StaleEndpointTTL withdraws a remote cluster from the mesh once its
	// API server has not answered for that long (its sources report
	// source.Reachability); it comes back when the API server answers.
	// 0: never — its last state keeps serving (fail static).
	StaleEndpointTTL time.Duration
	// Now is the clock staleness is measured with (nil: time.Now); tests
	// set it.
	Now func() time.Time
	// Resolver resolves gateway DNS names, in the background (a name
	// table the push only reads); nil: names never resolve.
	Resolver model.Resolver
	// RefreshInterval is how often those names are resolved again; a
	// changed answer triggers a push (default 30s).
	RefreshInterval time.Duration
	Translate       translate.Options
	// LocalityFailover applies Istio's default locality failover
	// (model.DefaultLocalityPolicy) to every service without a
	// DestinationRule.
	LocalityFailover bool
	// RootNamespace holds the mesh-wide PeerAuthentications (discovery's
	// --namespace; default istio-system).
	RootNamespace string
	// DefaultMTLSMode applies where no PeerAuthentication does
	// (--default-mtls-mode; default model.DefaultMTLSMode, PERMISSIVE).
	DefaultMTLSMode model.MTLSMode
	// MaxViews bounds the xDS views held at once (0: server.DefaultMaxViews).
	MaxViews int
	// Limits bound the streams clients can open.
	Limits   server.Limits
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// ControlPlane assembles the mesh from its sources and feeds the xDS views.
type ControlPlane struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics

	mu       sync.Mutex
	clusters map[model.ClusterID]*clusterState
	failed   map[model.ClusterID]*ClusterStatus // clusters that could not join
	networks *model.MeshNetworks
	netsErr  string
	gateways []*model.IstioGateway // Istio Gateways of the config cluster
	rules    []*model.DestinationRule
	peerAuth *model.PeerAuthentications // never nil: the default applies before any policy
	// defaultPolicy is the mesh default (nil: none), one pointer for the
	// process's life.
	defaultPolicy *model.TrafficPolicy
	pending       time.Time // first change not yet pushed (zero: none)
	gates         map[string]func() bool

	kick  chan struct{}
	seq   pushSeq
	names *dnscache.Table // gateway DNS names, resolved outside the push
	mesh  atomic.Pointer[model.Mesh]
	ready atomic.Bool

	keys  serviceKeys // per service, what CDS and LDS/RDS depend on
	gwKey string      // the Gateways the last CDS/LDS/RDS builds read
	// eds holds, per EDS view, the mesh its last build read and what it
	// built: a push rebuilds only the services whose endpoints changed.
	edsMu sync.Mutex
	eds   map[server.View]edsBuild
	// plain holds, per network, the load assignments of the services
	// without a locality policy, which every EDS view of the network
	// shares: built once per push, not once per locality.
	plain        map[string]*plainBuild
	meshProblems string // the mesh diagnostics last logged
	Views        *server.ViewCache
	Tracker      *server.Tracker
}

// New returns a ControlPlane; Run drives it.
func New(opts Options) *ControlPlane {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 50 * time.Millisecond
	}
	if opts.DebounceMax < opts.Debounce {
		opts.DebounceMax = 10 * opts.Debounce
	}
	if opts.RootNamespace == "" {
		opts.RootNamespace = "istio-system"
	}
	if opts.DefaultMTLSMode == model.MTLSUnset {
		opts.DefaultMTLSMode = model.DefaultMTLSMode
	}
	cp := &ControlPlane{
		opts: opts, log: opts.Logger,
		clusters: map[model.ClusterID]*clusterState{},
		failed:   map[model.ClusterID]*ClusterStatus{},
		gates:    map[string]func() bool{},
		kick:     make(chan struct{}, 1),
		eds:      map[server.View]edsBuild{},
		plain:    map[string]*plainBuild{},
		peerAuth: &model.PeerAuthentications{RootNamespace: opts.RootNamespace, Default: opts.DefaultMTLSMode},
	}
	if opts.LocalityFailover {
		cp.defaultPolicy = model.DefaultLocalityPolicy()
	}
	cp.seq.init()
	if opts.Resolver != nil {
		cp.names = dnscache.NewTable(opts.Resolver, opts.RefreshInterval, cp.changed)
	}
	cp.metrics = newMetrics(opts.Registry, cp)
	cp.Views = server.NewViewCache(cp.build, cp.classify, opts.MaxViews)
	cp.Tracker = server.NewTracker(server.Hooks{
		Ready:       cp.Ready,
		Connected:   func(n string, d int) { cp.metrics.proxies.WithLabelValues(n).Add(float64(d)) },
		NACK:        func(_ server.Proxy, t, _ string) { cp.metrics.nacks.WithLabelValues(server.MetricType(t)).Inc() },
		Pushed:      func(t string) { cp.metrics.pushes.WithLabelValues(server.MetricType(t)).Inc() },
		Unsupported: func() { cp.metrics.unsupported.Inc() },
	}, cp.Views, opts.Limits, cp.log)
	return cp
}

// Mesh returns the mesh of the last push (nil before the first).
func (cp *ControlPlane) Mesh() *model.Mesh { return cp.mesh.Load() }

// Ready reports whether proxies may connect: the first push has happened
// with every local cluster synced, and remote clusters have synced or had
// RemoteSyncTimeout to do so.
func (cp *ControlPlane) Ready() bool { return cp.ready.Load() }

// AddReadinessGate adds a condition readiness waits for (e.g. the
// meshNetworks ConfigMap having been read).
func (cp *ControlPlane) AddReadinessGate(name string, ok func() bool) {
	cp.mu.Lock()
	cp.gates[name] = ok
	cp.mu.Unlock()
}
