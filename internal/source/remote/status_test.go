package remote

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/horizonmesh/horizon/internal/controlplane"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// status is what /debug/clusters shows of cluster id ("" and false when
// it shows nothing of it).
func status(cp *controlplane.ControlPlane, id string) (string, bool) {
	for _, s := range cp.Clusters() {
		if s.ID == id {
			return s.Error, true
		}
	}
	return "", false
}

// /debug/clusters shows a refused key's error (naming the Secret, the key
// and the field) while the key is there, and nothing of it once its
// Secret is deleted, the key is removed, or the kubeconfig is fixed.
func TestRefusedKeysLeaveTheStatusWithTheirSecret(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cp := controlplane.New(controlplane.Options{Logger: testkit.Logger()})
	c := NewController(Options{Namespace: "istio-system", LocalCluster: "local", SyncTimeout: 500 * time.Millisecond,
		NewClient: fakeClusters(), Logger: testkit.Logger()}, cp)
	t0 := time.Unix(1000, 0)
	exec := []byte(strings.Replace(goodKubeconfig, "token: abc.def", "exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh}", 1))
	proxied := []byte(strings.Replace(goodKubeconfig, "server: https://203.0.113.5:6443", "server: https://203.0.113.5:6443\n    proxy-url: http://198.51.100.1:3128", 1))
	plain := kubeconfig("http://203.0.113.5:8080")

	c.Reconcile(ctx, []*corev1.Secret{
		secret("s1", t0, map[string][]byte{"c2": exec, "c3": proxied}),
		secret("s2", t0.Add(time.Second), map[string][]byte{"c4": plain}),
	})
	for id, want := range map[string][]string{
		"c2": {"Secret istio-system/s1, key c2", "users[istio-multi].exec", "--allow-insecure-kubeconfig"},
		"c3": {"Secret istio-system/s1, key c3", "clusters[remote].proxy-url"},
		"c4": {"Secret istio-system/s2, key c4", "clusters[remote].server", "http://203.0.113.5:8080"},
	} {
		msg, ok := status(cp, id)
		for _, w := range want {
			if !ok || !strings.Contains(msg, w) {
				t.Errorf("%s: status %q (shown %v), want it to name %q", id, msg, ok, w)
			}
		}
	}

	// c2 fixed, c3's key removed from s1, s2 deleted: c2 joins without an
	// error, c3 and c4 are gone from the status.
	c.Reconcile(ctx, []*corev1.Secret{secret("s1", t0, map[string][]byte{"c2": kubeconfig("https://a.example:6443")})})
	if msg, ok := status(cp, "c2"); !ok || msg != "" {
		t.Errorf("c2 fixed: status %q (shown %v), want joined without an error", msg, ok)
	}
	for _, id := range []string{"c3", "c4"} {
		if msg, ok := status(cp, id); ok {
			t.Errorf("%s: its key or Secret is gone, but the status still shows %q", id, msg)
		}
	}

	// A refused rotation of the running c2 shows on it; reverted, the
	// error goes.
	c.Reconcile(ctx, []*corev1.Secret{secret("s1", t0, map[string][]byte{"c2": plain})})
	if msg, _ := status(cp, "c2"); !strings.Contains(msg, "clusters[remote].server") {
		t.Errorf("refused rotation of c2: status %q", msg)
	}
	c.Reconcile(ctx, []*corev1.Secret{secret("s1", t0, map[string][]byte{"c2": kubeconfig("https://a.example:6443")})})
	if msg, ok := status(cp, "c2"); !ok || msg != "" {
		t.Errorf("rotation reverted: status %q (shown %v)", msg, ok)
	}

	// Another Secret's refused key, then every Secret deleted: nothing is left.
	c.Reconcile(ctx, []*corev1.Secret{secret("s3", t0, map[string][]byte{"c5": exec})})
	if _, ok := status(cp, "c5"); !ok {
		t.Error("c5 refused but not shown")
	}
	c.Reconcile(ctx, nil)
	if got := cp.Clusters(); len(got) != 0 {
		t.Errorf("every Secret deleted, /debug/clusters still shows %+v", got)
	}
}

// The sync timer of a cluster whose Secret went meanwhile reports nothing:
// it used to bring the removed cluster back to /debug/clusters ("not synced
// after ...") when the timer fired after the removal (seen under CI load).
func TestSyncTimeoutOfARemovedClusterReportsNothing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cp := controlplane.New(controlplane.Options{Logger: testkit.Logger()})
	c := NewController(Options{Namespace: "istio-system", LocalCluster: "local", SyncTimeout: 50 * time.Millisecond,
		NewClient: fakeClusters(), Logger: testkit.Logger()}, cp)
	c.Reconcile(ctx, []*corev1.Secret{secret("s", time.Unix(1000, 0), map[string][]byte{"c9": kubeconfig("https://unreachable.example:6443")})})
	c.mu.Lock()
	rc := c.running["c9"]
	c.mu.Unlock()
	if rc == nil {
		t.Fatal("c9 not started")
	}
	c.Reconcile(ctx, nil) // the Secret goes before c9 syncs
	// The removed cluster's timer, run to its end here.
	tctx, tcancel := context.WithTimeout(ctx, time.Second)
	defer tcancel()
	c.reportIfNotSynced(tctx, rc)
	if got := cp.Clusters(); len(got) != 0 {
		t.Fatalf("the removed cluster is back in /debug/clusters: %+v", got)
	}
}
