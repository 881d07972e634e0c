package controlplane

import (
	"maps"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source"
	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/testing/adsclient"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// statefulSet puts into st a headless Service "db" (tcp 5432) and its
// pods, name → IP; those in meshed carry the sidecar's tlsMode label.
func statefulSet(st *kube.Store, pods map[string]string, meshed ...string) {
	st.Upsert(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns"},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "tcp", Port: 5432}}}}, "")
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "db-1", Namespace: "ns", Labels: map[string]string{kube.LabelServiceName: "db"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("tcp"), Port: ptr.To[int32](5432)}},
	}
	for name, ip := range pods {
		labels := map[string]string{}
		for _, m := range meshed {
			if m == name {
				labels["security.istio.io/tlsMode"] = "istio"
			}
		}
		st.Upsert(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: labels},
			Spec: corev1.PodSpec{ServiceAccountName: "db"}, Status: corev1.PodStatus{PodIP: ip}}, "")
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: name, Namespace: "ns"}})
	}
	st.Upsert(sl, "")
}

// A sidecar follows its cluster's headless pods: a pod that appears gets
// its chain (to the plaintext or the mTLS pod cluster, as the pod has a
// sidecar or not) on the open stream; another cluster's pods never get
// one; a pod's endpoint change rebuilds listeners, not clusters.
func TestSidecarFollowsHeadlessPods(t *testing.T) {
	cp := New(Options{Logger: testkit.Logger(), Debounce: time.Millisecond, DebounceMax: 5 * time.Millisecond})
	st1, st2 := kube.NewStore(), kube.NewStore()
	statefulSet(st1, map[string]string{"db-0": "10.1.0.10"}, "db-0")
	statefulSet(st2, map[string]string{"db-0": "10.2.0.10"}, "db-0")
	for id, st := range map[string]*kube.Store{"c1": st1, "c2": st2} {
		cp.SetCluster(source.Cluster{ID: model.ClusterID(id), Origin: "test", Local: id == "c1", Source: &kube.Source{Store: st, IsSynced: func() bool { return true }}})
	}
	addr := serve(t, cp)
	testkit.WaitFor(t, "ready", cp.Ready)
	c, err := adsclient.Dial(addr, adsclient.Node("sidecar~10.1.0.99~client.ns", "", "c1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	for _, typ := range []string{resource.ClusterType, resource.ListenerType} {
		if err := c.Request(typ, nil, "", "", ""); err != nil {
			t.Fatal(err)
		}
	}
	host := "db.ns.svc.cluster.local"
	mtls, plain := translate.PodClusterName(5432, host, true), translate.PodClusterName(5432, host, false)
	podChains := func(r *discovery.DiscoveryResponse) map[string]string {
		out := map[string]string{} // pod IP → cluster
		for _, a := range r.Resources {
			l := &listenerv3.Listener{}
			if err := a.UnmarshalTo(l); err != nil {
				t.Fatal(err)
			}
			for _, fc := range l.FilterChains {
				ranges := fc.GetFilterChainMatch().GetPrefixRanges()
				tp := &tcpproxyv3.TcpProxy{}
				if len(ranges) != 1 || fc.Filters[0].GetTypedConfig().UnmarshalTo(tp) != nil || !translate.IsPodClusterName(tp.GetCluster()) {
					continue
				}
				out[ranges[0].AddressPrefix] = tp.GetCluster()
			}
		}
		return out
	}
	waitChains := func(want map[string]string) {
		t.Helper()
		var last map[string]string
		if _, err := c.Wait(resource.ListenerType, 10*time.Second, func(r *discovery.DiscoveryResponse) bool {
			last = podChains(r)
			return maps.Equal(last, want)
		}); err != nil {
			t.Fatalf("pod chains %v, want %v: %v", last, want, err)
		}
	}
	waitChains(map[string]string{"10.1.0.10": mtls})
	if _, err := c.Wait(resource.ClusterType, 10*time.Second, func(r *discovery.DiscoveryResponse) bool {
		cl, _ := adsclient.Clusters(r)
		return cl[mtls] != nil && cl[plain] != nil && strings.Contains(cl[mtls].String(), "spiffe://cluster.local/ns/ns/sa/db")
	}); err != nil {
		t.Fatalf("no pod clusters (mTLS one checking db's identity): %v", err)
	}
	cdsBuilds := func() float64 {
		m := &dtoMetric{}
		_ = cp.metrics.builds.WithLabelValues("cds").Write(m.ptr())
		return m.value()
	}
	before := cdsBuilds()

	// db-1 (no sidecar) joins: its chain to the plaintext pod cluster.
	statefulSet(st1, map[string]string{"db-0": "10.1.0.10", "db-1": "10.1.0.11"}, "db-0")
	cp.ClusterChanged("c1")
	waitChains(map[string]string{"10.1.0.10": mtls, "10.1.0.11": plain})
	if n := cdsBuilds() - before; n != 0 {
		t.Errorf("a headless pod joining rebuilt %v CDS views, want none", n)
	}
}
