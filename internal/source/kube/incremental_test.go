package kube

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/horizonmesh/horizon/internal/model"
)

// Whatever the store goes through (Services, slices moving between
// Services, Pods relabelled, Nodes and the system namespace changing),
// Source.Snapshot — which converts only what changed — gives exactly what a
// whole conversion gives, and reuses what nothing touched.
func TestIncrementalSnapshotEqualsConvert(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 1))
		s := NewStore()
		src := &Source{Store: s}
		svcs := []string{"a", "b", "c", "d"}
		pods := []string{"p0", "p1", "p2", "p3", "p4"}
		for step := range 60 {
			var obj runtime.Object
			del := r.IntN(6) == 0
			switch r.IntN(6) {
			case 0:
				obj = service(svcs[r.IntN(len(svcs))], corev1.ServicePort{Name: "http", Port: int32(80 + r.IntN(2))})
			case 1, 2:
				var eps []sliceEP
				for range r.IntN(3) {
					eps = append(eps, sliceEP{addr: fmt.Sprintf("10.0.0.%d", r.IntN(6)), pod: pods[r.IntN(len(pods))]})
				}
				obj = slice(fmt.Sprintf("s%d", r.IntN(5)), svcs[r.IntN(len(svcs))], map[string]int32{"http": 8080}, eps...)
			case 3:
				labels := map[string]string{"app": "x"}
				if r.IntN(2) == 0 {
					labels[LabelTLSMode] = TLSModeIstio
				}
				p := pod(pods[r.IntN(len(pods))], fmt.Sprintf("n%d", r.IntN(2)), labels, fmt.Sprintf("sa%d", r.IntN(2)))
				// Some run at an address of their own (the Pod table),
				// some have none yet, finished or on the host network.
				switch r.IntN(5) {
				case 0, 1:
					p.Status.PodIP = fmt.Sprintf("10.0.0.%d", r.IntN(6))
				case 2:
					p.Status.PodIP, p.Status.Phase = "10.0.0.1", corev1.PodSucceeded
				case 3:
					p.Status.PodIP, p.Spec.HostNetwork = "192.0.2.1", true
				}
				obj = p
			case 4:
				obj = node(fmt.Sprintf("n%d", r.IntN(2)), fmt.Sprintf("r%d", r.IntN(2)), "z", "")
			case 5:
				obj = namespace("istio-system", map[string]string{LabelNetwork: fmt.Sprintf("net%d", r.IntN(2))})
			}
			if del {
				s.Delete(obj)
			} else {
				s.Upsert(obj, "")
			}
			got, gotDiags := src.Snapshot("c1")
			want, wantDiags := Convert("c1", s, Options{})
			if g, w := podsOf(got.Pods), podsOf(want.Pods); !reflect.DeepEqual(g, w) {
				t.Fatalf("seed %d step %d (%T, deleted %v): incremental pods %v, whole conversion %v", seed, step, obj, del, g, w)
			}
			got.Pods, want.Pods = nil, nil // tables made differently hold different change records
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d step %d (%T, deleted %v): incremental snapshot\n%s\nwhole conversion\n%s", seed, step, obj, del, dump(got), dump(want))
			}
			if !slices.Equal(diagStrings(gotDiags), diagStrings(wantDiags)) {
				t.Fatalf("seed %d step %d: diagnostics %v, want %v", seed, step, gotDiags, wantDiags)
			}
		}
	}
}

// A change to one service's slice converts that service again and reuses
// the others (the same pointers).
func TestIncrementalSnapshotReusesUntouchedServices(t *testing.T) {
	s := NewStore()
	s.Upsert(service("a", corev1.ServicePort{Name: "http", Port: 80}), "")
	s.Upsert(service("b", corev1.ServicePort{Name: "http", Port: 80}), "")
	s.Upsert(slice("a-1", "a", map[string]int32{"http": 8080}, sliceEP{addr: "10.0.0.1"}), "")
	s.Upsert(slice("b-1", "b", map[string]int32{"http": 8080}, sliceEP{addr: "10.0.0.2"}), "")
	src := &Source{Store: s}
	first, _ := src.Snapshot("c1")
	s.Upsert(slice("b-1", "b", map[string]int32{"http": 8080}, sliceEP{addr: "10.0.0.3"}), "")
	second, _ := src.Snapshot("c1")
	if first.Services[0] != second.Services[0] {
		t.Error("service a, untouched, was converted again")
	}
	if first.Services[1] == second.Services[1] || second.Services[1].Endpoints[80][0].Address.String() != "10.0.0.3" {
		t.Error("service b, whose slice changed, was reused")
	}
	s.Upsert(node("n0", "r1", "z", ""), "") // localities: everything may change
	third, _ := src.Snapshot("c1")
	if third.Services[0] == second.Services[0] {
		t.Error("after a Node change service a was reused")
	}
}

// podsOf returns the Pods of a table by reference, as strings.
func podsOf(t *model.PodTable) map[model.PodRef]string {
	out := map[model.PodRef]string{}
	for _, ref := range t.Refs() {
		out[ref] = fmt.Sprintf("%+v", *t.Get(ref))
		for _, a := range t.Get(ref).Addresses {
			if !slices.Contains(t.At(a), t.Get(ref)) {
				out[ref] += " (not at " + a.String() + ")"
			}
		}
	}
	return out
}

func diagStrings(d model.Diagnostics) []string {
	out := make([]string, 0, len(d))
	for _, x := range d {
		out = append(out, x.String())
	}
	slices.Sort(out)
	return out
}

func dump(s *model.ClusterSnapshot) string {
	out := fmt.Sprintf("network %q\n", s.SystemNamespaceNetwork)
	for _, cs := range s.Services {
		out += fmt.Sprintf("  %s/%s ports %v:", cs.Namespace, cs.Name, cs.Ports)
		for p, eps := range cs.Endpoints {
			for _, e := range eps {
				out += fmt.Sprintf(" %d→%+v", p, *e)
			}
		}
		out += "\n"
	}
	return out
}

// The index of which services' slices name a Pod holds only what the
// current slices say: Pods churning through a service's slices, and the
// slices going, leave nothing behind; a Pod another slice of the service
// still names keeps its entry, and its change still reconverts the
// service. A service whose Service and slices are gone is not tracked.
func TestPodServiceIndexFollowsSlices(t *testing.T) {
	s := NewStore()
	s.Upsert(service("a", corev1.ServicePort{Name: "http", Port: 80}), "")
	s.Upsert(slice("a-2", "a", map[string]int32{"http": 8080}, sliceEP{addr: "10.0.9.1", pod: "steady"}), "")
	for i := range 500 {
		s.Upsert(slice("a-1", "a", map[string]int32{"http": 8080},
			sliceEP{addr: fmt.Sprintf("10.0.1.%d", i%200), pod: fmt.Sprintf("web-%d", i)},
			sliceEP{addr: "10.0.9.1", pod: "steady"}), "")
	}
	want := map[objectKey]map[objectKey]int{
		{"sample", "web-499"}: {{"sample", "a"}: 1},
		{"sample", "steady"}:  {{"sample", "a"}: 2},
	}
	if !reflect.DeepEqual(s.changes.podSvcs, want) {
		t.Errorf("after 500 Pods through a-1: %v, want %v", s.changes.podSvcs, want)
	}
	s.Delete(slice("a-1", "a", nil))
	want = map[objectKey]map[objectKey]int{{"sample", "steady"}: {{"sample", "a"}: 1}}
	if !reflect.DeepEqual(s.changes.podSvcs, want) || len(s.changes.slicePods) != 1 {
		t.Errorf("after a-1 went: %v (%d slices), want %v", s.changes.podSvcs, len(s.changes.slicePods), want)
	}
	src := &Source{Store: s}
	first, _ := src.Snapshot("c1")
	s.Upsert(pod("steady", "", map[string]string{"v": "2"}, "sa"), "")
	if second, _ := src.Snapshot("c1"); second.Services[0] == first.Services[0] {
		t.Error("a change of a Pod a-2 names did not convert service a again")
	}
	s.Delete(slice("a-2", "a", nil))
	if len(s.changes.podSvcs) != 0 || len(s.changes.slicePods) != 0 || len(s.changes.svcSlices) != 0 {
		t.Errorf("after every slice went: %v %v %v", s.changes.podSvcs, s.changes.slicePods, s.changes.svcSlices)
	}
	// The Service gone too: nothing of a is tracked; back, it converts.
	s.Delete(service("a"))
	if len(s.changes.svcGen) != 0 {
		t.Errorf("after service a went: %v", s.changes.svcGen)
	}
	s.Upsert(service("a", corev1.ServicePort{Name: "http", Port: 81}), "")
	back, _ := src.Snapshot("c1")
	fresh, _ := Convert("c1", s, Options{})
	if dump(back) != dump(fresh) {
		t.Errorf("service a back:\n%s\nwant\n%s", dump(back), dump(fresh))
	}
}
