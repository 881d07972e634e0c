package remote

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source"
	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// registry records what the controller reports.
type registry struct {
	mu      sync.Mutex
	stores  map[model.ClusterID]*kube.Store
	sets    map[model.ClusterID]int
	errors  map[model.ClusterID]string
	changed map[model.ClusterID]int
	sources map[model.ClusterID]*kube.Source
	removed []model.ClusterID
}

func newRegistry() *registry {
	return &registry{stores: map[model.ClusterID]*kube.Store{}, sets: map[model.ClusterID]int{}, errors: map[model.ClusterID]string{},
		changed: map[model.ClusterID]int{}, sources: map[model.ClusterID]*kube.Source{}}
}

func (r *registry) SetCluster(c source.Cluster) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sources[c.ID] = c.Source.(*kube.Source)
	r.stores[c.ID] = r.sources[c.ID].Store
	r.sets[c.ID]++
}
func (r *registry) RemoveCluster(id model.ClusterID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.stores, id)
	r.removed = append(r.removed, id)
}
func (r *registry) ClusterChanged(id model.ClusterID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changed[id]++
}
func (r *registry) ClusterError(id model.ClusterID, _ string, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors[id] = msg
}

func (r *registry) get(id model.ClusterID) (*kube.Store, int, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stores[id], r.sets[id], r.errors[id]
}

func kubeconfig(server string) []byte {
	return []byte(strings.Replace(goodKubeconfig, "https://203.0.113.5:6443", server, 1))
}

func secret(name string, created time.Time, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "istio-system",
		CreationTimestamp: metav1.NewTime(created), Labels: map[string]string{MultiClusterLabel: "true"}}, Data: data}
}

// fakeClusters hands out one fake clientset per API server URL, each holding
// a Service whose name tells which server it came from.
func fakeClusters() func(*rest.Config) (kubernetes.Interface, error) {
	return func(c *rest.Config) (kubernetes.Interface, error) {
		if strings.Contains(c.Host, "unreachable") {
			return kubernetes.NewForConfig(&rest.Config{Host: "http://127.0.0.1:1", Timeout: 100 * time.Millisecond})
		}
		name := strings.NewReplacer("https://", "", ".", "-", ":", "-").Replace(c.Host)
		return fake.NewClientset(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}), nil
	}
}

// waitServedFrom waits until the cluster's registered store holds the
// Service of the API server want (see fakeClusters) and fails otherwise.
func waitServedFrom(t *testing.T, r *registry, id model.ClusterID, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	got := ""
	for time.Now().Before(deadline) {
		if s, _, _ := r.get(id); s != nil {
			if snap, _ := kube.Convert(id, s, kube.Options{}); len(snap.Services) == 1 {
				if got = snap.Services[0].Name; got == want {
					return
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("cluster %s served from %q, want %q", id, got, want)
}

func newController(r *registry) *Controller {
	return NewController(Options{Namespace: "istio-system", LocalCluster: "local", SyncTimeout: 500 * time.Millisecond,
		NewClient: fakeClusters(), Logger: testkit.Logger()}, r)
}

// A remote cluster's client must not bound whole requests: the bound
// covers a watch's body too, and cut every watch of the cluster after it.
func TestRemoteClientDoesNotCutWatches(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan *rest.Config, 1)
	newClient := fakeClusters()
	c := NewController(Options{Namespace: "istio-system", LocalCluster: "local", SyncTimeout: 500 * time.Millisecond,
		NewClient: func(cfg *rest.Config) (kubernetes.Interface, error) {
			select {
			case got <- rest.CopyConfig(cfg):
			default:
			}
			return newClient(cfg)
		}, Logger: testkit.Logger()}, newRegistry())
	c.Reconcile(ctx, []*corev1.Secret{secret("s1", time.Unix(1000, 0), map[string][]byte{"c2": kubeconfig("https://c2.example:6443")})})
	select {
	case cfg := <-got:
		if cfg.Timeout != 0 {
			t.Errorf("remote client's rest.Config.Timeout = %s; it would end every watch after it", cfg.Timeout)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no remote client was made")
	}
}

func TestSecretLifecycle(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := newRegistry()
	c := newController(r)
	t0 := time.Unix(1000, 0)

	// Join: the walkthrough's Secret, key remote_kubecfg; a key naming the
	// local cluster and a second Secret claiming the same cluster are ignored.
	first := secret("iks", t0, map[string][]byte{"remote_kubecfg": kubeconfig("https://a.example:6443"), "local": kubeconfig("https://x.example:1")})
	dup := secret("zzz-dup", t0.Add(time.Hour), map[string][]byte{"remote_kubecfg": kubeconfig("https://b.example:6443")})
	c.Reconcile(ctx, []*corev1.Secret{dup, first})
	waitServedFrom(t, r, "remote_kubecfg", "a-example-6443") // the older Secret's server
	if s, _, _ := r.get("local"); s != nil {
		t.Error("a Secret key naming the local cluster was joined")
	}

	// Rotation: the new kubeconfig's client syncs, then replaces the old.
	rotated := secret("iks", t0, map[string][]byte{"remote_kubecfg": kubeconfig("https://c.example:6443")})
	c.Reconcile(ctx, []*corev1.Secret{rotated})
	waitServedFrom(t, r, "remote_kubecfg", "c-example-6443")
	// The same Secret again changes nothing.
	_, sets, _ := r.get("remote_kubecfg")
	c.Reconcile(ctx, []*corev1.Secret{rotated})
	time.Sleep(50 * time.Millisecond)
	if _, again, _ := r.get("remote_kubecfg"); again != sets {
		t.Errorf("an unchanged Secret re-joined the cluster (%d → %d)", sets, again)
	}

	// A rotation to an unreachable server is abandoned; the old one stays.
	bad := secret("iks", t0, map[string][]byte{"remote_kubecfg": kubeconfig("https://unreachable.example:6443")})
	c.Reconcile(ctx, []*corev1.Secret{bad})
	testkit.WaitFor(t, "the abandoned rotation reported", func() bool {
		_, _, msg := r.get("remote_kubecfg")
		return strings.Contains(msg, "did not sync")
	})
	waitServedFrom(t, r, "remote_kubecfg", "c-example-6443") // the previous server

	// A malformed kubeconfig: reported, the running cluster is untouched.
	c.Reconcile(ctx, []*corev1.Secret{secret("iks", t0, map[string][]byte{"remote_kubecfg": []byte("not: [yaml")})})
	if _, _, msg := r.get("remote_kubecfg"); !strings.Contains(msg, "does not parse") {
		t.Errorf("malformed kubeconfig error = %q", msg)
	}
	if s, _, _ := r.get("remote_kubecfg"); s == nil {
		t.Error("a malformed update withdrew the running cluster")
	}

	// Delete: withdrawn.
	c.Reconcile(ctx, nil)
	if s, _, _ := r.get("remote_kubecfg"); s != nil || fmt.Sprint(r.removed) != "[remote_kubecfg]" {
		t.Errorf("after delete: store %v, removed %v", s, r.removed)
	}
}

func TestUnreachableNewClusterIsReported(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := newRegistry()
	c := newController(r)
	c.Reconcile(ctx, []*corev1.Secret{secret("s", time.Unix(1, 0), map[string][]byte{"c9": kubeconfig("https://unreachable.example:6443")})})
	testkit.WaitFor(t, "the unreachable cluster reported", func() bool {
		_, _, msg := r.get("c9")
		return strings.Contains(msg, "not synced after")
	})
}

// gatedRegistry is a registry with readiness gates, as the control plane.
type gatedRegistry struct {
	*registry
	gates map[string]func() bool
}

func (g *gatedRegistry) AddReadinessGate(name string, ok func() bool) { g.gates[name] = ok }

// Readiness waits for the Secrets to be listed, then for each cluster they
// name to sync or to have had SyncTimeout since it joined.
func TestReadinessGate(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &gatedRegistry{registry: newRegistry(), gates: map[string]func() bool{}}
	c := NewController(Options{Namespace: "istio-system", LocalCluster: "local", SyncTimeout: 2 * time.Second,
		NewClient: fakeClusters(), Logger: testkit.Logger()}, r)
	gate := r.gates[RemoteGate]
	if gate == nil || gate() {
		t.Fatal("no readiness gate, or ready before the Secrets were listed")
	}
	local := fake.NewClientset(
		secret("good", time.Unix(1, 0), map[string][]byte{"c1": kubeconfig("https://a.example:6443")}),
		secret("bad", time.Unix(2, 0), map[string][]byte{"c2": kubeconfig("https://unreachable.example:6443")}))
	begin := time.Now()
	go c.Run(ctx, local)
	waitServedFrom(t, r.registry, "c1", "a-example-6443")
	// One reconcile joins both, c1 first: c2 may join just after c1 is
	// served.
	testkit.WaitFor(t, "c2 to join", func() bool { _, n, _ := r.get("c2"); return n == 1 })
	if gate() {
		t.Error("ready while c2 has neither synced nor had its SyncTimeout")
	}
	for !gate() {
		if time.Since(begin) > 10*time.Second {
			t.Fatal("never ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := time.Since(begin); d < 2*time.Second {
		t.Errorf("ready after %s, before c2's SyncTimeout", d)
	}
}

// The serving client's Contact is the registered source's, so that the
// control plane sees the cluster's staleness; a change of it is reported
// as an error and as a change (a cluster withdrawn for staleness comes back
// at once).
func TestContactChangeReachesTheRegistry(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := newRegistry()
	c := newController(r)
	c.Reconcile(ctx, []*corev1.Secret{secret("s", time.Unix(1, 0), map[string][]byte{"c2": kubeconfig("https://a.example:6443")})})
	waitServedFrom(t, r, "c2", "a-example-6443")
	c.mu.Lock()
	rc := c.running["c2"]
	c.mu.Unlock()
	r.mu.Lock()
	src, before := r.sources["c2"], r.changed["c2"]
	r.mu.Unlock()
	if src.Contact == nil || src.Contact != rc.contact {
		t.Fatalf("the registered source's Contact is %p, the client's %p", src.Contact, rc.contact)
	}
	c.contactChanged(rc, false, "API server unreachable since ...")
	r.mu.Lock()
	after, msg := r.changed["c2"], r.errors["c2"]
	r.mu.Unlock()
	if after != before+1 || !strings.Contains(msg, "unreachable") {
		t.Errorf("after a contact change: %d changes (was %d), error %q", after, before, msg)
	}
}
