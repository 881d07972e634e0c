package ops

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/horizonmesh/horizon/internal/controlplane"
	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source"
	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/source/manifest"
	"github.com/horizonmesh/horizon/internal/source/meshnetworks"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
	"github.com/horizonmesh/horizon/internal/topology"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// The walkthrough's mesh (cluster1 on no network, the remote cluster on
// network2 behind 203.0.113.20:443): /debug/gateways says, for a proxy on no
// network (as cluster1's), that the gateway stands for helloworld-v2's pod
// in the remote cluster; pages and names narrow it; bad queries are
// refused.
func TestDebugGatewaysSaysWhatStandsBehindEachGateway(t *testing.T) {
	m := walkthroughMesh(t)
	cp := m.cp
	decode := func(path string) GatewaysAnswer {
		t.Helper()
		rec := m.get(path)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
		var a GatewaysAnswer
		if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, rec.Body)
		}
		return a
	}
	a := decode("/debug/gateways?network=")
	if a.Total != 1 || len(a.Endpoints) != 1 {
		t.Fatalf("no network: %+v, want one gateway endpoint (helloworld's)", a)
	}
	g := a.Endpoints[0]
	if g.ClusterName != "outbound|5000||helloworld.sample.svc.cluster.local" || g.Address != "203.0.113.20:443" || g.Network != "network2" ||
		len(g.Clusters) != 1 || g.Clusters[0] != "remote_kubecfg" || g.PodCount() != 1 || !strings.HasPrefix(g.Members[0].Pod, "sample/helloworld-v2") {
		t.Errorf("the gateway endpoint of a proxy on no network: %+v", g)
	}
	if want := translate.GatewayEndpoints(cp.Mesh(), translate.EDSView{Network: ""}); len(want) != 1 || want[0].Weight != g.Weight {
		t.Errorf("served %+v, GatewayEndpoints says %+v", g, want)
	}
	// network2's own proxies reach helloworld-v2 directly.
	if a := decode("/debug/gateways?network=network2"); a.Total != 0 || len(a.Endpoints) != 0 {
		t.Errorf("network2: %+v, want nothing behind a gateway", a)
	}
	if a := decode("/debug/gateways?network=&name=outbound|5000||nothing.sample.svc.cluster.local"); a.Total != 0 {
		t.Errorf("another name: %+v", a)
	}
	if a := decode("/debug/gateways?network=&limit=1&after=1"); a.Total != 1 || len(a.Endpoints) != 0 || a.Next != "" {
		t.Errorf("past the end: %+v", a)
	}
	for path, code := range map[string]int{
		"/debug/gateways?network=nowhere":  http.StatusNotFound,
		"/debug/gateways?network=&limit=0": http.StatusBadRequest,
		"/debug/gateways?network=&after=x": http.StatusBadRequest,
	} {
		if rec := m.get(path); rec.Code != code {
			t.Errorf("GET %s: %d %s, want %d", path, rec.Code, rec.Body, code)
		}
	}
}

// walkthroughMesh is a control plane of the walkthrough's two clusters.
func walkthroughMesh(t *testing.T) *mesh {
	t.Helper()
	const walkthrough = "../../examples/walkthrough"
	cp := controlplane.New(controlplane.Options{Logger: testkit.Logger(), Debounce: time.Millisecond})
	for id, dir := range map[string]string{"cluster1": "cluster1", "remote_kubecfg": "remote"} {
		store, diags := manifest.Load(filepath.Join(walkthrough, dir))
		if err := diags.Err(); err != nil {
			t.Fatal(err)
		}
		cp.SetCluster(source.Cluster{ID: model.ClusterID(id), Origin: "test", Local: id == "cluster1", Source: &kube.Source{Store: store, IsSynced: func() bool { return true }}})
	}
	nets, diags := meshnetworks.ParseFile(walkthrough + "/meshnetworks.yaml")
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	cp.SetMeshNetworks(nets, nil)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go cp.Run(ctx)
	testkit.WaitFor(t, "a mesh with the walkthrough's gateway", func() bool { return cp.Mesh() != nil && len(cp.Mesh().Gateways()) > 0 })
	return &mesh{cp: cp, h: Handler(cp, prometheus.NewRegistry())}
}

// /debug/topology is topology.Of the current mesh with the clusters'
// states; /ui/topology.svg its picture; /ui/topology the page that
// fetches it again and again.
func TestTopologyEndpoints(t *testing.T) {
	m := walkthroughMesh(t)
	rec := m.get("/debug/topology")
	var top topology.Topology
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &top) != nil {
		t.Fatalf("/debug/topology: %d %s", rec.Code, rec.Body)
	}
	if len(top.Clusters) != 2 || !top.Clusters[0].Reported || !top.Clusters[0].Local || !top.Clusters[0].Synced {
		t.Errorf("clusters: %+v", top.Clusters)
	}
	var gw *topology.Network
	for i := range top.Networks {
		if top.Networks[i].Name == "network2" {
			gw = &top.Networks[i]
		}
	}
	if gw == nil || len(gw.Gateways) != 1 || gw.Gateways[0].Address != "203.0.113.20:443" || gw.Gateways[0].Found == "" {
		t.Errorf("network2: %+v", gw)
	}
	rec = m.get("/ui/topology.svg")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "image/svg+xml" || !strings.Contains(rec.Body.String(), "203.0.113.20:443") {
		t.Errorf("/ui/topology.svg: %d %s %s", rec.Code, rec.Header(), rec.Body)
	}
	rec = m.get("/ui/topology")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `fetch("/ui/topology.svg"`) {
		t.Errorf("/ui/topology: %d %s", rec.Code, rec.Body)
	}
}
