package meshnetworks

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/horizonmesh/horizon/internal/model"
)

type sink struct {
	mu       sync.Mutex
	applied  []*model.MeshNetworks
	rejected []error
}

func (s *sink) SetMeshNetworks(n *model.MeshNetworks, _ model.Diagnostics) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied = append(s.applied, n)
}

func (s *sink) MeshNetworksRejected(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejected = append(s.rejected, err)
}

func (s *sink) counts() (int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.applied), len(s.rejected)
}

func (s *sink) last() *model.MeshNetworks {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied[len(s.applied)-1]
}

func waitCounts(t *testing.T, s *sink, applied, rejected int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		a, r := s.counts()
		if a == applied && r == rejected {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("applied %d rejected %d, want %d and %d", a, r, applied, rejected)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const net2 = "networks:\n  network2:\n    endpoints: [{fromRegistry: c2}]\n    gateways: [{address: 192.0.2.1, port: 443}]\n"

func TestWatchFile(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	path := filepath.Join(t.TempDir(), "mn.yaml")
	if err := os.WriteFile(path, []byte("networks: {bad"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &sink{}
	if err := WatchFile(ctx, path, 10*time.Millisecond, s); err == nil {
		t.Fatal("an invalid file at start must be an error")
	}
	if err := os.WriteFile(path, []byte(net2), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WatchFile(ctx, path, 10*time.Millisecond, s); err != nil {
		t.Fatal(err)
	}
	waitCounts(t, s, 1, 0)
	if err := os.WriteFile(path, []byte(strings.Replace(net2, "port: 443", "port: 0", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	waitCounts(t, s, 1, 1)
	if err := os.WriteFile(path, []byte(strings.Replace(net2, "192.0.2.1", "192.0.2.2", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	waitCounts(t, s, 2, 1)
	if got := s.last().Networks[0].Gateways[0].Address; got != "192.0.2.2" {
		t.Errorf("applied gateway %s", got)
	}
	// An emptied file (say, truncated by a half-done copy) is rejected,
	// never applied as "no networks".
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitCounts(t, s, 2, 2)
	if n := len(s.last().Networks); n != 1 {
		t.Errorf("the last good config was replaced: %d networks", n)
	}
}

func TestWatchConfigMap(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"},
		Data: map[string]string{ConfigMapKey: net2, "mesh": "x"}}
	other := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "istio-system"},
		Data: map[string]string{ConfigMapKey: "garbage: ["}}
	client := fake.NewClientset(cm, other)
	s := &sink{}
	if err := WatchConfigMap(ctx, client, "istio-system", "istio", s); err != nil {
		t.Fatal(err)
	}
	waitCounts(t, s, 1, 0)

	cms := client.CoreV1().ConfigMaps("istio-system")
	update := func(data map[string]string) {
		t.Helper()
		c := cm.DeepCopy()
		c.Data = data
		if _, err := cms.Update(ctx, c, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	update(map[string]string{ConfigMapKey: net2, "mesh": "y"}) // another key: nothing to apply
	update(map[string]string{ConfigMapKey: "networks: {n: {gateways: [{address: 1.2.3.4}]}}"})
	waitCounts(t, s, 1, 1)
	update(map[string]string{ConfigMapKey: strings.Replace(net2, "c2", "c3", 1)})
	waitCounts(t, s, 2, 1)
	if got := s.last().Networks[0].Registries[0]; got != "c3" {
		t.Errorf("registry %s", got)
	}
	if err := cms.Delete(ctx, "istio", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitCounts(t, s, 3, 1)
	if n := len(s.last().Networks); n != 0 {
		t.Errorf("after delete: %d networks", n)
	}
}
