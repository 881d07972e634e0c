package controlplane

import (
	"slices"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/testing/adsclient"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// A PeerAuthentication change reaches connected proxies: the workload's
// sidecar moves to the view of its new modes (listeners with the chains
// they call for), and a DISABLE port's endpoint loses its tlsMode metadata
// in every proxy's EDS. An equal set pushes nothing.
func TestPeerAuthenticationChangesPush(t *testing.T) {
	st := kube.NewStore()
	st.Upsert(incrementalService("helloworld", "10.96.0.10"), "")
	slice := incrementalSlice("helloworld", "10.1.0.1")
	slice.Endpoints[0].TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: "hw-1"}
	st.Upsert(slice, "")
	st.Upsert(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "hw-1", Namespace: "ns",
		Labels: map[string]string{"app": "hw", "security.istio.io/tlsMode": "istio"}},
		Spec: corev1.PodSpec{ServiceAccountName: "hw"}, Status: corev1.PodStatus{PodIP: "10.1.0.1"}}, "")
	cp := newLocal(st)
	addr := serveReady(t, cp)

	c := dialSidecar(t, addr, adsclient.Node("sidecar~10.1.0.1~hw-1.ns~ns.svc.cluster.local", "", "c1"), "10.1.0.1",
		resource.ListenerType, resource.EndpointType)
	has := func(typ string, want bool, text ...string) {
		t.Helper()
		if _, err := c.Wait(typ, 10*time.Second, func(r *discovery.DiscoveryResponse) bool {
			s := r.String()
			for _, x := range text {
				if strings.Contains(s, x) != want {
					return false
				}
			}
			return true
		}); err != nil {
			t.Fatalf("%s: want %v of %q: %v", typ, want, text, err)
		}
	}
	// inbound waits for the inbound listener's chains to be exactly want.
	inbound := func(want ...string) {
		t.Helper()
		var last []string
		if _, err := c.Wait(resource.ListenerType, 10*time.Second, func(r *discovery.DiscoveryResponse) bool {
			last = nil
			for _, a := range r.Resources {
				l := &listenerv3.Listener{}
				if err := a.UnmarshalTo(l); err != nil {
					t.Fatal(err)
				}
				if l.Name == translate.InboundListener {
					for _, fc := range l.FilterChains {
						last = append(last, fc.Name)
					}
				}
			}
			return slices.Equal(last, want)
		}); err != nil {
			t.Fatalf("inbound chains %q, want %q: %v", last, want, err)
		}
	}
	view := func() string { return cp.Tracker.Streams()[0].Types[resource.ListenerType].View }

	// No policy: the default, PERMISSIVE (mTLS, TLS passthrough, plaintext).
	inbound("inbound|8080||", "inbound|8080||tls-passthrough", "inbound|8080||plaintext")
	has(resource.EndpointType, true, "tlsMode")
	if v := view(); !strings.Contains(v, "inbound=8080/http/permissive") {
		t.Fatalf("view %s", v)
	}

	// Mesh-wide STRICT: only the mTLS chain.
	strict := []*model.PeerAuthentication{{Namespace: "istio-system", Name: "default", Mode: model.MTLSStrict}}
	cp.SetPeerAuthentications(strict)
	inbound("inbound|8080||")
	testkit.Eventually(t, 10*time.Second, "the STRICT view", func() bool { return strings.Contains(view(), "inbound=8080/http/strict") })

	// The same set again (an informer resync, say): no change to push.
	cp.SetPeerAuthentications([]*model.PeerAuthentication{{Namespace: "istio-system", Name: "default", Mode: model.MTLSStrict}})
	cp.mu.Lock()
	pending := !cp.pending.IsZero()
	cp.mu.Unlock()
	if pending {
		t.Error("an equal set of PeerAuthentications asked for a push")
	}

	// The workload's port 8080 DISABLE: plaintext chain only, and its
	// endpoint loses its tlsMode metadata.
	cp.SetPeerAuthentications(append(strict, &model.PeerAuthentication{Namespace: "ns", Name: "hw",
		Selector: map[string]string{"app": "hw"}, PortLevel: map[uint32]model.MTLSMode{8080: model.MTLSDisable}}))
	inbound("inbound|8080||plaintext")
	has(resource.EndpointType, false, "tlsMode")
}
