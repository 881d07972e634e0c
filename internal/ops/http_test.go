package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/horizonmesh/horizon/internal/controlplane"
	"github.com/horizonmesh/horizon/internal/source"
	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/testing/adsclient"
	"github.com/horizonmesh/horizon/internal/testing/cptest"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
	"github.com/horizonmesh/horizon/internal/xds/server"
)

// mesh is a running control plane with one connected proxy on network n1,
// so that the EDS view "network=n1" exists.
type mesh struct {
	cp  *controlplane.ControlPlane
	reg *prometheus.Registry
	h   http.Handler
}

// startMesh serves services svc0..svcN-1 in namespace ns, each with the
// given number of endpoints (spread over three zones), to one proxy.
func startMesh(t testing.TB, services, endpoints int) *mesh {
	t.Helper()
	reg := prometheus.NewRegistry()
	cp := controlplane.New(controlplane.Options{Logger: testkit.Logger(), Registry: reg,
		Debounce: time.Millisecond, DebounceMax: 5 * time.Millisecond, RemoteSyncTimeout: time.Second})
	store := kube.NewStore()
	// The cluster is on network n1.
	store.Upsert(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system", Labels: map[string]string{kube.LabelNetwork: "n1"}}}, "")
	for z := range 3 {
		store.Upsert(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node%d", z),
			Labels: map[string]string{"topology.kubernetes.io/region": "r", "topology.kubernetes.io/zone": fmt.Sprintf("z%d", z)}}}, "")
	}
	for s := range services {
		name := fmt.Sprintf("svc%d", s)
		store.Upsert(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}, "")
		sl := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: "ns", Labels: map[string]string{kube.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
		}
		for i := range endpoints {
			sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{
				Addresses: []string{fmt.Sprintf("10.%d.%d.%d", s%250, i/250%250, i%250+1)},
				NodeName:  ptr.To(fmt.Sprintf("node%d", i%3)),
			})
		}
		store.Upsert(sl, "")
	}
	cp.SetCluster(source.Cluster{ID: "c1", Origin: "test", Local: true, Source: &kube.Source{Store: store, IsSynced: func() bool { return true }}})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go cp.Run(ctx)
	addr := cptest.ServeXDS(t, cp)
	testkit.Eventually(t, 30*time.Second, "ready with a mesh", func() bool { return cp.Ready() && cp.Mesh() != nil })
	c, err := adsclient.Dial(addr, adsclient.Node("p1", "n1", "c1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.Request(resource.EndpointType, nil, "", "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(resource.EndpointType, 30*time.Second, func(r *discovery.DiscoveryResponse) bool {
		return len(r.GetResources()) == services
	}); err != nil {
		t.Fatal(err)
	}
	return &mesh{cp: cp, reg: reg, h: Handler(cp, reg)}
}

func (m *mesh) get(path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	m.h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

// builds is the control plane's count of resource builds.
func (m *mesh) builds(t *testing.T) float64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "horizon_xds_builds_total" {
			for _, mt := range mf.GetMetric() {
				sum += mt.GetCounter().GetValue()
			}
		}
	}
	return sum
}

type edsPage struct {
	View      string            `json:"view"`
	Version   string            `json:"version"`
	Total     int               `json:"total"`
	Next      string            `json:"next"`
	Resources []json.RawMessage `json:"resources"`
}

func decodePage(t *testing.T, rec *httptest.ResponseRecorder) (edsPage, []*endpointv3.ClusterLoadAssignment) {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var p edsPage
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, rec.Body)
	}
	var out []*endpointv3.ClusterLoadAssignment
	for _, raw := range p.Resources {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := protojson.Unmarshal(raw, cla); err != nil {
			t.Fatalf("resource is not a load assignment: %v\n%s", err, raw)
		}
		out = append(out, cla)
	}
	return p, out
}

func TestDebugEDSServesTheCachedViewInPages(t *testing.T) {
	m := startMesh(t, 5, 7)
	view := server.View{TypeURL: resource.EndpointType, Key: controlplane.EDSView("n1")}
	cached, version, ok := m.cp.Views.Resources(view)
	if !ok || len(cached) != 5 {
		t.Fatalf("cached view: ok=%v, %d resources", ok, len(cached))
	}
	var want []string
	for n := range cached {
		want = append(want, n)
	}
	slices.Sort(want)
	before := m.builds(t)

	var got []string
	after := ""
	for page := 0; ; page++ {
		p, clas := decodePage(t, m.get("/debug/eds?network=n1&limit=2&after="+after))
		if p.View != "eds/network=n1" || p.Version != version || p.Total != 5 {
			t.Errorf("page %d: view %q version %q total %d, want eds/network=n1 %q 5", page, p.View, p.Version, p.Total, version)
		}
		if len(clas) > 2 {
			t.Fatalf("page %d has %d resources, limit 2", page, len(clas))
		}
		for _, cla := range clas {
			// Written endpoint by endpoint, it reads back as the resource itself.
			if !proto.Equal(cla, cached[cla.GetClusterName()]) {
				t.Errorf("%s differs from the cached resource:\n got %v\nwant %v", cla.GetClusterName(), cla, cached[cla.GetClusterName()])
			}
			got = append(got, cla.GetClusterName())
		}
		if p.Next == "" {
			break
		}
		if p.Next != got[len(got)-1] {
			t.Errorf("next = %q, want the page's last name %q", p.Next, got[len(got)-1])
		}
		after = p.Next
	}
	if !slices.Equal(got, want) {
		t.Errorf("pages gave %v, want %v", got, want)
	}

	// Default limit: everything here; one by name.
	if _, clas := decodePage(t, m.get("/debug/eds?network=n1")); len(clas) != 5 {
		t.Errorf("default page has %d resources, want 5", len(clas))
	}
	if _, clas := decodePage(t, m.get("/debug/eds?network=n1&cluster=c1&name="+want[3])); len(clas) != 1 || clas[0].GetClusterName() != want[3] {
		t.Errorf("?name=%s gave %v", want[3], clas)
	}
	for path, code := range map[string]int{
		"/debug/eds?network=n1&name=outbound|1||nope": http.StatusNotFound,
		"/debug/eds?network=n1&limit=0":               http.StatusBadRequest,
		"/debug/eds?network=n1&limit=100000":          http.StatusBadRequest,
		"/debug/eds?network=not%20valid":              http.StatusBadRequest,
	} {
		if rec := m.get(path); rec.Code != code {
			t.Errorf("%s = %d, want %d: %s", path, rec.Code, code, rec.Body)
		}
	}
	// A network no proxy is on has no view: it is not built for the asking.
	rec := m.get("/debug/eds?network=")
	if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), `EDS views: "network=n1"`) {
		t.Errorf("unknown view = %d %s, want 404 naming the existing views", rec.Code, rec.Body)
	}
	if _, _, ok := m.cp.Views.Resources(server.View{TypeURL: resource.EndpointType, Key: controlplane.EDSView("")}); ok {
		t.Error("asking for a view created it")
	}
	if after := m.builds(t); after != before {
		t.Errorf("debug requests built resources: horizon_xds_builds_total %v → %v", before, after)
	}
}

// blockingWriter holds a response open: its first Write reports on
// entered, then waits for release.
type blockingWriter struct {
	httptest.ResponseRecorder
	entered chan<- struct{}
	release <-chan struct{}
	once    sync.Once
}

func (w *blockingWriter) Write(b []byte) (int, error) {
	w.once.Do(func() { w.entered <- struct{}{}; <-w.release })
	return w.ResponseRecorder.Write(b)
}

func TestDebugRequestsAreBoundedTo2AtOnce(t *testing.T) {
	m := startMesh(t, 3, 2)
	entered, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	held := make([]*blockingWriter, MaxDebugRequests)
	for i := range held {
		held[i] = &blockingWriter{ResponseRecorder: *httptest.NewRecorder(), entered: entered, release: release}
		wg.Go(func() {
			m.h.ServeHTTP(held[i], httptest.NewRequest(http.MethodGet, "/debug/eds?network=n1", nil))
		})
	}
	for range held {
		<-entered // both are writing their answer, holding their slot
	}
	for _, path := range []string{"/debug/eds?network=n1", "/debug/clusters", "/debug/syncz"} {
		if rec := m.get(path); rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
			t.Errorf("%s with %d running = %d (Retry-After %q), want 429", path, MaxDebugRequests, rec.Code, rec.Header().Get("Retry-After"))
		}
	}
	if rec := m.get("/ready"); rec.Code != http.StatusOK {
		t.Errorf("/ready is limited too: %d", rec.Code)
	}
	close(release)
	wg.Wait()
	for i, w := range held {
		if w.Code != http.StatusOK {
			t.Errorf("held request %d = %d", i, w.Code)
		}
	}
	if rec := m.get("/debug/clusters"); rec.Code != http.StatusOK {
		t.Errorf("after the others finished: %d", rec.Code)
	}
}

// A sidecar whose workload the mesh knows has an EDS view of its locality;
// /debug/eds finds that view from the proxy's INSTANCE_IPS (?ips=), as the
// xDS server classifies the proxy (what `horizon proxy-config --diff`
// asks for), and the network's view without it.
func TestDebugEDSFindsAWorkloadsView(t *testing.T) {
	m := startMesh(t, 2, 3)
	node := adsclient.Node("p2", "n1", "c1")
	// 10.0.0.1 is svc0's first endpoint, on node0 (zone z0).
	node.Metadata.Fields[server.MetaInstanceIPs] = structpb.NewStringValue("10.0.0.1")
	// The mesh's gRPC server is not kept: serve its views on another.
	c, err := adsclient.Dial(cptest.ServeXDS(t, m.cp), node)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.Request(resource.EndpointType, nil, "", "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(resource.EndpointType, 30*time.Second, func(r *discovery.DiscoveryResponse) bool { return len(r.GetResources()) == 2 }); err != nil {
		t.Fatal(err)
	}
	located, _ := decodePage(t, m.get("/debug/eds?network=n1&cluster=c1&ips=10.0.0.1"))
	plain, _ := decodePage(t, m.get("/debug/eds?network=n1&cluster=c1"))
	if !strings.Contains(located.View, "locality=r/z0/") || plain.View != "eds/network=n1" {
		t.Errorf("views: with the proxy's address %q, without %q; want its locality's, then the network's", located.View, plain.View)
	}
}
