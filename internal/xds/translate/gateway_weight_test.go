package translate_test

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// A web Pod of a remote cluster: its address, whether its EndpointSlice
// entries are ready for port http (80) and port tcp (9000), and whether it
// runs a sidecar (tlsMode=istio).
type webPod struct {
	ip                 string
	ready80, ready9000 bool
	mtls               bool
}

func ready(ip string) webPod    { return webPod{ip: ip, ready80: true, ready9000: true, mtls: true} }
func notReady(ip string) webPod { return webPod{ip: ip, mtls: true} }

const webHost = "web.sample.svc.cluster.local"

// The gateway endpoints a proxy of network1 gets for web on each port
// follow exactly the ready mTLS endpoints of network2, per (network,
// cluster) and per port: a (cluster, port) whose Pods are all not ready
// contributes no gateway endpoint and no weight. The input goes through
// kube.Convert, as the live source's does, so the EndpointSlice readiness
// rule is part of what is tested.
func TestGatewayWeightOnlyForReadyEndpoints(t *testing.T) {
	const gw2a, gw2b, gwNet = "203.0.113.21:15443", "203.0.113.22:15443", "203.0.113.20:15443"
	tests := []struct {
		name string
		// perClusterGW gives cluster2a and cluster2b a labelled gateway
		// Service each; otherwise network2 has one meshNetworks gateway,
		// gwNet, of no cluster.
		perClusterGW bool
		pods2a       []webPod
		pods2b       []webPod
		// The gateway endpoints network1 gets per port, each weight in
		// ready Pods (multiplied by the mesh's scale factor when compared).
		want80, want9000 map[string]uint64
	}{
		{
			name:         "cluster2b all not ready: only cluster2a's gateway",
			perClusterGW: true,
			pods2a:       []webPod{ready("10.2.0.1"), ready("10.2.0.2")},
			pods2b:       []webPod{notReady("10.3.0.1"), notReady("10.3.0.2")},
			want80:       map[string]uint64{gw2a: 2},
			want9000:     map[string]uint64{gw2a: 2},
		},
		{
			name:         "weight counts only the ready Pods of each cluster",
			perClusterGW: true,
			pods2a:       []webPod{ready("10.2.0.1"), notReady("10.2.0.2"), ready("10.2.0.3")},
			pods2b:       []webPod{notReady("10.3.0.1"), ready("10.3.0.2")},
			want80:       map[string]uint64{gw2a: 2, gw2b: 1},
			want9000:     map[string]uint64{gw2a: 2, gw2b: 1},
		},
		{
			name:         "per port: ready on 80, not on 9000",
			perClusterGW: true,
			pods2a:       []webPod{{ip: "10.2.0.1", ready80: true, mtls: true}, {ip: "10.2.0.2", ready80: true, mtls: true}},
			pods2b:       []webPod{{ip: "10.3.0.1", ready9000: true, mtls: true}},
			want80:       map[string]uint64{gw2a: 2},
			want9000:     map[string]uint64{gw2b: 1},
		},
		{
			name:         "ready without a sidecar is no reason for a gateway",
			perClusterGW: true,
			pods2a:       []webPod{ready("10.2.0.1")},
			pods2b:       []webPod{{ip: "10.3.0.1", ready80: true, ready9000: true}},
			want80:       map[string]uint64{gw2a: 1},
			want9000:     map[string]uint64{gw2a: 1},
		},
		{
			name:     "network gateway: weight of the ready Pods of both clusters",
			pods2a:   []webPod{ready("10.2.0.1"), notReady("10.2.0.2")},
			pods2b:   []webPod{notReady("10.3.0.1"), ready("10.3.0.2"), ready("10.3.0.3")},
			want80:   map[string]uint64{gwNet: 3},
			want9000: map[string]uint64{gwNet: 3},
		},
		{
			name:     "network gateway: none when no Pod is ready",
			pods2a:   []webPod{notReady("10.2.0.1")},
			pods2b:   []webPod{notReady("10.3.0.1")},
			want80:   map[string]uint64{},
			want9000: map[string]uint64{},
		},
		{
			name:         "per-cluster gateways: none when no Pod is ready",
			perClusterGW: true,
			pods2a:       []webPod{notReady("10.2.0.1")},
			pods2b:       []webPod{{ip: "10.3.0.1", mtls: true, ready80: false, ready9000: false}},
			want80:       map[string]uint64{},
			want9000:     map[string]uint64{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nets := &model.MeshNetworks{Networks: []*model.NetworkConfig{
				{Name: "network1", Registries: []model.ClusterID{"cluster1"}},
				{Name: "network2", Registries: []model.ClusterID{"cluster2a", "cluster2b"}},
			}}
			if !tc.perClusterGW {
				nets.Networks[1].Gateways = []model.GatewaySpec{{Address: "203.0.113.20", Port: 15443}}
			}
			// cluster1 has a gateway too, so that the mesh splits horizons
			// whichever way network2's gateways are declared.
			snaps := []*model.ClusterSnapshot{
				convertCluster(t, "cluster1", gatewayService("203.0.113.1", "network1")),
				convertCluster(t, "cluster2a", webObjects(tc.perClusterGW, "203.0.113.21", tc.pods2a)...),
				convertCluster(t, "cluster2b", webObjects(tc.perClusterGW, "203.0.113.22", tc.pods2b)...),
			}
			m, diags := model.Build(model.BuildInput{Clusters: snaps, Networks: nets})
			if err := diags.Err(); err != nil {
				t.Fatal(err)
			}
			svc := m.Service(webHost)
			if svc == nil {
				t.Fatalf("no service %s", webHost)
			}
			s := uint64(m.ScaleFactor())
			for _, port := range []struct {
				port uint32
				want map[string]uint64
			}{{80, tc.want80}, {9000, tc.want9000}} {
				cla := translate.LoadAssignment(m, translate.EDSView{Network: "network1"}, svc, port.port)
				if err := cla.ValidateAll(); err != nil {
					t.Fatal(err)
				}
				got := map[string]uint64{}
				for _, loc := range cla.Endpoints {
					for _, lb := range loc.LbEndpoints {
						sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
						addr := netip.AddrPortFrom(netip.MustParseAddr(sa.GetAddress()), uint16(sa.GetPortValue())).String()
						got[addr] += uint64(lb.GetLoadBalancingWeight().GetValue())
					}
				}
				want := map[string]uint64{}
				for a, n := range port.want {
					want[a] = n * s
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("port %d: network1 gets %v, want %v (scale %d)", port.port, got, want, s)
				}
			}

			// network2's own proxies get exactly the ready Pods, directly.
			var wantDirect, gotDirect []string
			for _, p := range append(slices.Clone(tc.pods2a), tc.pods2b...) {
				if p.ready80 {
					wantDirect = append(wantDirect, p.ip+":8080")
				}
			}
			for _, loc := range translate.LoadAssignment(m, translate.EDSView{Network: "network2"}, svc, 80).Endpoints {
				for _, lb := range loc.LbEndpoints {
					sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
					gotDirect = append(gotDirect, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
				}
			}
			slices.Sort(wantDirect)
			slices.Sort(gotDirect)
			if !slices.Equal(gotDirect, wantDirect) {
				t.Errorf("network2 gets %v on port 80, want %v", gotDirect, wantDirect)
			}
		})
	}
}

// convertCluster fills a Store with objs and converts it, as the live
// source does.
func convertCluster(t *testing.T, id model.ClusterID, objs ...runtime.Object) *model.ClusterSnapshot {
	t.Helper()
	st := kube.NewStore()
	for _, o := range objs {
		st.Upsert(o, "test")
	}
	snap, diags := kube.Convert(id, st, kube.Options{})
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	return snap
}

func gatewayService(ip, network string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "istio-eastwestgateway", Namespace: "istio-system",
			Labels: map[string]string{kube.LabelNetwork: network}},
		Spec:   corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Name: "tls", Port: 15443}}},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: ip}}}},
	}
}

// webObjects is a network2 cluster: its system namespace labelled with the
// network, optionally a gateway Service, and Service web (http 80 →
// 8080, tcp 9000 → 9000) with one EndpointSlice per port, as the
// EndpointSlice controller makes when Pods differ in the ports they serve.
func webObjects(withGateway bool, gwIP string, pods []webPod) []runtime.Object {
	objs := []runtime.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system", Labels: map[string]string{kube.LabelNetwork: "network2"}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "sample"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "tcp", Port: 9000}}}},
	}
	if withGateway {
		objs = append(objs, gatewayService(gwIP, "network2"))
	}
	slice := func(name, portName string, port int32, ready func(webPod) bool) *discoveryv1.EndpointSlice {
		sl := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: "sample", Labels: map[string]string{kube.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port}},
		}
		for i, p := range pods {
			r := ready(p)
			sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{p.ip},
				Conditions: discoveryv1.EndpointConditions{Ready: &r},
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "sample", Name: fmt.Sprintf("web-%d", i)}})
		}
		return sl
	}
	objs = append(objs,
		slice("web-http", "http", 8080, func(p webPod) bool { return p.ready80 }),
		slice("web-tcp", "tcp", 9000, func(p webPod) bool { return p.ready9000 }))
	for i, p := range pods {
		labels := map[string]string{"app": "web"}
		if p.mtls {
			labels[kube.LabelTLSMode] = kube.TLSModeIstio
		}
		objs = append(objs, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%d", i), Namespace: "sample", Labels: labels},
			Status: corev1.PodStatus{PodIP: p.ip}})
	}
	return objs
}
