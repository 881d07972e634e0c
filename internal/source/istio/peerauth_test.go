package istio

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	securityapi "istio.io/api/security/v1beta1"
	typeapi "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	securityv1beta1 "istio.io/client-go/pkg/apis/security/v1beta1"
	"istio.io/client-go/pkg/clientset/versioned/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	clientfeatures "k8s.io/client-go/features"
	clientfeaturestesting "k8s.io/client-go/features/testing"
	k8stesting "k8s.io/client-go/testing"

	"github.com/horizonmesh/horizon/internal/model"
)

var created = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func finance() *securityv1.PeerAuthentication {
	return &securityv1.PeerAuthentication{
		ObjectMeta: metav1.ObjectMeta{Name: "finance", Namespace: "foo", CreationTimestamp: metav1.NewTime(created)},
		Spec: securityapi.PeerAuthentication{
			Selector: &typeapi.WorkloadSelector{MatchLabels: map[string]string{"app": "finance"}},
			Mtls:     &securityapi.PeerAuthentication_MutualTLS{Mode: securityapi.PeerAuthentication_MutualTLS_STRICT},
			PortLevelMtls: map[uint32]*securityapi.PeerAuthentication_MutualTLS{
				8080: {Mode: securityapi.PeerAuthentication_MutualTLS_DISABLE},
				9090: {}, // UNSET: inherits
			},
		},
	}
}

func wantFinance() *model.PeerAuthentication {
	return &model.PeerAuthentication{Name: "finance", Namespace: "foo", Created: created,
		Selector: map[string]string{"app": "finance"}, Mode: model.MTLSStrict,
		PortLevel: map[uint32]model.MTLSMode{8080: model.MTLSDisable, 9090: model.MTLSUnset}}
}

func TestConvertPeerAuthentication(t *testing.T) {
	pa := finance()
	got, err := ConvertPeerAuthentication(pa.ObjectMeta, &pa.Spec)
	if err != nil {
		t.Fatal(err)
	}
	if want := wantFinance(); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	// Namespace- and mesh-wide: no selector, no mode (UNSET).
	ns := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "istio-system"}}
	got, err = ConvertPeerAuthentication(ns.ObjectMeta, &ns.Spec)
	if err != nil || got.Selector != nil || got.Mode != model.MTLSUnset || got.PortLevel != nil {
		t.Fatalf("empty spec: %+v, %v", got, err)
	}
}

func TestConvertPeerAuthenticationErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*securityapi.PeerAuthentication)
		want   string
	}{
		{"portLevelMtls without selector", func(s *securityapi.PeerAuthentication) { s.Selector = nil },
			"spec.portLevelMtls requires spec.selector.matchLabels"},
		{"portLevelMtls with an empty selector", func(s *securityapi.PeerAuthentication) { s.Selector.MatchLabels = nil },
			"spec.portLevelMtls requires spec.selector.matchLabels"},
		{"unknown mode", func(s *securityapi.PeerAuthentication) { s.Mtls.Mode = 7 }, "spec.mtls.mode: unknown mode 7"},
		{"unknown port mode", func(s *securityapi.PeerAuthentication) { s.PortLevelMtls[8080].Mode = 9 },
			"spec.portLevelMtls[8080].mode: unknown mode 9"},
		{"port 0", func(s *securityapi.PeerAuthentication) { s.PortLevelMtls[0] = s.PortLevelMtls[8080] },
			"spec.portLevelMtls[0]: port out of range"},
		{"port 65536", func(s *securityapi.PeerAuthentication) { s.PortLevelMtls[65536] = s.PortLevelMtls[8080] },
			"spec.portLevelMtls[65536]: port out of range"},
		{"empty label key", func(s *securityapi.PeerAuthentication) { s.Selector.MatchLabels[""] = "x" },
			"spec.selector.matchLabels has an empty key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pa := finance()
			tc.mutate(&pa.Spec)
			got, err := ConvertPeerAuthentication(pa.ObjectMeta, &pa.Spec)
			if err == nil {
				t.Fatalf("accepted: %+v", got)
			}
			if !strings.HasPrefix(err.Error(), "PeerAuthentication foo/finance: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q: want it to name foo/finance and contain %q", err, tc.want)
			}
		})
	}
}

func TestLoadPeerAuthenticationsFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "pa.yaml")
	if err := os.WriteFile(good, []byte(`apiVersion: v1
kind: Service
metadata: {name: ignored}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: web, namespace: sample}
spec:
  selector: {matchLabels: {app: web}}
  mtls: {mode: UNSET}
  portLevelMtls:
    9000: {mode: DISABLE}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	pas, diags := LoadPeerAuthenticationsFile(good)
	if diags.Err() != nil || len(pas) != 2 {
		t.Fatalf("%d policies, %v", len(pas), diags)
	}
	if pas[0].Namespace != "istio-system" || pas[0].Mode != model.MTLSStrict || pas[0].Selector != nil {
		t.Errorf("mesh policy %+v", pas[0])
	}
	if pas[1].Name != "web" || pas[1].Mode != model.MTLSUnset || pas[1].PortLevel[9000] != model.MTLSDisable {
		t.Errorf("v1beta1 workload policy %+v", pas[1])
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: nosel, namespace: ns}
spec:
  portLevelMtls:
    9000: {mode: DISABLE}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, diags := LoadPeerAuthenticationsFile(bad); diags.Err() == nil ||
		!strings.Contains(diags.Err().Error(), "PeerAuthentication ns/nosel: spec.portLevelMtls requires spec.selector") {
		t.Errorf("portLevelMtls without selector: %v", diags.Err())
	}
	mode := filepath.Join(dir, "mode.yaml")
	if err := os.WriteFile(mode, []byte(`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: typo, namespace: ns}
spec:
  mtls: {mode: STRCT}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, diags := LoadPeerAuthenticationsFile(mode); diags.Err() == nil || !strings.Contains(diags.Err().Error(), "PeerAuthentication") {
		t.Errorf("unknown mode name: %v", diags.Err())
	}
}

// paSink records the sink's calls in order.
type paSink struct {
	mu     sync.Mutex
	sets   [][]*model.PeerAuthentication
	errs   []string
	notify chan struct{}
}

func (s *paSink) SetPeerAuthentications(p []*model.PeerAuthentication) {
	s.mu.Lock()
	s.sets = append(s.sets, p)
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *paSink) PeerAuthenticationError(object, msg string) {
	s.mu.Lock()
	s.errs = append(s.errs, object+": "+msg)
	s.mu.Unlock()
}

// waitFor waits until the last set satisfies ok (called with s.mu held).
func (s *paSink) waitFor(t *testing.T, what string, ok func([]*model.PeerAuthentication) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		done := len(s.sets) > 0 && ok(s.sets[len(s.sets)-1])
		s.mu.Unlock()
		if done {
			return
		}
		select {
		case <-s.notify:
		case <-deadline:
			t.Fatalf("the sink never got %s; sets %d, errors %q", what, len(s.sets), s.errs)
		}
	}
}

func watchFake(t *testing.T, version string) (*fake.Clientset, *paSink) {
	t.Helper()
	clientfeaturestesting.SetFeatureDuringTest(t, clientfeatures.WatchListClient, false)
	client := fake.NewSimpleClientset()
	watching := make(chan struct{})
	var once sync.Once
	client.PrependWatchReactor("peerauthentications", func(a k8stesting.Action) (bool, watch.Interface, error) {
		w, err := client.Tracker().Watch(a.GetResource(), a.GetNamespace())
		if err != nil {
			return false, nil, err
		}
		once.Do(func() { close(watching) })
		return true, w, nil
	})
	sink := &paSink{notify: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	returned := make(chan error, 1)
	go func() { returned <- WatchPeerAuthentications(ctx, client, version, sink) }()
	t.Cleanup(cancel)
	select {
	case <-watching:
	case <-time.After(10 * time.Second):
		t.Fatal("the informer never opened its watch")
	}
	select {
	case err := <-returned:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WatchPeerAuthentications did not return once synced")
	}
	return client, sink
}

// The v1 watch follows adds, updates and deletes; an invalid object is
// reported by name and left out while the valid ones keep applying.
func TestWatchPeerAuthentications(t *testing.T) {
	ctx := context.Background()
	client, sink := watchFake(t, "v1")
	sink.waitFor(t, "an empty first set", func(p []*model.PeerAuthentication) bool { return len(p) == 0 })
	pas := client.SecurityV1().PeerAuthentications
	if _, err := pas("foo").Create(ctx, finance(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sink.waitFor(t, "foo/finance", func(p []*model.PeerAuthentication) bool {
		return len(p) == 1 && reflect.DeepEqual(p[0], wantFinance())
	})
	bad := finance()
	bad.Name = "broken"
	bad.Spec.Selector = nil
	if _, err := pas("foo").Create(ctx, bad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sink.waitFor(t, "the valid one only, after the invalid one came", func(p []*model.PeerAuthentication) bool {
		return len(p) == 1 && p[0].Name == "finance" && len(sink.errs) > 0
	})
	sink.mu.Lock()
	if !strings.Contains(sink.errs[0], "foo/broken: PeerAuthentication foo/broken: spec.portLevelMtls requires") {
		t.Errorf("error %q", sink.errs[0])
	}
	sink.mu.Unlock()
	upd := finance()
	upd.Spec.Mtls.Mode = securityapi.PeerAuthentication_MutualTLS_PERMISSIVE
	if _, err := pas("foo").Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	sink.waitFor(t, "the update", func(p []*model.PeerAuthentication) bool {
		return len(p) == 1 && p[0].Mode == model.MTLSPermissive
	})
	if err := pas("foo").Delete(ctx, "finance", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	sink.waitFor(t, "nothing after the delete", func(p []*model.PeerAuthentication) bool { return len(p) == 0 })
}

// An API server serving only v1beta1 is watched in that version.
func TestWatchPeerAuthenticationsV1beta1(t *testing.T) {
	client, sink := watchFake(t, "v1beta1")
	pa := &securityv1beta1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "istio-system"},
		Spec: securityapi.PeerAuthentication{Mtls: &securityapi.PeerAuthentication_MutualTLS{Mode: securityapi.PeerAuthentication_MutualTLS_STRICT}}}
	if _, err := client.SecurityV1beta1().PeerAuthentications("istio-system").Create(context.Background(), pa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sink.waitFor(t, "the v1beta1 object", func(p []*model.PeerAuthentication) bool {
		return len(p) == 1 && p[0].Mode == model.MTLSStrict && p[0].Namespace == "istio-system"
	})
	if err := WatchPeerAuthentications(context.Background(), client, "v1alpha1", sink); err == nil {
		t.Error("an unknown version was accepted")
	}
}
