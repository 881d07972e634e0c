package controlplane

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/testing/adsclient"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// A sidecar whose Pod no Service selects (a client, a Job) gets its Pod's
// Node's locality: its EDS view is located and a service with a locality
// policy is sent to it with priorities, nearest zone first. When its Pod
// appears only after the proxy connected (the informer was behind), the
// stream moves to the located view; when the Pod goes, back to the
// network's. Its clusters and listeners are those of a proxy whose
// workload serves nothing, and the other streams hear nothing of it.
func TestServicelessPodGetsItsLocality(t *testing.T) {
	st := zonedStore() // Pods p-z1 (10.1.0.1) and p-z2 (10.1.0.2) serve a and b
	cp := newLocal(st)
	cp.SetDestinationRules([]*model.DestinationRule{{Name: "a", Namespace: "ns", Host: "a", Policy: model.TrafficPolicy{Locality: &model.LocalityLB{}}.Seal()}})
	addr := serveReady(t, cp)

	const a = "outbound|80||a.ns.svc.cluster.local"
	dial := func(id, ip string) *adsclient.Client {
		c := dialSidecar(t, addr, adsclient.Node(id, "", "c1"), ip, resource.ClusterType, resource.ListenerType)
		if err := c.Request(resource.EndpointType, []string{a}, "", "", ""); err != nil {
			t.Fatal(err)
		}
		return c
	}
	// priorities are a's endpoints by priority, "10.1.0.2:8080@0 10.1.0.1:8080@1".
	priorities := func(want string) func(*discovery.DiscoveryResponse) bool {
		return func(r *discovery.DiscoveryResponse) bool {
			clas, _ := adsclient.LoadAssignments(r)
			cla := clas[a]
			if cla == nil {
				return false
			}
			var got []string
			for _, le := range cla.Endpoints {
				for _, lb := range le.LbEndpoints {
					sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
					got = append(got, fmt.Sprintf("%s:%d@%d", sa.GetAddress(), sa.GetPortValue(), le.Priority))
				}
			}
			return strings.Join(got, " ") == want
		}
	}
	views := func() string {
		var out []string
		for _, s := range cp.Tracker.Streams() {
			out = append(out, s.Proxy+" "+s.Types[resource.EndpointType].View+" "+s.Types[resource.ClusterType].View)
		}
		return strings.Join(out, "; ")
	}
	clientPod := func(ip string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "client", Namespace: "ns", Labels: map[string]string{"app": "client"}},
			Spec:   corev1.PodSpec{NodeName: "node-z2"},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip}}
	}

	// A Job's Pod already known: located in z2 from its first request.
	st.Upsert(clientPod("10.1.0.7"), "")
	st.Upsert(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "job", Namespace: "ns"}, Spec: corev1.PodSpec{NodeName: "node-z1"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.1.0.8"}}, "")
	cp.ClusterChanged("c1")
	testkit.WaitFor(t, "the Job's Pod in the mesh", func() bool {
		return cp.mesh.Load().Pods("c1").Get(model.PodRef{Namespace: "ns", Name: "job"}) != nil
	})
	job := dial("sidecar~10.1.0.8~job.ns~ns.svc.cluster.local", "10.1.0.8")
	if _, err := job.Wait(resource.EndpointType, 10*time.Second, priorities("10.1.0.1:8080@0 10.1.0.2:8080@1")); err != nil {
		t.Fatalf("the Job's sidecar (z1): %v (views: %s)", err, views())
	}

	// A client whose Pod the mesh does not know yet: the network's view,
	// no priorities.
	st.Delete(clientPod(""))
	cp.ClusterChanged("c1")
	testkit.WaitFor(t, "the client's Pod gone", func() bool {
		return cp.mesh.Load().Pods("c1").Get(model.PodRef{Namespace: "ns", Name: "client"}) == nil
	})
	client := dial("sidecar~10.1.0.7~client.ns~ns.svc.cluster.local", "10.1.0.7")
	if _, err := client.Wait(resource.EndpointType, 10*time.Second, priorities("10.1.0.1:8080@0 10.1.0.2:8080@0")); err != nil {
		t.Fatalf("before its Pod: %v (views: %s)", err, views())
	}
	if _, err := client.Wait(resource.ClusterType, 10*time.Second, func(*discovery.DiscoveryResponse) bool { return true }); err != nil {
		t.Fatal(err)
	}
	jobEDS, clientCDS, clientLDS := job.Count(resource.EndpointType), client.Count(resource.ClusterType), client.Count(resource.ListenerType)
	want := "sidecar~10.1.0.7~client.ns~ns.svc.cluster.local network=;cluster=c1;locality=r1/z2/ sidecar;cluster=c1;inbound="
	if v := views(); strings.Contains(v, want) {
		t.Fatalf("located before its Pod is known: %s", v)
	}

	built := func() float64 {
		m := &dtoMetric{}
		_ = cp.metrics.assignments.WithLabelValues("built").Write(m.ptr())
		return m.value()
	}
	before, seq := built(), cp.PushSeq()

	// Its Pod appears (on node-z2): the same stream moves to z2's view.
	st.Upsert(clientPod("10.1.0.7"), "")
	cp.ClusterChanged("c1")
	if _, err := client.Wait(resource.EndpointType, 10*time.Second, priorities("10.1.0.2:8080@0 10.1.0.1:8080@1")); err != nil {
		t.Fatalf("after its Pod appeared: %v (views: %s)", err, views())
	}
	if v := views(); !strings.Contains(v, want) {
		t.Errorf("syncz does not show the located view %q: %s", want, v)
	}
	if _, err := cp.WaitPush(context.Background(), seq); err != nil { // its whole push, not just the client's part
		t.Fatal(err)
	}
	// Nothing else changed for anyone: no clusters or listeners resent
	// (the view's key is a workload serving nothing, as before), no
	// endpoints to the Job's sidecar.
	if n := client.Count(resource.ClusterType) + client.Count(resource.ListenerType); n != clientCDS+clientLDS {
		t.Errorf("the client got %d more CDS/LDS responses", n-clientCDS-clientLDS)
	}
	if n := job.Count(resource.EndpointType); n != jobEDS {
		t.Errorf("the Job's sidecar got %d more EDS responses", n-jobEDS)
	}
	// A Pod's change touches no Service: the one load assignment built is
	// a's in z2's view, new (a view's first build), none again.
	if n := built() - before; n != 1 {
		t.Errorf("%v load assignments built for a service-less Pod's arrival, want 1 (a, in the new view)", n)
	}

	// Its Pod goes: back to the network's view.
	st.Delete(clientPod(""))
	cp.ClusterChanged("c1")
	if _, err := client.Wait(resource.EndpointType, 10*time.Second, priorities("10.1.0.1:8080@0 10.1.0.2:8080@0")); err != nil {
		t.Fatalf("after its Pod went: %v (views: %s)", err, views())
	}
}
