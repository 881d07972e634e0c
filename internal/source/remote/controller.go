package remote

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source"
	"github.com/horizonmesh/horizon/internal/source/kube"
)

// MultiClusterLabel marks the Secrets that hold remote clusters' kubeconfigs.
const MultiClusterLabel = "istio/multiCluster"

// Registry is where remote clusters are reported (the control plane).
type Registry = source.Registry

// Options configure the Secret controller.
type Options struct {
	Namespace     string          // where the Secrets live
	LocalCluster  model.ClusterID // a data key naming it is ignored
	AllowInsecure bool            // accept kubeconfigs that run programs or read files
	// SyncTimeout bounds how long a new cluster (or a rotated kubeconfig)
	// may take to sync before an error is reported; a rotation that does
	// not sync in time is abandoned and the old client keeps serving.
	SyncTimeout time.Duration
	// NewClient makes a client from a kubeconfig (kubernetes.NewForConfig
	// by default; tests swap in fakes).
	NewClient func(*rest.Config) (kubernetes.Interface, error)
	// Clients, if set, is kept current with each remote cluster's client.
	Clients *kube.Clients
	// Convert says how each cluster's objects are read into the model.
	Convert kube.Options
	Logger  *slog.Logger
}

// Controller follows the multi-cluster Secrets and runs one kube.Watcher per
// remote cluster they name.
type Controller struct {
	opts Options
	reg  Registry
	log  *slog.Logger

	mu      sync.Mutex
	running map[model.ClusterID]*remoteCluster
	pending map[model.ClusterID]*remoteCluster // rotations waiting to sync
	// refused are the keys whose kubeconfig could not be used: their
	// error shows in the cluster's status until that Secret key is gone,
	// fixed, or served by another Secret.
	refused map[model.ClusterID]refusal

	// For the readiness gate, which the registry evaluates under its own
	// lock: never c.mu there (Reconcile calls the registry holding c.mu).
	listed   atomic.Bool                      // the Secrets have been listed and reconciled once
	joinedAt atomic.Pointer[[]*remoteCluster] // a copy of running
}

// refusal is a Secret key whose kubeconfig was refused, and which one.
type refusal struct {
	source string
	hash   [32]byte
}

type remoteCluster struct {
	id      model.ClusterID
	source  string // "Secret ns/name"
	hash    [32]byte
	watcher *kube.Watcher
	client  kubernetes.Interface
	contact *kube.Contact
	started time.Time
}

// readinessGates is the part of the control plane that holds readiness
// back (optional: a registry without it has no gate).
type readinessGates interface {
	AddReadinessGate(name string, ok func() bool)
}

// RemoteGate names the readiness gate the controller adds.
const RemoteGate = "remote cluster Secrets"

// NewController returns a Controller reporting to reg.
func NewController(opts Options, reg Registry) *Controller {
	if opts.NewClient == nil {
		opts.NewClient = func(c *rest.Config) (kubernetes.Interface, error) { return kubernetes.NewForConfig(c) }
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.SyncTimeout <= 0 {
		opts.SyncTimeout = 30 * time.Second
	}
	c := &Controller{opts: opts, reg: reg, log: opts.Logger,
		running: map[model.ClusterID]*remoteCluster{}, pending: map[model.ClusterID]*remoteCluster{}, refused: map[model.ClusterID]refusal{}}
	c.joinedAt.Store(&[]*remoteCluster{})
	if g, ok := reg.(readinessGates); ok {
		g.AddReadinessGate(RemoteGate, c.Ready)
	}
	return c
}

// Ready reports whether the remote clusters are as ready as readiness
// waits for: the Secrets have been listed (so none is missed because the
// local cluster synced first), and every cluster they name has synced or
// had SyncTimeout since it was joined — measured from its joining, not
// from the process start, so that a control plane that waited long for its
// local API server does not then go ready without its remote clusters.
func (c *Controller) Ready() bool {
	if !c.listed.Load() {
		return false
	}
	for _, rc := range *c.joinedAt.Load() {
		if !rc.watcher.HasSynced() && time.Since(rc.started) < c.opts.SyncTimeout {
			return false
		}
	}
	return true
}

// publish copies running for Ready; call with c.mu held.
func (c *Controller) publish() {
	out := make([]*remoteCluster, 0, len(c.running))
	for _, rc := range c.running {
		out = append(out, rc)
	}
	c.joinedAt.Store(&out)
}

// Run watches the Secrets through the local cluster's client until ctx ends,
// then stops every remote watcher.
func (c *Controller) Run(ctx context.Context, local kubernetes.Interface) {
	factory := informers.NewSharedInformerFactoryWithOptions(local, 0, informers.WithNamespace(c.opts.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = MultiClusterLabel + "=true" }))
	inf := factory.Core().V1().Secrets()
	reconcile := func(any) { c.Reconcile(ctx, listSecrets(inf.Lister())) }
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: reconcile, UpdateFunc: func(_, o any) { reconcile(o) }, DeleteFunc: reconcile,
	})
	factory.Start(ctx.Done())
	if cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		c.Reconcile(ctx, listSecrets(inf.Lister()))
		c.listed.Store(true)
	}
	<-ctx.Done()
	factory.Shutdown()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rc := range c.running {
		rc.watcher.Stop()
	}
	for _, rc := range c.pending {
		rc.watcher.Stop()
	}
}

func listSecrets(l interface {
	List(labels.Selector) ([]*corev1.Secret, error)
}) []*corev1.Secret {
	s, _ := l.List(labels.Everything()) // a cache lister does not fail
	return s
}

type desired struct {
	source string
	data   []byte
}

// Reconcile brings the running remote clusters in line with secrets.
func (c *Controller) Reconcile(ctx context.Context, secrets []*corev1.Secret) {
	// Oldest Secret first, so that when two name the same cluster the first
	// one keeps it.
	sort.Slice(secrets, func(i, j int) bool {
		ti, tj := secrets[i].CreationTimestamp, secrets[j].CreationTimestamp
		if !ti.Equal(&tj) {
			return ti.Before(&tj)
		}
		return secrets[i].Name < secrets[j].Name
	})
	want := map[model.ClusterID]desired{}
	for _, s := range secrets {
		if s.Labels[MultiClusterLabel] != "true" || s.DeletionTimestamp != nil {
			continue
		}
		source := "Secret " + s.Namespace + "/" + s.Name
		keys := make([]string, 0, len(s.Data))
		for k := range s.Data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			id := model.ClusterID(k)
			switch {
			case model.ValidateClusterID(k) != nil:
				c.log.Warn("Secret data key is not a valid cluster ID; ignored", "secret", source, "key", k)
			case id == c.opts.LocalCluster:
				c.log.Warn("Secret names the local cluster; ignored", "secret", source, "cluster", id)
			case want[id].source != "":
				c.log.Warn("cluster already served by another Secret; the first keeps it", "cluster", id,
					"served_by", want[id].source, "ignored", source)
			default:
				want[id] = desired{source: source, data: s.Data[k]}
			}
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.publish()
	// A refused key whose Secret is gone, or which is no longer in it (or
	// is now another Secret's): its error goes with it. A running cluster
	// whose key went is removed below, status and all.
	for id, r := range c.refused {
		if d, ok := want[id]; ok && d.source == r.source {
			continue
		}
		delete(c.refused, id)
		if _, running := c.running[id]; !running {
			c.reg.ClusterError(id, r.source, "")
		}
	}
	for id, rc := range c.running {
		if _, ok := want[id]; !ok {
			c.log.Info("remote cluster removed", "cluster", id, "source", rc.source)
			c.cancelPending(id)
			rc.watcher.Stop()
			delete(c.running, id)
			c.reg.RemoveCluster(id)
			if c.opts.Clients != nil {
				c.opts.Clients.Delete(id)
			}
		}
	}
	for id, d := range want {
		hash := sha256.Sum256(d.data)
		rc, running := c.running[id]
		if p, ok := c.pending[id]; ok && p.hash == hash {
			continue // this rotation is already syncing
		}
		r, refused := c.refused[id]
		if running && rc.hash == hash {
			// A rotation was reverted to the running kubeconfig; if that
			// rotation was refused, its error goes.
			c.cancelPending(id)
			if refused {
				delete(c.refused, id)
				c.reg.ClusterError(id, d.source, "")
			}
			continue
		}
		if refused && r.hash == hash {
			continue // refused already, and reported: not again at every Secret event
		}
		next, err := c.start(id, d, hash)
		if err != nil {
			c.log.Error("remote cluster not joined", "cluster", id, "source", d.source, "error", err)
			c.refused[id] = refusal{source: d.source, hash: hash}
			c.reg.ClusterError(id, d.source, err.Error())
			continue
		}
		delete(c.refused, id)
		if !running {
			c.running[id] = next
			c.reg.SetCluster(c.cluster(id, d.source, next))
			c.setClient(next)
			go c.reportIfNotSynced(ctx, next)
			continue
		}
		// Make before break: the new client must sync before the old stops,
		// so none of the cluster's endpoints disappear in between.
		c.cancelPending(id)
		c.pending[id] = next
		go c.swapWhenSynced(ctx, next)
	}
}

// cluster is a remote cluster's watcher as the registry takes it.
func (c *Controller) cluster(id model.ClusterID, origin string, rc *remoteCluster) source.Cluster {
	return source.Cluster{ID: id, Origin: origin, Source: &kube.Source{Store: rc.watcher.Store, Options: c.opts.Convert,
		IsSynced: rc.watcher.HasSynced, Last: rc.watcher.LastEvent, Contact: rc.contact}}
}

func (c *Controller) start(id model.ClusterID, d desired, hash [32]byte) (*remoteCluster, error) {
	cfg, err := ParseKubeconfig(d.data, c.opts.AllowInsecure)
	if err != nil {
		return nil, fmt.Errorf("%s, key %s: %w", d.source, id, err)
	}
	// No cfg.Timeout: it bounds a whole request, body included, so it cut
	// every watch of the remote cluster after 30 s (a relist storm and late
	// events). An unreachable server is bounded by client-go's dial and TLS
	// handshake timeouts and HTTP/2 health pings; SyncTimeout reports one
	// that never syncs.
	rc := &remoteCluster{id: id, source: d.source, hash: hash, started: time.Now()}
	rc.contact = kube.NewContact(func(reachable bool, msg string) { c.contactChanged(rc, reachable, msg) })
	cfg.Wrap(rc.contact.Wrap)
	if rc.client, err = c.opts.NewClient(cfg); err != nil {
		return nil, fmt.Errorf("%s, key %s: %w", d.source, id, err)
	}
	rc.watcher = kube.NewWatcher(id, rc.client, c.reg.ClusterChanged)
	rc.watcher.Start()
	return rc, nil
}

// contactChanged shows whether the serving client's API server answers in
// the cluster's status: a synced cluster whose API server is gone keeps
// its last endpoints, and this is how that staleness shows. The registry
// is told the cluster changed, so that one withdrawn for staleness (the
// control plane's --stale-endpoint-ttl) comes back at once. A pending
// rotation's client reports nothing (it does not serve).
func (c *Controller) contactChanged(rc *remoteCluster, reachable bool, msg string) {
	c.mu.Lock()
	serving := c.running[rc.id] == rc
	c.mu.Unlock()
	if !serving {
		return
	}
	if reachable {
		c.log.Info("remote cluster reachable again", "cluster", rc.id)
	} else {
		c.log.Warn("remote cluster unreachable; its last known endpoints keep serving", "cluster", rc.id, "error", msg)
	}
	c.reg.ClusterError(rc.id, rc.source, msg)
	c.reg.ClusterChanged(rc.id)
}

func (c *Controller) setClient(rc *remoteCluster) {
	if c.opts.Clients != nil {
		c.opts.Clients.Set(rc.id, rc.client)
	}
}

func (c *Controller) cancelPending(id model.ClusterID) {
	if p, ok := c.pending[id]; ok {
		p.watcher.Stop()
		delete(c.pending, id)
	}
}

// reportIfNotSynced records an error when a new cluster does not sync in
// time (it keeps trying; the error clears when it syncs).
func (c *Controller) reportIfNotSynced(ctx context.Context, rc *remoteCluster) {
	wctx, cancel := context.WithTimeout(ctx, c.opts.SyncTimeout)
	defer cancel()
	if rc.watcher.WaitForSync(wctx) {
		c.reg.ClusterChanged(rc.id)
		return
	}
	if ctx.Err() != nil {
		return
	}
	msg := fmt.Sprintf("not synced after %s", c.opts.SyncTimeout)
	if e := rc.watcher.LastError(); e != "" {
		msg += ": " + e
	}
	if !c.reportServing(rc, msg) {
		return // its Secret or key went meanwhile: nothing to report
	}
	c.log.Error("remote cluster unreachable", "cluster", rc.id, "error", msg)
	if rc.watcher.WaitForSync(ctx) && c.reportServing(rc, "") { // keeps retrying in the background
		c.reg.ClusterChanged(rc.id)
	}
}

// reportServing sets rc's error in the registry if rc still serves its
// cluster, and reports whether it did. Checked and set under c.mu, which
// Reconcile holds to remove a cluster: a timer of a cluster removed
// meanwhile must not bring its entry back to /debug/clusters.
func (c *Controller) reportServing(rc *remoteCluster, msg string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running[rc.id] != rc {
		return false
	}
	c.reg.ClusterError(rc.id, rc.source, msg)
	return true
}

// swapWhenSynced replaces the running watcher with a rotated one once it has
// synced, or abandons the rotation after SyncTimeout.
func (c *Controller) swapWhenSynced(ctx context.Context, next *remoteCluster) {
	wctx, cancel := context.WithTimeout(ctx, c.opts.SyncTimeout)
	defer cancel()
	synced := next.watcher.WaitForSync(wctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending[next.id] != next {
		return // superseded or cancelled meanwhile
	}
	delete(c.pending, next.id)
	if !synced {
		next.watcher.Stop()
		msg := fmt.Sprintf("rotated kubeconfig did not sync within %s; still using the previous one", c.opts.SyncTimeout)
		if e := next.watcher.LastError(); e != "" {
			msg += ": " + e
		}
		c.log.Error("kubeconfig rotation abandoned", "cluster", next.id, "error", msg)
		c.reg.ClusterError(next.id, next.source, msg)
		return
	}
	old := c.running[next.id]
	c.running[next.id] = next
	c.publish()
	c.reg.SetCluster(c.cluster(next.id, next.source, next))
	c.setClient(next)
	if old != nil {
		old.watcher.Stop()
	}
	c.log.Info("remote cluster kubeconfig rotated", "cluster", next.id, "source", next.source)
}
