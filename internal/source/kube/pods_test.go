package kube

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/horizonmesh/horizon/internal/model"
)

func runningPod(name, nodeName, sa string, ips ...string) *corev1.Pod {
	p := pod(name, nodeName, map[string]string{"app": name}, sa)
	p.Status.Phase = corev1.PodRunning
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(ips) > 0 {
		p.Status.PodIP = ips[0]
	}
	return p
}

// Every Pod running a workload at addresses of its own is in the cluster's
// Pod table, with its Node's locality and identity — those no Service
// selects too (the clients whose sidecars need their locality); a Pod not
// started, finished or on the host's network is not.
func TestConvertPods(t *testing.T) {
	s := NewStore()
	s.Upsert(node("n1", "r1", "z1", "s1"), "")
	client := runningPod("client", "n1", "", "10.0.0.2", "fd00::2")
	s.Upsert(client, "")
	s.Upsert(runningPod("server", "n1", "sa", "10.0.0.1"), "")
	s.Upsert(service("svc", corev1.ServicePort{Name: "http", Port: 80}), "")
	s.Upsert(slice("svc-1", "svc", map[string]int32{"http": 8080}, sliceEP{addr: "10.0.0.1", pod: "server"}), "")
	s.Upsert(runningPod("unscheduled", "", "sa", "10.0.0.3"), "") // no Node: no locality
	s.Upsert(runningPod("pending", "n1", "sa"), "")               // no IP yet
	done := runningPod("done", "n1", "sa", "10.0.0.4")
	done.Status.Phase = corev1.PodSucceeded
	s.Upsert(done, "")
	host := runningPod("host", "n1", "sa", "192.0.2.1")
	host.Spec.HostNetwork = true
	s.Upsert(host, "")
	bad := runningPod("bad", "n1", "sa", "10.0.0.5", "not-an-ip")
	bad.Status.PodIP = "10.0.0.5"
	s.Upsert(bad, "pods.yaml")

	snap, diags := Convert("c1", s, Options{})
	got := map[string]string{}
	for _, ref := range snap.Pods.Refs() {
		p := snap.Pods.Get(ref)
		got[ref.Name] = fmt.Sprintf("%s/%s sa=%s %v %s", p.Namespace, p.Name, p.ServiceAccount, p.Addresses, p.Locality)
	}
	want := map[string]string{
		"client":      "sample/client sa=default [10.0.0.2 fd00::2] r1/z1/s1",
		"server":      "sample/server sa=sa [10.0.0.1] r1/z1/s1",
		"unscheduled": "sample/unscheduled sa=sa [10.0.0.3] ",
		"bad":         "sample/bad sa=sa [10.0.0.5] r1/z1/s1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("pods\n%v\nwant\n%v", got, want)
	}
	if p := snap.Pods.Get(model.PodRef{Namespace: "sample", Name: "client"}); reflect.ValueOf(p.Labels).Pointer() != reflect.ValueOf(client.Labels).Pointer() {
		t.Error("a Pod's labels were copied; the table shares the stored object's")
	}
	if len(diags) != 1 || !strings.Contains(diags[0].String(), "Pod sample/bad") || !strings.Contains(diags[0].String(), "status.podIPs[1].ip") {
		t.Errorf("diagnostics %v, want one naming Pod sample/bad and status.podIPs[1].ip", diags)
	}

	// The mesh finds the client by its Pod: its Node's locality, no ports.
	m, _ := model.Build(model.BuildInput{Clusters: []*model.ClusterSnapshot{snap}})
	w, ok := m.WorkloadAt("c1", []netip.Addr{netip.MustParseAddr("fd00::2")}, "sample", "default")
	if !ok || w.PodName != "client" || w.Locality.Zone != "z1" || len(w.Ports) != 0 {
		t.Errorf("workload of the client %+v (found %v)", w, ok)
	}
}

// A change to a Pod no Service selects converts no Service again (the same
// pointers) and only that Pod; an event that changes nothing the table
// holds (a status the table does not read) keeps the very table.
func TestIncrementalPodsTouchNoService(t *testing.T) {
	s := NewStore()
	s.Upsert(node("n1", "r1", "z1", ""), "")
	s.Upsert(node("n2", "r1", "z2", ""), "")
	s.Upsert(service("a", corev1.ServicePort{Name: "http", Port: 80}), "")
	s.Upsert(runningPod("server", "n1", "sa", "10.0.0.1"), "")
	s.Upsert(slice("a-1", "a", map[string]int32{"http": 8080}, sliceEP{addr: "10.0.0.1", pod: "server"}), "")
	src := &Source{Store: s}
	first, _ := src.Snapshot("c1")

	s.Upsert(runningPod("client", "n1", "sa", "10.0.0.2"), "")
	second, _ := src.Snapshot("c1")
	if second.Services[0] != first.Services[0] {
		t.Error("a service-less Pod appearing converted service a again")
	}
	if second.Pods == first.Pods || second.Pods.Get(model.PodRef{Namespace: "sample", Name: "client"}) == nil {
		t.Fatal("the new Pod is not in the table")
	}
	same := runningPod("client", "n1", "sa", "10.0.0.2")
	same.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	s.Upsert(same, "")
	third, _ := src.Snapshot("c1")
	if third.Pods != second.Pods || third.Services[0] != first.Services[0] {
		t.Error("an update that changes nothing the mesh reads made a new table or service")
	}
	s.Upsert(runningPod("client", "n2", "sa", "10.0.0.2"), "") // moved to another node (recreated)
	fourth, _ := src.Snapshot("c1")
	if got := fourth.Pods.Get(model.PodRef{Namespace: "sample", Name: "client"}).Locality.Zone; got != "z2" || fourth.Services[0] != first.Services[0] {
		t.Errorf("after the move: zone %q, service reused %v", got, fourth.Services[0] == first.Services[0])
	}
}

// The log of Pod changes stays within twice the Pods; a conversion older
// than what it keeps converts every Pod again, to the same table.
func TestPodLogTrimmed(t *testing.T) {
	s := NewStore()
	src := &Source{Store: s}
	s.Upsert(runningPod("p", "", "sa", "10.0.0.1"), "")
	src.Snapshot("c1")
	for i := range 3 * minPodLog {
		s.Upsert(runningPod(fmt.Sprintf("p%d", i%8), "", "sa", fmt.Sprintf("10.0.1.%d", i%200)), "")
	}
	if n := len(s.changes.podLog); n > minPodLog {
		t.Errorf("the log holds %d changes of 9 Pods", n)
	}
	got, _ := src.Snapshot("c1")
	want, _ := Convert("c1", s, Options{})
	if g, w := podsOf(got.Pods), podsOf(want.Pods); !reflect.DeepEqual(g, w) {
		t.Errorf("after trimming: %v, want %v", g, w)
	}
}

// The informers' slimmed Pods keep everything the Pod table reads.
func TestSlimPodKeepsWhatPodsRead(t *testing.T) {
	s := NewStore()
	s.Upsert(node("n1", "r1", "z1", ""), "")
	full := runningPod("p", "n1", "sa", "10.0.0.1", "fd00::1")
	full.Spec.Containers = []corev1.Container{{Name: "app", Image: "app"}}
	hostFull := runningPod("h", "n1", "sa", "192.0.2.1")
	hostFull.Spec.HostNetwork = true
	for _, p := range []*corev1.Pod{full, hostFull} {
		slim, err := slimPod(p)
		if err != nil {
			t.Fatal(err)
		}
		c := converter{s: s}
		want, _ := c.workloadPod(p, "")
		got, _ := c.workloadPod(slim.(*corev1.Pod), "")
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: slimmed %+v, full %+v", p.Name, got, want)
		}
	}
}
