// Package controlplane is the live heart of `horizon discovery`: it holds the
// clusters and meshNetworks the sources report, rebuilds the mesh model when
// they change (debounced), and updates the xDS views that proxies watch.
package controlplane

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/internal/dnscache"
	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source"
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
	// Resolver resolves gateway DNS names, in the background (a name
	// table the push only reads); nil: names never resolve.
	Resolver model.Resolver
	// RefreshInterval is how often those names are resolved again; a
	// changed answer triggers a push (default 30s).
	RefreshInterval time.Duration
	Translate       translate.Options
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
	pending  time.Time             // first change not yet pushed (zero: none)
	gates    map[string]func() bool

	kick  chan struct{}
	seq   pushSeq
	names *dnscache.Table // gateway DNS names, resolved outside the push
	mesh  atomic.Pointer[model.Mesh]
	ready atomic.Bool

	cdsKey    string // cluster names of the last CDS build
	routesKey string // what the last LDS/RDS builds depended on
	// eds holds, per EDS view, the mesh its last build read and what it
	// built: a push rebuilds only the services whose endpoints changed.
	edsMu        sync.Mutex
	eds          map[server.View]edsBuild
	meshProblems string // the mesh diagnostics last logged
	Views        *server.ViewCache
	Tracker      *server.Tracker
}

// clusterState is one cluster as a source reported it.
type clusterState struct {
	id       model.ClusterID
	origin   string
	local    bool
	src      source.ClusterSource
	added    time.Time // first SetCluster of this ID
	updated  time.Time // latest SetCluster (a rotation swaps the store)
	err      string
	problems string // the conversion errors last logged, to log each set once
	snap     *model.ClusterSnapshot
	dirty    bool
}

// New returns a ControlPlane; Run drives it.
func New(opts Options) *ControlPlane {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
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
	cp := &ControlPlane{
		opts: opts, log: opts.Logger,
		clusters: map[model.ClusterID]*clusterState{},
		failed:   map[model.ClusterID]*ClusterStatus{},
		gates:    map[string]func() bool{},
		kick:     make(chan struct{}, 1),
		eds:      map[server.View]edsBuild{},
	}
	cp.seq.init()
	if opts.Resolver != nil {
		cp.names = dnscache.NewTable(opts.Resolver, opts.RefreshInterval, cp.changed)
	}
	cp.metrics = newMetrics(opts.Registry, cp)
	cp.Views = server.NewViewCache(cp.build, cp.Classify, opts.MaxViews)
	cp.Tracker = server.NewTracker(server.Hooks{
		Ready:       cp.Ready,
		Connected:   func(n string, d int) { cp.metrics.proxies.WithLabelValues(n).Add(float64(d)) },
		NACK:        func(_ server.Proxy, t, _ string) { cp.metrics.nacks.WithLabelValues(server.TypeName(t)).Inc() },
		Pushed:      func(t string) { cp.metrics.pushes.WithLabelValues(server.TypeName(t)).Inc() },
		Unsupported: func() { cp.metrics.unsupported.Inc() },
	}, cp.Views, opts.Limits, cp.log)
	return cp
}

// Classify maps a proxy to its view of a type. EDS depends only on the
// proxy's network. Listeners and clusters are shared by every sidecar of a
// cluster whose workload serves the same ports (its inbound side); routes by
// every sidecar of a cluster (they name its ClusterIPs).
//
// A proxy must stand somewhere the mesh knows: its network one the mesh
// names (meshNetworks, network labels, gateways) and its cluster one that
// joined. Otherwise it is refused with FailedPrecondition (it retries, and
// is served once its network or cluster appears). This is what bounds the
// views: without it every distinct NETWORK a client invents would be a
// view holding a copy of the whole mesh's endpoints.
func (cp *ControlPlane) Classify(typeURL string, p server.Proxy) (translate.View, error) {
	if err := cp.knows(p); err != nil {
		return translate.View{}, err
	}
	tp := translate.Proxy{Network: p.Network, Cluster: p.Cluster, Labels: p.Labels}
	if p.Router {
		tp.Role = translate.RoleRouter
	} else if m := cp.mesh.Load(); m != nil && (typeURL == resource.ClusterType || typeURL == resource.ListenerType) {
		tp.Inbound = m.PortsServedBy(p.Cluster, p.IPs)
	}
	if v, ok := translate.ViewOf(typeURL, tp); ok {
		return v, nil
	}
	return translate.View{}, server.UnsupportedType(typeURL)
}

// knows checks that the proxy's network and cluster are part of the mesh.
func (cp *ControlPlane) knows(p server.Proxy) error {
	if p.Network != "" {
		m := cp.mesh.Load()
		if m == nil || !slices.Contains(m.Networks(), p.Network) {
			var known []string
			if m != nil {
				known = m.Networks()
			}
			return status.Errorf(codes.FailedPrecondition, "node %s: network %q is not known to the mesh (known: %s); "+
				"a network is known from meshNetworks, a topology.istio.io/network label or a gateway",
				cutID(p.ID), p.Network, strings.Join(known, ", "))
		}
	}
	if p.Cluster != "" {
		cp.mu.Lock()
		_, ok := cp.clusters[p.Cluster]
		cp.mu.Unlock()
		if !ok {
			return status.Errorf(codes.FailedPrecondition, "node %s: cluster %q has not joined the mesh", cutID(p.ID), p.Cluster)
		}
	}
	return nil
}

func cutID(id string) string {
	if len(id) > 64 {
		return strconv.Quote(id[:64]) + "..."
	}
	return strconv.Quote(id)
}

// SetIstioGateways applies the config cluster's valid Gateways.
func (cp *ControlPlane) SetIstioGateways(gws []*model.IstioGateway) {
	cp.mu.Lock()
	cp.gateways = gws
	cp.mu.Unlock()
	cp.changed()
}

// IstioGatewayError reports an invalid Gateway (left out).
func (cp *ControlPlane) IstioGatewayError(object, msg string) {
	cp.log.Error("Gateway ignored", "gateway", object, "error", msg)
}

// EDSView is the view of a sidecar's endpoints on network.
func EDSView(network string) translate.View { return translate.View{Network: network} }

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

// SetCluster adds or replaces a cluster. Replacing is how a kubeconfig
// rotation is made before it breaks: the source calls SetCluster with the
// new, synced store and only then stops the old watcher.
func (cp *ControlPlane) SetCluster(c source.Cluster) {
	id := c.ID
	cp.mu.Lock()
	added := time.Now()
	if old, ok := cp.clusters[id]; ok {
		added = old.added
	}
	cp.clusters[id] = &clusterState{id: id, origin: c.Origin, local: c.Local, src: c.Source,
		added: added, updated: time.Now(), dirty: true}
	delete(cp.failed, id)
	cp.mu.Unlock()
	cp.log.Info("cluster set", "cluster", id, "source", c.Origin)
	cp.changed()
}

// RemoveCluster withdraws a cluster and its endpoints.
func (cp *ControlPlane) RemoveCluster(id model.ClusterID) {
	cp.mu.Lock()
	_, ok := cp.clusters[id]
	delete(cp.clusters, id)
	delete(cp.failed, id)
	cp.mu.Unlock()
	if ok {
		cp.log.Info("cluster removed", "cluster", id)
		cp.metrics.clusterSynced.DeleteLabelValues(string(id))
		cp.changed()
	}
}

// ClusterChanged marks a cluster's store as changed.
func (cp *ControlPlane) ClusterChanged(id model.ClusterID) {
	cp.mu.Lock()
	if c, ok := cp.clusters[id]; ok {
		c.dirty = true
	}
	cp.mu.Unlock()
	cp.changed()
}

// ClusterError records why a cluster is unhealthy or could not join; an
// empty msg clears it. A cluster that never joined shows in Clusters with
// its error.
func (cp *ControlPlane) ClusterError(id model.ClusterID, origin, msg string) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if c, ok := cp.clusters[id]; ok {
		c.err = msg
	} else if msg != "" {
		cp.failed[id] = &ClusterStatus{ID: string(id), Source: origin, Error: msg}
	} else {
		delete(cp.failed, id)
	}
	if msg != "" {
		cp.metrics.clusterErrors.WithLabelValues(string(id)).Inc()
	}
}

// SetMeshNetworks applies a validated meshNetworks config.
func (cp *ControlPlane) SetMeshNetworks(n *model.MeshNetworks, warnings model.Diagnostics) {
	for _, w := range warnings {
		cp.log.Warn("meshNetworks", "problem", w.String())
	}
	cp.mu.Lock()
	cp.networks, cp.netsErr = n, ""
	cp.mu.Unlock()
	cp.changed()
}

// MeshNetworksRejected records an invalid meshNetworks change; the last good
// config keeps serving.
func (cp *ControlPlane) MeshNetworksRejected(err error) {
	cp.mu.Lock()
	cp.netsErr = err.Error()
	cp.mu.Unlock()
	cp.metrics.meshNetErrors.Inc()
	cp.log.Error("meshNetworks change rejected; the previous config keeps serving", "error", err)
}

func (cp *ControlPlane) changed() {
	cp.mu.Lock()
	if cp.pending.IsZero() {
		cp.pending = time.Now()
	}
	cp.mu.Unlock()
	select {
	case cp.kick <- struct{}{}:
	default:
	}
}

// Run debounces changes into pushes until ctx ends.
func (cp *ControlPlane) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second) // readiness deadlines
	defer tick.Stop()
	if cp.names != nil {
		go cp.names.Run(ctx)
	}
	var quiet <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-cp.kick:
			cp.mu.Lock()
			first := cp.pending
			cp.mu.Unlock()
			wait := min(cp.opts.Debounce, time.Until(first.Add(cp.opts.DebounceMax)))
			quiet = time.After(max(wait, 0))
		case <-quiet:
			quiet = nil
			cp.push(ctx)
		case <-tick.C:
			if !cp.ready.Load() {
				cp.push(ctx)
			}
		}
	}
}

// push rebuilds the mesh from every synced cluster and updates the views.
func (cp *ControlPlane) push(ctx context.Context) {
	cp.mu.Lock()
	first := cp.pending
	cp.pending = time.Time{}
	var snaps []*model.ClusterSnapshot
	allLocal, allRemote := true, true
	for _, c := range cp.clusters {
		synced := c.src.Synced()
		cp.metrics.clusterSynced.WithLabelValues(string(c.id)).Set(b2f(synced))
		if !synced {
			if c.local {
				allLocal = false
			} else if time.Since(c.added) < cp.opts.RemoteSyncTimeout {
				allRemote = false
			}
			if c.snap == nil {
				continue // never synced: nothing to serve yet
			}
		} else if c.dirty || c.snap == nil {
			snap, diags := c.src.Snapshot(c.id)
			// Every event re-converts the cluster: log a set of problems
			// when it changes, not on every push.
			if p := fmt.Sprint(diags.Errors()); p != c.problems {
				c.problems = p
				for _, d := range diags.Errors() {
					cp.log.Warn("object skipped", "cluster", c.id, "problem", d.String())
				}
			}
			c.snap, c.dirty = snap, false
		}
		snaps = append(snaps, c.snap)
	}
	nets := cp.networks
	gatesOK := true
	for _, ok := range cp.gates {
		gatesOK = gatesOK && ok()
	}
	cp.mu.Unlock()

	in := model.BuildInput{Clusters: snaps, Networks: nets, DomainSuffix: cp.opts.DomainSuffix}
	if cp.names != nil {
		in.Names = cp.names
	}
	m, diags := model.Build(in)
	if cp.names != nil {
		cp.names.Want(m.GatewayNames()) // new names: resolved, then pushed again
	}
	if p := fmt.Sprint(diags); p != cp.meshProblems {
		cp.meshProblems = p
		for _, d := range diags {
			cp.log.Warn("mesh", "severity", d.Severity.String(), "problem", d.String())
		}
	}
	cp.mesh.Store(m)
	cp.updateViews(m)
	if !first.IsZero() {
		cp.metrics.pushLatency.Observe(time.Since(first).Seconds())
	}
	if !cp.ready.Load() && allLocal && gatesOK && allRemote {
		cp.ready.Store(true)
		cp.log.Info("ready: serving xDS", "clusters", len(snaps), "services", len(m.Services()))
	}
	cp.seq.completed()
}

// updateViews rebuilds CDS only when the clusters changed, LDS and RDS only
// when what they read changed (services, ports, ClusterIPs, Gateways), and
// EDS for every network view that has proxies — there, only the services
// whose endpoints changed (see buildEDS).
func (cp *ControlPlane) updateViews(m *model.Mesh) {
	rebuildCDS, rebuildRoutes := false, false
	cp.mu.Lock()
	gwKey := fmt.Sprint(len(cp.gateways))
	for _, g := range cp.gateways {
		gwKey += fmt.Sprintf("%v", *g)
	}
	cp.mu.Unlock()
	if key := cdsKey(m, cp.opts.Translate) + gwKey; key != cp.cdsKey {
		cp.cdsKey, rebuildCDS = key, true
	}
	if key := routesKey(m) + gwKey; key != cp.routesKey {
		cp.routesKey, rebuildRoutes = key, true
	}
	views := cp.Views.Views()
	sort.Slice(views, func(i, j int) bool { return views[i].String() < views[j].String() })
	cp.forgetEDS(views)
	for _, v := range views {
		switch {
		case v.TypeURL == resource.ClusterType && !rebuildCDS:
			continue // clusters depend on no endpoint: skip the build
		case (v.TypeURL == resource.ListenerType || v.TypeURL == resource.RouteType) && !rebuildRoutes:
			continue // nor do listeners and routes
		}
		if _, err := cp.Views.Update(v, cp.build(v)); err != nil {
			cp.log.Error("view update", "view", v.String(), "error", err)
		}
	}
}

// build builds one view's resources from the current mesh with
// translate.Build — sidecar EDS incrementally (buildEDS), to the same
// result. ViewCache calls it for a view's first proxy; updateViews for
// every change.
func (cp *ControlPlane) build(v server.View) map[string]types.Resource {
	m := cp.mesh.Load()
	if m == nil {
		return map[string]types.Resource{}
	}
	cp.metrics.builds.WithLabelValues(server.TypeName(v.TypeURL)).Inc()
	if v.TypeURL == resource.EndpointType && v.Key.Role == translate.RoleSidecar {
		return cp.buildEDS(m, v)
	}
	return translate.Build(cp.input(m), v.TypeURL, v.Key)
}

// input is what translate.Build reads besides the view.
func (cp *ControlPlane) input(m *model.Mesh) translate.Input {
	cp.mu.Lock()
	gws := cp.gateways
	cp.mu.Unlock()
	return translate.Input{Mesh: m, Gateways: gws, Options: cp.opts.Translate}
}

// routesKey identifies what sidecar listeners and routes read from the
// mesh: every service's hostname, ports and ClusterIPs (not endpoints).
func routesKey(m *model.Mesh) string {
	var b strings.Builder
	for _, s := range m.Services() {
		b.WriteString(s.Hostname)
		for _, p := range s.Ports {
			fmt.Fprintf(&b, " %s/%d/%s", p.Name, p.Port, p.Protocol)
		}
		clusters := make([]string, 0, len(s.ClusterIPs))
		for c := range s.ClusterIPs {
			clusters = append(clusters, string(c))
		}
		sort.Strings(clusters)
		for _, c := range clusters {
			fmt.Fprintf(&b, " %s=%v", c, s.ClusterIPs[model.ClusterID(c)])
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// cdsKey identifies the CDS output: clusters depend only on the service
// ports and the identities behind them, so an endpoint-only change keeps the
// key and skips the build.
func cdsKey(m *model.Mesh, opts translate.Options) string {
	var b strings.Builder
	for _, s := range m.Services() {
		for _, p := range s.Ports {
			b.WriteString(translate.ClusterName(p.Port, s.Hostname))
			for _, id := range translate.SpiffeIDs(s, p.Port, opts) {
				b.WriteString(" " + id)
			}
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
