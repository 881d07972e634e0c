//go:build integration

package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/horizonmesh/horizon/internal/cli"
	"github.com/horizonmesh/horizon/internal/lab"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
)

// horizonLab runs `horizon lab ARGS --state-dir state` in this process.
func horizonLab(t *testing.T, state string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = cli.Run(append(append([]string{"lab"}, args...), "--state-dir", state), &out, &errOut)
	return code, out.String(), errOut.String()
}

// labProcesses are the live (not zombie) processes whose command line
// names a file in state, and those of pids still alive.
func labProcesses(state string, pids []int) []string {
	var out []string
	alive := func(pid int) bool {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return false
		}
		i := bytes.LastIndexByte(b, ')')
		return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
	}
	for _, pid := range pids {
		if alive(pid) {
			out = append(out, "recorded pid "+strconv.Itoa(pid))
		}
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if bytes.Contains(b, []byte(state+"/")) && alive(pid) {
			out = append(out, e.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

// `horizon lab up` starts two real control planes whose controller manager
// and scheduler do their work (a Deployment becomes a ReplicaSet and Pods
// bound to a Node; every namespace gets its default ServiceAccount), is a
// no-op when up, recovers from a crashed component, and `lab down` leaves
// no process behind.
func TestLab(t *testing.T) {
	bin := kubeharness.Binaries(t) // skips (or fails under CI) without the binaries
	if err := lab.CheckBinaries(bin); err != nil {
		if kubeharness.Required() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	state := filepath.Join(t.TempDir(), "lab")
	var recorded []int
	t.Cleanup(func() {
		if left := labProcesses(state, recorded); len(left) > 0 {
			horizonLab(t, state, "down")
		}
	})

	begin := time.Now()
	code, out, errOut := horizonLab(t, state, "up")
	if code != 0 {
		t.Fatalf("lab up: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("lab up in %s:\n%s", time.Since(begin).Round(100*time.Millisecond), errOut)
	for _, want := range []string{"cluster1: kube-apiserver ready", "cluster2: kube-controller-manager and kube-scheduler running"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("lab up's progress lacks %q", want)
		}
	}
	st, err := lab.LoadState(state)
	if err != nil || st == nil {
		t.Fatalf("lab.json: %v", err)
	}
	for _, c := range st.Clusters {
		for _, p := range c.Processes {
			recorded = append(recorded, p.PID)
		}
	}
	if len(recorded) != 8 {
		t.Fatalf("recorded processes: %+v", st.Clusters)
	}

	// Up again: says so, changes nothing.
	code, out, errOut = horizonLab(t, state, "up")
	if code != 0 || !strings.Contains(out, "already up") {
		t.Errorf("second lab up: exit %d\n%s%s", code, out, errOut)
	}

	code, out, _ = horizonLab(t, state, "env")
	if want := "export KUBECONFIG=" + filepath.Join(state, "kubeconfig") + " CTX_LOCAL=cluster1 CTX_REMOTE=cluster2\n"; code != 0 || out != want {
		t.Errorf("lab env: exit %d %q, want %q", code, out, want)
	}

	// Both contexts of the one kubeconfig answer, as different clusters.
	clients := map[string]kubernetes.Interface{}
	for i, name := range []string{"cluster1", "cluster2"} {
		cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: filepath.Join(state, "kubeconfig")},
			&clientcmd.ConfigOverrides{CurrentContext: name}).ClientConfig()
		if err != nil {
			t.Fatal(err)
		}
		cs := kubernetes.NewForConfigOrDie(cfg)
		clients[name] = cs
		v, err := cs.Discovery().ServerVersion()
		if err != nil || v.GitVersion != kubeharness.KubernetesVersion {
			t.Fatalf("%s: version %v, %v", name, v, err)
		}
		svc, err := cs.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if want := []string{"10.96.0.1", "10.97.0.1"}[i]; err != nil || svc.Spec.ClusterIP != want {
			t.Errorf("%s: kubernetes Service %v, %v, want %s", name, svc.Spec.ClusterIP, err, want)
		}
		// The controller manager's root CA publisher and the TokenRequest
		// API.
		if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, "default",
			&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"istio-ca"}}}, metav1.CreateOptions{}); err != nil {
			t.Errorf("%s: TokenRequest: %v", name, err)
		}
	}
	c1 := clients["cluster1"]

	// A Node, Ready, with a heartbeat while the test runs (the node
	// lifecycle controller would taint a silent one).
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "lab-node-1", Labels: map[string]string{
		"topology.kubernetes.io/region": "region1", "topology.kubernetes.io/zone": "zone1"}}}
	node, err = c1.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	resources := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods: resource.MustParse("110")}
	heartbeat := func() error {
		n, err := c1.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		n.Status.Capacity, n.Status.Allocatable = resources, resources
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			LastHeartbeatTime: now, LastTransitionTime: now}}
		_, err = c1.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	}
	if err := heartbeat(); err != nil {
		t.Fatal(err)
	}
	stopBeat := make(chan struct{})
	beatDone := make(chan struct{})
	go func() {
		defer close(beatDone)
		for {
			select {
			case <-stopBeat:
				return
			case <-time.After(5 * time.Second):
				_ = heartbeat()
			}
		}
	}()
	defer func() { close(stopBeat); <-beatDone }()

	// A new namespace gets its default ServiceAccount from the controller
	// manager.
	ns := "lab-e2e"
	if _, err := c1.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the default ServiceAccount in "+ns, func() bool {
		_, err := c1.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	})

	labels := map[string]string{"app": "hello"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: ns}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "hello", Image: "registry.k8s.io/pause:3.10"}}}}}}
	if _, err := c1.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pods []corev1.Pod
	waitFor(t, 60*time.Second, "a ReplicaSet and 2 Pods bound to "+node.Name, func() bool {
		rss, err := c1.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil || len(rss.Items) != 1 || len(rss.Items[0].OwnerReferences) == 0 || rss.Items[0].OwnerReferences[0].Name != "hello" {
			return false
		}
		list, err := c1.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil || len(list.Items) != 2 {
			return false
		}
		for _, p := range list.Items {
			if p.Spec.NodeName != node.Name || len(p.OwnerReferences) == 0 || p.OwnerReferences[0].Name != rss.Items[0].Name {
				return false
			}
		}
		pods = list.Items
		return true
	})
	for _, p := range pods {
		// ServiceAccount admission mounted the default ServiceAccount's
		// token as a projected volume.
		if p.Spec.ServiceAccountName != "default" || !slices.ContainsFunc(p.Spec.Volumes, func(v corev1.Volume) bool {
			return strings.HasPrefix(v.Name, "kube-api-access-") && v.Projected != nil
		}) {
			t.Errorf("pod %s: service account %q, volumes %+v", p.Name, p.Spec.ServiceAccountName, p.Spec.Volumes)
		}
	}

	code, out, errOut = horizonLab(t, state, "status")
	if code != 0 {
		t.Errorf("lab status: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"cluster1", "cluster2", "kube-controller-manager", "kube-scheduler", "/readyz ok", pods[0].Name, node.Name} {
		if !strings.Contains(out, want) {
			t.Errorf("lab status lacks %q:\n%s", want, out)
		}
	}

	// A crash: cluster2's API server dies. Status says so; up cleans the
	// rest and starts afresh.
	apiPID := st.Clusters[1].Processes[1].PID
	if st.Clusters[1].Name != "cluster2" || st.Clusters[1].Processes[1].Component != "kube-apiserver" {
		t.Fatalf("unexpected order in lab.json: %+v", st.Clusters)
	}
	if err := syscall.Kill(apiPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the killed API server to be gone", func() bool { return len(labProcesses(state, []int{apiPID})) == 7 })
	code, out, _ = horizonLab(t, state, "status")
	if code == 0 || !strings.Contains(out, "stopped") {
		t.Errorf("lab status with a dead API server: exit %d\n%s", code, out)
	}
	begin = time.Now()
	code, out, errOut = horizonLab(t, state, "up")
	if code != 0 || !strings.Contains(errOut, "leftover") {
		t.Fatalf("lab up after a crash: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("lab up after a crash in %s:\n%s", time.Since(begin).Round(100*time.Millisecond), errOut)
	if left := labProcesses(state, recorded); len(left) != 8 {
		t.Errorf("after the second up, %d processes of the state dir run: %v", len(left), left)
	}
	st, err = lab.LoadState(state)
	if err != nil || st == nil {
		t.Fatal(err)
	}
	for _, c := range st.Clusters {
		for _, p := range c.Processes {
			recorded = append(recorded, p.PID)
		}
	}
	if code, _, errOut := horizonLab(t, state, "status"); code != 0 {
		t.Errorf("lab status after recovery: exit %d\n%s", code, errOut)
	}

	begin = time.Now()
	code, out, errOut = horizonLab(t, state, "down")
	if code != 0 {
		t.Fatalf("lab down: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("lab down in %s: %s", time.Since(begin).Round(100*time.Millisecond), errOut)
	// Zombies (this process started them) are reaped in the background.
	deadline := time.Now().Add(5 * time.Second)
	for left := labProcesses(state, recorded); len(left) > 0; left = labProcesses(state, recorded) {
		if time.Now().After(deadline) {
			t.Fatalf("lab processes left after down:\n%s", strings.Join(left, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("the state dir is still there: %v", err)
	}
	if code, _, errOut := horizonLab(t, state, "down"); code != 0 || !strings.Contains(errOut, "not up") {
		t.Errorf("second lab down: exit %d %s", code, errOut)
	}
	if code, _, errOut := horizonLab(t, state, "status"); code == 0 || !strings.Contains(errOut, "not up") {
		t.Errorf("lab status when down: exit %d %s", code, errOut)
	}
}
