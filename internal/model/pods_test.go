package model

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

func testPod(ns, name, sa, zone string, addrs ...string) *Pod {
	return &Pod{Namespace: ns, Name: name, ServiceAccount: sa, Labels: map[string]string{"app": name},
		Locality: Locality{Region: "r1", Zone: zone}, Addresses: ips(addrs...)}
}

// ips parses each of s (nil for none).
func ips(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func podTable(pods ...*Pod) *PodTable {
	var ups []PodUpdate
	for _, p := range pods {
		ups = append(ups, PodUpdate{Ref: PodRef{p.Namespace, p.Name}, Pod: p})
	}
	return (*PodTable)(nil).Apply(ups)
}

// A proxy whose Pod no Service selects is still a workload: its Pod's, with
// the Pod's locality, namespace and labels and no ports; the identity rules
// and the order of stated addresses are those of endpoints, and an endpoint
// at an address wins over any Pod.
func TestWorkloadAtFallsBackToPods(t *testing.T) {
	c1 := &ClusterSnapshot{ID: "c1",
		Services: []*ClusterService{{Name: "a", Namespace: "ns", Ports: []ServicePort{{Name: "http", Port: 80}},
			Endpoints: map[uint32][]*Endpoint{80: {{Address: netip.MustParseAddr("10.0.0.1"), Port: 8080,
				Namespace: "ns", PodName: "server", ServiceAccount: "sa", Locality: Locality{Region: "r1", Zone: "z1"}}}}}},
		Pods: podTable(
			testPod("ns", "server", "sa", "z1", "10.0.0.1"), // also an endpoint
			testPod("ns", "client", "sa", "z2", "10.0.0.2", "fd00::2"),
			testPod("ns", "job", "batch", "z3", "10.0.0.3"),
			// A reused address briefly listed for two Pods.
			testPod("ns", "old", "sa", "z1", "10.0.0.4"),
			testPod("ms", "new", "sa", "z2", "10.0.0.4"),
		)}
	c2 := &ClusterSnapshot{ID: "c2", Pods: podTable(testPod("ns", "elsewhere", "sa", "z9", "10.0.0.2"))}
	m := mustBuild(t, BuildInput{Clusters: []*ClusterSnapshot{c1, c2}})
	for _, tc := range []struct {
		name      string
		cluster   ClusterID
		ips       []netip.Addr
		ns, sa    string
		wantPod   string // "": not found
		wantZone  string
		wantPorts []uint32
	}{
		{"client pod", "c1", ips("10.0.0.2"), "", "", "client", "z2", nil},
		{"by its other address", "c1", ips("fd00::2"), "", "", "client", "z2", nil},
		{"with its identity", "c1", ips("10.0.0.2"), "ns", "sa", "client", "z2", nil},
		{"not as another identity", "c1", ips("10.0.0.2"), "ns", "batch", "", "", nil},
		{"not in another namespace", "c1", ips("10.0.0.2"), "other", "sa", "", "", nil},
		{"first stated address wins", "c1", ips("10.0.0.3", "10.0.0.2"), "", "", "job", "z3", nil},
		{"identity skips an address", "c1", ips("10.0.0.3", "10.0.0.2"), "ns", "sa", "client", "z2", nil},
		{"endpoint wins over pod", "c1", ips("10.0.0.2", "10.0.0.1"), "", "", "server", "z1", []uint32{8080}},
		{"two pods at one address: first by namespace", "c1", ips("10.0.0.4"), "", "", "new", "z2", nil},
		{"two pods at one address: identity picks", "c1", ips("10.0.0.4"), "ns", "sa", "old", "z1", nil},
		{"other cluster", "c2", ips("10.0.0.2"), "", "", "elsewhere", "z9", nil},
		{"no such address", "c1", ips("192.0.2.1"), "", "", "", "", nil},
		{"cluster without pods", "c3", ips("10.0.0.2"), "", "", "", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, ok := m.WorkloadAt(tc.cluster, tc.ips, tc.ns, tc.sa)
			if ok != (tc.wantPod != "") {
				t.Fatalf("found %v (%+v), want pod %q", ok, w, tc.wantPod)
			}
			if !ok {
				return
			}
			if w.PodName != tc.wantPod || w.Locality.Zone != tc.wantZone || !slices.Equal(w.Ports, tc.wantPorts) {
				t.Fatalf("got pod %q zone %q ports %v, want %q %q %v", w.PodName, w.Locality.Zone, w.Ports, tc.wantPod, tc.wantZone, tc.wantPorts)
			}
			if tc.wantPorts == nil && (w.Namespace == "" || w.Labels["app"] != tc.wantPod || len(w.TCP) != 0 || len(w.Modes) != 0) {
				t.Fatalf("a pod's workload is its namespace and labels, no ports: %+v", w)
			}
		})
	}
}

// Apply keeps equal Pods (the same table when nothing changed) and records
// the addresses whose Pods changed; ChangedPodAddrs reads them, and
// compares whole tables only when one is not made from the other.
func TestPodTableChanges(t *testing.T) {
	t0 := podTable(testPod("ns", "a", "sa", "z1", "10.0.0.1"), testPod("ns", "b", "sa", "z1", "10.0.0.2"))
	if same := t0.Apply([]PodUpdate{{Ref: PodRef{"ns", "a"}, Pod: testPod("ns", "a", "sa", "z1", "10.0.0.1")}}); same != t0 {
		t.Fatal("an equal Pod made a new table")
	}
	t1 := t0.Apply([]PodUpdate{
		{Ref: PodRef{"ns", "a"}, Pod: testPod("ns", "a", "sa", "z2", "10.0.0.1")}, // moved node
		{Ref: PodRef{"ns", "c"}, Pod: testPod("ns", "c", "sa", "z1", "10.0.0.3")}, // appeared
		{Ref: PodRef{"ns", "b"}}, // went
	})
	if t1.Len() != 2 || t0.Len() != 2 || len(t0.At(netip.MustParseAddr("10.0.0.2"))) != 1 {
		t.Fatalf("lengths %d %d: Apply must not modify its table", t1.Len(), t0.Len())
	}
	mesh := func(pt *PodTable) *Mesh {
		m, _ := Build(BuildInput{Clusters: []*ClusterSnapshot{{ID: "c1", Pods: pt}}})
		return m
	}
	changed := func(prev, m *Mesh) []string {
		var out []string
		ChangedPodAddrs(prev, m, func(c ClusterID, a netip.Addr) { out = append(out, string(c)+"/"+a.String()) })
		slices.Sort(out)
		return out
	}
	want := []string{"c1/10.0.0.1", "c1/10.0.0.2", "c1/10.0.0.3"}
	m0, m1 := mesh(t0), mesh(t1)
	if got := changed(m0, m1); !slices.Equal(got, want) {
		t.Errorf("recorded changes %v, want %v", got, want)
	}
	if got := changed(m1, m0); !slices.Equal(got, want) { // not its base: compared whole
		t.Errorf("compared changes %v, want %v", got, want)
	}
	if got := changed(m1, mesh(t1)); len(got) != 0 {
		t.Errorf("the same table changed %v", got)
	}
	if got := changed(m0, mesh(nil)); !slices.Equal(got, []string{"c1/10.0.0.1", "c1/10.0.0.2"}) {
		t.Errorf("a cluster's pods gone: %v", got)
	}
}

// One Pod's change in a cluster of 10,000: what a push pays for the Pod
// table (the cost is one copy of its maps).
func BenchmarkPodTableApplyOne(b *testing.B) {
	var ups []PodUpdate
	for i := range 10000 {
		p := testPod("ns", fmt.Sprintf("p%d", i), "sa", "z1", netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}).String())
		ups = append(ups, PodUpdate{Ref: PodRef{p.Namespace, p.Name}, Pod: p})
	}
	t := (*PodTable)(nil).Apply(ups)
	b.ResetTimer()
	for i := range b.N {
		p := testPod("ns", "p1", "sa", fmt.Sprintf("z%d", i%2+2), "10.0.0.1")
		t = t.Apply([]PodUpdate{{Ref: PodRef{"ns", "p1"}, Pod: p}})
	}
}

// Whatever updates a table goes through, it holds what a table made at
// once from the same Pods holds, the tables it was made from are left as
// they were, and the changes Apply records hold every one a whole
// comparison finds.
func TestPodTableApplyRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var tab *PodTable
	want := map[PodRef]*Pod{}
	type kept struct {
		t    *PodTable
		pods map[PodRef]*Pod
	}
	var history []kept
	for step := range 300 {
		var ups []PodUpdate
		for range 1 + r.IntN(20) {
			ref := PodRef{"ns", fmt.Sprintf("p%d", r.IntN(600))}
			var p *Pod
			if r.IntN(4) != 0 {
				p = testPod(ref.Namespace, ref.Name, "sa", fmt.Sprintf("z%d", r.IntN(2)), fmt.Sprintf("10.0.%d.%d", r.IntN(3), r.IntN(250)))
			}
			ups = append(ups, PodUpdate{Ref: ref, Pod: p})
			if p == nil {
				delete(want, ref)
			} else {
				want[ref] = p
			}
		}
		next := tab.Apply(ups)
		// Recorded may hold more (a Pod changed and back in one batch).
		got, whole := next.changedSince(tab), (&PodTable{}).compare(next, tab)
		for _, a := range whole {
			if !slices.Contains(got, a) {
				t.Fatalf("step %d: recorded changes %v lack %s (compared: %v)", step, sortAddrs(got), a, sortAddrs(whole))
			}
		}
		tab = next
		history = append(history, kept{tab, maps.Clone(want)})
		for _, h := range history[max(0, len(history)-5):] {
			checkPodTable(t, step, h.t, h.pods)
		}
	}
}

func sortAddrs(a []netip.Addr) []netip.Addr {
	a = slices.Clone(a)
	slices.SortFunc(a, netip.Addr.Compare)
	return a
}

// compare is changedSince's whole comparison of t and old.
func (*PodTable) compare(t, old *PodTable) []netip.Addr {
	if t == old {
		return nil
	}
	cp := *t
	cp.base = ^uint64(0)
	return cp.changedSince(old)
}

func checkPodTable(t *testing.T, step int, tab *PodTable, want map[PodRef]*Pod) {
	t.Helper()
	if tab.Len() != len(want) {
		t.Fatalf("step %d: %d pods, want %d", step, tab.Len(), len(want))
	}
	byAddr := map[netip.Addr][]*Pod{}
	for ref, p := range want {
		if !tab.Get(ref).Equal(p) {
			t.Fatalf("step %d: %v is %+v, want %+v", step, ref, tab.Get(ref), p)
		}
		for _, a := range p.Addresses {
			byAddr[a] = append(byAddr[a], p)
		}
	}
	for a, pods := range byAddr {
		slices.SortFunc(pods, podCompare)
		if !slices.EqualFunc(tab.At(a), pods, (*Pod).Equal) {
			t.Fatalf("step %d: at %s %v, want %v", step, a, tab.At(a), pods)
		}
	}
	if n := len(tab.Refs()); n != len(want) {
		t.Fatalf("step %d: %d refs", step, n)
	}
}
