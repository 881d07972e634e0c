package labnode

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// The pod lifecycle (pod.go, prober.go) through a fake Runtime: no root,
// no processes, no API server — what virtual-kubelet's PodController calls
// (CreatePod, UpdatePod, DeletePod, GetPod, NotifyPods) and what the node
// does on this machine in answer.

// rig is a Node on a fake runtime and a fake API, with every status it
// notified.
type rig struct {
	n      *Node
	rt     *fakeRuntime
	client *fake.Clientset

	mu       sync.Mutex
	notified map[string][]*corev1.Pod // by namespace/name
}

func newRig(t *testing.T, objs ...runtime.Object) *rig {
	t.Helper()
	r := &rig{rt: newFakeRuntime(), client: fake.NewClientset(objs...), notified: map[string][]*corev1.Pod{}}
	var logMu sync.Mutex
	ended := false
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		if !ended {
			t.Logf(format, args...)
		}
	}
	n, err := newNode(Config{NodeName: "node1", StateDir: t.TempDir(), Logf: logf, Runtime: r.rt,
		NetnsPrefix: "hzt", BridgeNS: "hzt-br", Bridge: "br0", PodCIDR: "10.77.0.0/24", Gateway: "10.77.0.1",
		Programs:       Programs{Helloworld: "helloworld"},
		RestartBackoff: 20 * time.Millisecond, MaxRestartBackoff: 80 * time.Millisecond}, r.client)
	if err != nil {
		t.Fatal(err)
	}
	r.n = n
	n.NotifyPods(context.Background(), func(p *corev1.Pod) {
		r.mu.Lock()
		defer r.mu.Unlock()
		key := p.Namespace + "/" + p.Name
		r.notified[key] = append(r.notified[key], p.DeepCopy())
	})
	t.Cleanup(func() {
		n.stopAll()
		logMu.Lock()
		ended = true
		logMu.Unlock()
	})
	return r
}

// last is the last status notified for pod ns/name.
func (r *rig) last(name string) *corev1.Pod {
	r.mu.Lock()
	defer r.mu.Unlock()
	all := r.notified["ns/"+name]
	if len(all) == 0 {
		return nil
	}
	return all[len(all)-1]
}

// waitPod waits until the last status of ns/name satisfies ok.
func (r *rig) waitPod(t *testing.T, name, what string, ok func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var p *corev1.Pod
	testkit.WaitFor(t, "pod "+name+": "+what, func() bool {
		p = r.last(name)
		return p != nil && ok(p)
	})
	return p
}

func (r *rig) create(t *testing.T, p *corev1.Pod) {
	t.Helper()
	if _, err := r.client.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r.n.CreatePod(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

func fakePod(name string, containers ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name)},
		Spec: corev1.PodSpec{NodeName: "node1", TerminationGracePeriodSeconds: ptr[int64](1), Containers: containers}}
}

// fakeContainer runs the fake runtime's script words (fakeruntime_test.go).
func fakeContainer(name string, script ...string) corev1.Container {
	return corev1.Container{Name: name, Image: "curlimages/curl", Command: append([]string{"sleep"}, script...)}
}

func status(p *corev1.Pod, name string) corev1.ContainerStatus {
	for _, s := range append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...) {
		if s.Name == name {
			return s
		}
	}
	return corev1.ContainerStatus{}
}

func condition(p *corev1.Pod, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

// A pod's life: its namespace on the bridge with the first free address,
// the init container run to completion before the containers start,
// output in the run's log, Ready once its readiness probe passes, and on
// deletion SIGTERM to each main process, the namespace deleted, the files
// removed, the address freed, the final status sent and the Pod removed
// from the API.
func TestPodLifecycle(t *testing.T) {
	r := newRig(t)
	ready := &corev1.Probe{PeriodSeconds: 1, ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"check", "flag=ready"}}}}
	app := fakeContainer("app", "out=hello", "err=oops")
	app.ReadinessProbe = ready
	pod := fakePod("web", app, fakeContainer("side"))
	pod.Spec.InitContainers = []corev1.Container{fakeContainer("init", "out=initialized", "exit=0")}
	r.create(t, pod)

	p := r.waitPod(t, "web", "running", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning && status(p, "app").State.Running != nil && status(p, "side").State.Running != nil
	})
	if p.Status.PodIP != "10.77.0.2" || p.Status.HostIP != "10.77.0.1" || condition(p, corev1.PodInitialized) != corev1.ConditionTrue {
		t.Errorf("status %+v", p.Status)
	}
	if s := status(p, "init"); s.State.Terminated == nil || s.State.Terminated.ExitCode != 0 || s.State.Terminated.Reason != "Completed" {
		t.Errorf("init container %+v", s.State)
	}
	ns := r.n.net.NetnsName("uid-web")
	if got := r.rt.commands("ip netns add"); !slices.Equal(got, []string{"ip netns add " + ns}) {
		t.Errorf("namespaces added: %q", got)
	}
	if got := r.rt.commands("ip -n " + ns + " addr add"); !slices.Equal(got, []string{"ip -n " + ns + " addr add 10.77.0.2/24 dev eth0"}) {
		t.Errorf("address: %q", got)
	}
	initProc, appProc := r.rt.procsOf("init")[0], r.rt.procsOf("app")[0]
	if initProc.launch.Netns != ns || initProc.launch.Hostname != "web" || !slices.Contains(appProc.env, "HOSTNAME=web") {
		t.Errorf("launch %+v, env %q", initProc.launch, appProc.env)
	}
	// The init container ended before the containers started.
	if !initProc.exited() || len(r.rt.procsOf("app")) != 1 || len(r.rt.procsOf("side")) != 1 {
		t.Errorf("processes: init exited %v, app %d, side %d", initProc.exited(), len(r.rt.procsOf("app")), len(r.rt.procsOf("side")))
	}
	if got := podLogs(t, r.n, "web", "app"); got != "hello\noops\n" && got != "oops\nhello\n" {
		t.Errorf("app's log %q", got)
	}

	// Not Ready until the probe passes.
	if condition(p, corev1.PodReady) != corev1.ConditionFalse || status(p, "side").Ready != true || status(p, "app").Ready {
		t.Errorf("before the probe passes: %+v", p.Status)
	}
	r.rt.setFlag("ready", true)
	r.waitPod(t, "web", "Ready", func(p *corev1.Pod) bool { return condition(p, corev1.PodReady) == corev1.ConditionTrue })
	if got, err := r.n.GetPod(context.Background(), "ns", "web"); err != nil || got.Status.PodIP != "10.77.0.2" {
		t.Errorf("GetPod: %v %v", got, err)
	}
	if pods, _ := r.n.GetPods(context.Background()); len(pods) != 1 {
		t.Errorf("GetPods: %d", len(pods))
	}

	// UpdatePod takes labels (and the deletion mark) only.
	upd := pod.DeepCopy()
	upd.Labels = map[string]string{"v": "2"}
	if err := r.n.UpdatePod(context.Background(), upd); err != nil {
		t.Fatal(err)
	}
	r.waitPod(t, "web", "new labels", func(p *corev1.Pod) bool { return p.Labels["v"] == "2" })

	// Deleted in the API: SIGTERM to each main process, then everything
	// goes.
	now := metav1.Now()
	del := pod.DeepCopy()
	del.DeletionTimestamp, del.DeletionGracePeriodSeconds = &now, ptr[int64](1)
	if err := r.n.DeletePod(context.Background(), del); err != nil {
		t.Fatal(err)
	}
	final := r.waitPod(t, "web", "gone", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	for _, c := range []string{"app", "side"} {
		if s := status(final, c); s.State.Terminated == nil || s.State.Terminated.ExitCode != 143 || s.Ready {
			t.Errorf("%s at the end: %+v", c, s)
		}
		if got := r.rt.procsOf(c)[0].signals(); len(got) == 0 || got[0] != "TERM" {
			t.Errorf("%s got %q, want TERM first", c, got)
		}
	}
	if _, err := r.n.GetPod(context.Background(), "ns", "web"); !errdefs.IsNotFound(err) {
		t.Errorf("GetPod after deletion: %v", err)
	}
	if got := r.rt.commands("ip netns del"); !slices.Equal(got, []string{"ip netns del " + ns}) {
		t.Errorf("namespaces deleted: %q", got)
	}
	if ents, _ := os.ReadDir(filepath.Join(r.n.cfg.StateDir, "pods")); len(ents) != 0 {
		t.Errorf("files left: %v", ents)
	}
	if _, err := r.client.CoreV1().Pods("ns").Get(context.Background(), "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the Pod is still in the API: %v", err)
	}
	if a, err := r.n.net.Allocate("another"); err != nil || a.String() != "10.77.0.2" {
		t.Errorf("the address was not freed: %s %v", a, err)
	}
	if err := r.n.DeletePod(context.Background(), del); !errdefs.IsNotFound(err) {
		t.Errorf("deleting again: %v", err)
	}
}

// A container that exits is restarted with a growing back-off, its last
// termination kept; `--previous` has the run before.
func TestPodRestarts(t *testing.T) {
	r := newRig(t)
	r.create(t, fakePod("crash", fakeContainer("c", "out=run", "exit=3")))
	p := r.waitPod(t, "crash", "restarted three times", func(p *corev1.Pod) bool { return status(p, "c").RestartCount >= 3 })
	s := status(p, "c")
	if p.Status.Phase != corev1.PodRunning || s.LastTerminationState.Terminated == nil || s.LastTerminationState.Terminated.ExitCode != 3 {
		t.Errorf("after restarts: phase %s, %+v", p.Status.Phase, s)
	}
	p = r.waitPod(t, "crash", "in back-off", func(p *corev1.Pod) bool {
		w := status(p, "c").State.Waiting
		return w != nil && w.Reason == reasonCrashLoop
	})
	if w := status(p, "c").State.Waiting; !strings.Contains(w.Message, "back-off") || !strings.Contains(w.Message, "restarting failed container c") {
		t.Errorf("waiting %+v", w)
	}
	if got := podLogs(t, r.n, "crash", "c"); got != "run\n" {
		t.Errorf("logs %q", got)
	}
	// The back-off grows from the node's first delay (20ms), doubling, to
	// its maximum (80ms).
	delays := func() []string {
		r.mu.Lock()
		defer r.mu.Unlock()
		var out []string
		for _, p := range r.notified["ns/crash"] {
			if w := status(p, "c").State.Waiting; w != nil && w.Reason == reasonCrashLoop {
				if d := strings.Fields(w.Message)[1]; len(out) == 0 || out[len(out)-1] != d {
					out = append(out, d)
				}
			}
		}
		return out
	}
	testkit.WaitFor(t, "the longest back-off", func() bool { return slices.Contains(delays(), "80ms") })
	for _, d := range delays() {
		if d != "20ms" && d != "40ms" && d != "80ms" {
			t.Errorf("back-offs %q", delays())
		}
	}
	if got := len(r.rt.procsOf("c")); got < 4 {
		t.Errorf("%d runs", got)
	}
}

// With restartPolicy Never a pod ends: Succeeded when every container
// exited 0, Failed otherwise; a failing init container fails the pod and
// its containers never start.
func TestPodRestartPolicyNever(t *testing.T) {
	r := newRig(t)
	ok := fakePod("ok", fakeContainer("a", "exit=0"), fakeContainer("b", "exit=0"))
	failed := fakePod("failed", fakeContainer("a", "exit=0"), fakeContainer("b", "exit=1"))
	initFails := fakePod("init-fails", fakeContainer("main"))
	initFails.Spec.InitContainers = []corev1.Container{fakeContainer("init", "exit=2")}
	for _, p := range []*corev1.Pod{ok, failed, initFails} {
		p.Spec.RestartPolicy = corev1.RestartPolicyNever
		r.create(t, p)
	}
	r.waitPod(t, "ok", "Succeeded", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	r.waitPod(t, "failed", "Failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	p := r.waitPod(t, "init-fails", "Failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if p.Status.Reason != "InitContainerFailed" || !strings.Contains(p.Status.Message, "init container init exited with 2") {
		t.Errorf("status %q %q", p.Status.Reason, p.Status.Message)
	}
	if n := len(r.rt.procsOf("main")); n != 0 {
		t.Errorf("the container started %d times after its init container failed", n)
	}
	if s := status(p, "main"); s.State.Waiting == nil || s.State.Waiting.Reason != reasonPodInit {
		t.Errorf("main: %+v", s.State)
	}
	if n := len(r.rt.procsOf("b")); n != 2 { // one per pod
		t.Errorf("b ran %d times, want once per pod", n)
	}
}

// A container that ignores SIGTERM gets SIGKILL, with every process of
// it, once the grace period is over; a node going down signals every
// process of every container at once.
func TestPodGracePeriod(t *testing.T) {
	r := newRig(t)
	r.create(t, fakePod("stubborn", fakeContainer("c", "ignore-term")))
	r.waitPod(t, "stubborn", "running", func(p *corev1.Pod) bool { return status(p, "c").State.Running != nil })
	pod := fakePod("stubborn")
	pod.DeletionGracePeriodSeconds = ptr[int64](0)
	begin := time.Now()
	if err := r.n.DeletePod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	p := r.waitPod(t, "stubborn", "killed", func(p *corev1.Pod) bool { return status(p, "c").State.Terminated != nil })
	if code := status(p, "c").State.Terminated.ExitCode; code != 137 {
		t.Errorf("exit code %d, want 137 (SIGKILL)", code)
	}
	if got := r.rt.procsOf("c")[0].signals(); len(got) < 2 || got[0] != "TERM" || got[1] != "group KILL" {
		t.Errorf("signals %q, want TERM then group KILL", got)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
	// Not deleted in the API (no deletion timestamp): the pod stays there.
	if got := r.rt.commands("ip netns del"); len(got) != 1 {
		t.Errorf("namespaces deleted: %q", got)
	}

	r.create(t, fakePod("other", fakeContainer("x"), fakeContainer("y")))
	r.waitPod(t, "other", "running", func(p *corev1.Pod) bool {
		return status(p, "x").State.Running != nil && status(p, "y").State.Running != nil
	})
	r.n.stopAll()
	for _, c := range []string{"x", "y"} {
		if got := r.rt.procsOf(c)[0].signals(); len(got) == 0 || got[0] != "group TERM" {
			t.Errorf("%s at node shutdown: %q", c, got)
		}
	}
}

// What the node cannot run is said in the status and nothing starts: an
// unsupported field (the pod's reason names it), an image without a
// program (ErrImagePull), a network that cannot be made.
func TestPodCannotRun(t *testing.T) {
	r := newRig(t)
	unsupported := fakePod("host", fakeContainer("c"))
	unsupported.Spec.HostNetwork = true
	r.create(t, unsupported)
	p := r.waitPod(t, "host", "refused", func(p *corev1.Pod) bool { return p.Status.Reason == reasonUnsupported })
	if w := status(p, "c").State.Waiting; w == nil || w.Reason != reasonConfig || !strings.Contains(w.Message, "spec.hostNetwork") {
		t.Errorf("waiting %+v", w)
	}

	unknown := fakePod("image", corev1.Container{Name: "c", Image: "example/unknown"})
	r.create(t, unknown)
	p = r.waitPod(t, "image", "ErrImagePull", func(p *corev1.Pod) bool {
		w := status(p, "c").State.Waiting
		return w != nil && w.Reason == reasonImagePull
	})
	if w := status(p, "c").State.Waiting; !strings.Contains(w.Message, "example/unknown") {
		t.Errorf("waiting %+v", w)
	}

	r.rt.mu.Lock()
	r.rt.fail["ip link add"] = errors.New("ip link add: RTNETLINK answers: File exists")
	r.rt.mu.Unlock()
	r.create(t, fakePod("nonet", fakeContainer("c")))
	p = r.waitPod(t, "nonet", "no network", func(p *corev1.Pod) bool { return p.Status.Reason == reasonNetwork })
	if w := status(p, "c").State.Waiting; w == nil || w.Reason != reasonCreating || !strings.Contains(w.Message, "network: ip link add: RTNETLINK") {
		t.Errorf("waiting %+v", w)
	}
	// The half-made namespace is removed again.
	ns := r.n.net.NetnsName("uid-nonet")
	if got := r.rt.commands("ip netns del " + ns); len(got) == 0 {
		t.Error("the half-made namespace stays")
	}
	if n := len(r.rt.procsOf("c")); n != 0 {
		t.Errorf("%d processes started", n)
	}
}

// A liveness probe that fails its threshold restarts the container (SIGTERM
// to its processes); a TCP readiness probe connects from inside the pod's
// namespace.
func TestPodProbes(t *testing.T) {
	r := newRig(t)
	c := fakeContainer("c")
	c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 5000}}
	c.ReadinessProbe = &corev1.Probe{PeriodSeconds: 1, ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("http")}}}
	c.LivenessProbe = &corev1.Probe{PeriodSeconds: 1, FailureThreshold: 1, ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"check", "flag=alive"}}}}
	r.rt.setFlag("alive", true)
	r.create(t, fakePod("probed", c))
	p := r.waitPod(t, "probed", "running", func(p *corev1.Pod) bool { return status(p, "c").State.Running != nil })
	if status(p, "c").Ready {
		t.Error("Ready with nothing listening")
	}
	ns := r.n.net.NetnsName("uid-probed")
	r.rt.mu.Lock()
	r.rt.listening[ns+" 10.77.0.2:5000"] = true
	r.rt.mu.Unlock()
	r.waitPod(t, "probed", "Ready", func(p *corev1.Pod) bool { return status(p, "c").Ready })

	r.rt.setFlag("alive", false)
	r.waitPod(t, "probed", "restarted", func(p *corev1.Pod) bool { return status(p, "c").RestartCount >= 1 })
	if got := r.rt.procsOf("c")[0].signals(); len(got) == 0 || got[0] != "group TERM" {
		t.Errorf("the failed container got %q, want group TERM", got)
	}
	if probes := r.rt.procsOf("c-probe"); len(probes) == 0 || !slices.Equal(probes[0].launch.Argv, []string{"check", "flag=alive"}) || probes[0].launch.Netns != ns {
		t.Errorf("exec probes %d", len(probes))
	}
}

// podLogs is what `kubectl logs` shows of container c of pod ns/name.
func podLogs(t *testing.T, n *Node, name, c string) string {
	t.Helper()
	var out string
	testkit.WaitFor(t, "the log of "+name+"/"+c, func() bool {
		rc, err := n.GetContainerLogs(context.Background(), "ns", name, c, api.ContainerLogOpts{})
		if err != nil {
			return false
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		out = string(b)
		return err == nil && out != ""
	})
	return out
}
