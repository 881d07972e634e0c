package translate

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"

	"github.com/horizonmesh/horizon/internal/model"
)

// localityMesh is exampleMesh's 4-network topology (Istio's multi-network
// example, as TestSplitHorizonExample uses it) with a locality per cluster:
// network1 = cluster1a (r1/z1, gateway 1.1.1.1:80) + cluster1b (r1/z2);
// network2 = cluster2a (r2/z3, 2.2.2.2:80) + cluster2b (r2/z4, 2.2.2.20:80);
// network3 = cluster3 (gateway 3.3.3.3:443, no endpoint); network4 =
// cluster4 (r3/z6, no gateway). The rules apply to example.ns.
func localityMesh(t *testing.T, rules ...model.TrafficPolicy) *model.Mesh {
	t.Helper()
	loc := map[model.ClusterID]model.Locality{
		"cluster1a": {Region: "r1", Zone: "z1"}, "cluster1b": {Region: "r1", Zone: "z2"},
		"cluster2a": {Region: "r2", Zone: "z3"}, "cluster2b": {Region: "r2", Zone: "z4"}, "cluster4": {Region: "r3", Zone: "z6"},
	}
	var drs []*model.DestinationRule
	for _, r := range rules {
		drs = append(drs, &model.DestinationRule{Name: "example", Namespace: "ns", Host: "example", Policy: r.Seal()})
	}
	return exampleMeshWith(t, true, loc, drs)
}

// priorities renders a load assignment as "P<n>: addr=weight ..." lines.
func priorities(t *testing.T, m *model.Mesh, v EDSView) string {
	t.Helper()
	cla := LoadAssignment(m, v, m.Service(exampleHost), 80)
	if err := cla.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	last := -1
	for _, l := range cla.Endpoints {
		if int(l.Priority) != last {
			if last >= 0 {
				b.WriteString("\n")
			}
			if int(l.Priority) != last+1 {
				t.Errorf("priority %d follows %d: Envoy's priorities have no gaps", l.Priority, last)
			}
			last = int(l.Priority)
			fmt.Fprintf(&b, "P%d:", l.Priority)
		}
		for _, lb := range l.LbEndpoints {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			fmt.Fprintf(&b, " %s=%d", netip.MustParseAddr(sa.Address), lb.GetLoadBalancingWeight().GetValue())
		}
	}
	return b.String()
}

func at(network string, cluster model.ClusterID, region, zone string) EDSView {
	return EDSView{Network: network, Located: true, Cluster: cluster, Locality: model.Locality{Region: region, Zone: zone}}
}

func TestLocalityPriorities(t *testing.T) {
	enabled := model.TrafficPolicy{Locality: &model.LocalityLB{}}
	failover := model.TrafficPolicy{Locality: &model.LocalityLB{Failover: []model.LocalityFailover{{From: "r1", To: "r2"}}}}
	ranked := model.TrafficPolicy{Locality: &model.LocalityLB{FailoverPriority: []string{model.LabelNetwork, model.LabelRegion, "version=v1"}}}
	tests := []struct {
		name   string
		policy []model.TrafficPolicy
		view   EDSView
		want   string
	}{
		{"no policy: one priority whatever the locality", nil, at("network1", "cluster1a", "r1", "z1"),
			"P0: 10.0.0.1=2 10.0.0.2=2 2.2.2.2=2 2.2.2.20=4 40.0.0.1=2"},
		{"zone, region, rest of the network, then gateways", []model.TrafficPolicy{enabled}, at("network1", "cluster1a", "r1", "z1"),
			"P0: 10.0.0.1=2\nP1: 10.0.0.2=2\nP2: 40.0.0.1=2\nP3: 2.2.2.2=2 2.2.2.20=4"},
		{"network2's own zone first", []model.TrafficPolicy{enabled}, at("network2", "cluster2b", "r2", "z4"),
			"P0: 20.0.0.2=2 20.0.0.3=2\nP1: 20.0.0.1=2\nP2: 40.0.0.1=2\nP3: 1.1.1.1=4"},
		{"an unlocated proxy: its network, then gateways", []model.TrafficPolicy{enabled}, EDSView{Network: "network1"},
			"P0: 10.0.0.1=2 10.0.0.2=2 40.0.0.1=2\nP1: 2.2.2.2=2 2.2.2.20=4"},
		{"network3 has only gateways behind the direct network4", []model.TrafficPolicy{enabled}, EDSView{Network: "network3"},
			"P0: 40.0.0.1=2\nP1: 1.1.1.1=4 2.2.2.2=2 2.2.2.20=4"},
		{"failover r1->r2: network2's gateways, all in r2, before r3", []model.TrafficPolicy{failover}, at("network1", "cluster1b", "r1", "z2"),
			"P0: 10.0.0.2=2\nP1: 10.0.0.1=2\nP2: 2.2.2.2=2 2.2.2.20=4\nP3: 40.0.0.1=2"},
		{"failover of another region changes nothing", []model.TrafficPolicy{failover}, at("network2", "cluster2a", "r2", "z3"),
			"P0: 20.0.0.1=2\nP1: 20.0.0.2=2 20.0.0.3=2\nP2: 40.0.0.1=2\nP3: 1.1.1.1=4"},
		{"failoverPriority network, region, version=v1", []model.TrafficPolicy{ranked}, at("network2", "cluster2a", "r2", "z3"),
			"P0: 20.0.0.1=2 20.0.0.2=2\nP1: 20.0.0.3=2\nP2: 1.1.1.1=4 40.0.0.1=2"},
		{"failoverPriority: gateways match no network of the proxy", []model.TrafficPolicy{ranked}, at("network1", "cluster1a", "r1", "z1"),
			"P0: 10.0.0.1=2 10.0.0.2=2\nP1: 2.2.2.2=2 2.2.2.20=4 40.0.0.1=2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := localityMesh(t, tt.policy...)
			if got := priorities(t, m, tt.view); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// A cluster-bound key=value label ranks a gateway of that cluster first.
func TestFailoverPriorityClusterValue(t *testing.T) {
	m := localityMesh(t, model.TrafficPolicy{Locality: &model.LocalityLB{FailoverPriority: []string{model.LabelCluster + "=cluster2b"}}})
	want := "P0: 2.2.2.20=4\nP1: 2.2.2.2=2 10.0.0.1=2 10.0.0.2=2 40.0.0.1=2"
	if got := priorities(t, m, at("network1", "cluster1a", "r1", "z1")); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestDistribute(t *testing.T) {
	m := localityMesh(t, model.TrafficPolicy{Locality: &model.LocalityLB{Distribute: []model.LocalityDistribute{
		{From: "r1/z1/*", To: map[string]uint32{"r1/*": 80, "r2/z3/*": 20}}}}})
	cla := LoadAssignment(m, at("network1", "cluster1a", "r1", "z1"), m.Service(exampleHost), 80)
	got := map[string]uint32{}
	for _, l := range cla.Endpoints {
		if l.Priority != 0 {
			t.Errorf("distribute uses no priorities, got %d", l.Priority)
		}
		got[l.Locality.Region+"/"+l.Locality.Zone] = l.GetLoadBalancingWeight().GetValue()
	}
	// r1's 80 shared by its two zones (equal endpoint weights); r2/z3 is
	// 2.2.2.2 standing for 20.0.0.1; r2/z4 and r3 get nothing.
	if want := "map[r1/z1:40 r1/z2:40 r2/z3:20]"; fmt.Sprint(got) != want {
		t.Errorf("locality weights %v, want %s", got, want)
	}
	// A proxy no rule names keeps the endpoints' own weights.
	a := LoadAssignment(m, at("network1", "cluster1b", "r1", "z2"), m.Service(exampleHost), 80)
	b := LoadAssignment(localityMesh(t), EDSView{Network: "network1"}, m.Service(exampleHost), 80)
	if !proto.Equal(&endpointv3.ClusterLoadAssignment{Endpoints: a.Endpoints}, &endpointv3.ClusterLoadAssignment{Endpoints: b.Endpoints}) {
		t.Errorf("from r1/z2 (no rule): %v, want as without a policy: %v", a, b)
	}
}

// Without a locality policy the load assignment is the network's, whatever
// the proxy's locality: the views of one network may share it.
func TestNoPolicySameForEveryLocality(t *testing.T) {
	m := localityMesh(t, model.TrafficPolicy{Pool: &model.ConnectionPool{MaxConnections: 5}})
	want := LoadAssignment(m, EDSView{Network: "network2"}, m.Service(exampleHost), 80)
	for _, v := range []EDSView{at("network2", "cluster2a", "r2", "z3"), at("network2", "cluster2b", "r2", "z4"), at("network2", "cluster2a", "", "")} {
		if got := LoadAssignment(m, v, m.Service(exampleHost), 80); !proto.Equal(got, want) {
			t.Errorf("view %+v differs from the network's", v)
		}
	}
}
