package translate

import (
	"slices"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/xds/ndspb"
)

func ndsMesh(t *testing.T) *model.Mesh {
	t.Helper()
	svc := func(name, ns string, ips ...string) *model.ClusterService {
		return &model.ClusterService{Name: name, Namespace: ns, ClusterIPs: ips,
			Ports: []model.ServicePort{{Name: "http", Port: 5000, Protocol: "TCP"}}, Endpoints: map[uint32][]*model.Endpoint{}}
	}
	m, diags := model.Build(model.BuildInput{Clusters: []*model.ClusterSnapshot{
		{ID: "cluster1", Services: []*model.ClusterService{svc("helloworld", "sample", "10.96.0.10"), svc("db", "sample")}},
		{ID: "cluster2", Services: []*model.ClusterService{svc("helloworld", "sample", "10.96.0.20"), svc("ratings", "bookinfo", "10.96.0.30")}},
		{ID: "cluster3", Services: []*model.ClusterService{svc("ratings", "bookinfo", "10.97.0.30", "fd00::30")}},
	}})
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// A service only in remote clusters is in the table with the ClusterIPs
// of the first of them; one the proxy's cluster has, with its own.
func TestNDSRemoteOnlyService(t *testing.T) {
	m := ndsMesh(t)
	nt := NDS(m, "cluster1")
	want := &ndspb.NameTable{Table: map[string]*ndspb.NameTable_NameInfo{
		"helloworld.sample.svc.cluster.local": {Ips: []string{"10.96.0.10"}, Registry: "Kubernetes", Shortname: "helloworld", Namespace: "sample"},
		"ratings.bookinfo.svc.cluster.local":  {Ips: []string{"10.96.0.30"}, Registry: "Kubernetes", Shortname: "ratings", Namespace: "bookinfo"},
	}}
	if !proto.Equal(nt, want) {
		t.Errorf("cluster1's table:\n got %v\nwant %v", nt, want)
	}
	// db is headless in cluster1 and nowhere else: left to kube-dns.
	if _, ok := nt.Table["db.sample.svc.cluster.local"]; ok {
		t.Error("a headless service is in the table")
	}
	// cluster3 has its own (dual-stack) ratings and, for helloworld, the
	// first cluster's address by ID.
	nt3 := NDS(m, "cluster3")
	if got := nt3.Table["ratings.bookinfo.svc.cluster.local"].GetIps(); !slices.Equal(got, []string{"10.97.0.30", "fd00::30"}) {
		t.Errorf("cluster3's ratings: %v", got)
	}
	if got := nt3.Table["helloworld.sample.svc.cluster.local"].GetIps(); !slices.Equal(got, []string{"10.96.0.10"}) {
		t.Errorf("cluster3's helloworld: %v", got)
	}
	if got := NDS(m, "cluster2").Table["helloworld.sample.svc.cluster.local"].GetIps(); !slices.Equal(got, []string{"10.96.0.20"}) {
		t.Errorf("cluster2's helloworld: %v", got)
	}
}

// Build serves one unnamed NameTable per sidecar cluster view, encoded with
// the type URL Istio's agent asks for; routers get no NDS view.
func TestBuildNDS(t *testing.T) {
	m := ndsMesh(t)
	v, ok := ViewOf(NameTableType, Proxy{Network: "n1", Cluster: "cluster1", Inbound: []WorkloadPort{{Port: 5000}}, Labels: map[string]string{"app": "a"}})
	if !ok || v != (View{Cluster: "cluster1"}) {
		t.Fatalf("sidecar NDS view: %+v ok=%v", v, ok)
	}
	if rv, _ := ViewOf(resource.RouteType, Proxy{Cluster: "cluster1"}); rv != v {
		t.Errorf("NDS and RDS keys differ: %+v %+v", v, rv)
	}
	res := Build(Input{Mesh: m}, NameTableType, v)
	if len(res) != 1 || res[NameTableName] == nil {
		t.Fatalf("Build: %v", res)
	}
	a, err := anypb.New(res[NameTableName])
	if err != nil || a.GetTypeUrl() != "type.googleapis.com/istio.networking.nds.v1.NameTable" {
		t.Fatalf("Any: %v %v", a.GetTypeUrl(), err)
	}
	if !proto.Equal(res[NameTableName], NDS(m, "cluster1")) {
		t.Error("Build differs from NDS")
	}
	if _, ok := ViewOf(NameTableType, Proxy{Role: RoleRouter, Network: "n1"}); ok {
		t.Error("a router has an NDS view")
	}
	// An empty mesh still has its (empty) table, so removing the last
	// service reaches the agent.
	empty, _ := model.Build(model.BuildInput{})
	if res := Build(Input{Mesh: empty}, NameTableType, v); len(res) != 1 {
		t.Errorf("empty mesh: %v", res)
	}
}
