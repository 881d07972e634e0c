//go:build integration

package integration

import (
	"bytes"
	"fmt"
	"os"
	osexec "os/exec"
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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/horizonmesh/horizon/internal/cli"
	"github.com/horizonmesh/horizon/internal/lab"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
	"github.com/horizonmesh/horizon/internal/testing/netlab"
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
		if (bytes.Contains(b, []byte(state+"/")) || bytes.Contains(b, []byte("\x00"+state+"\x00"))) && alive(pid) {
			out = append(out, e.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

// `horizon lab up` starts two real control planes whose controller manager
// and scheduler do their work (Deployments become Pods on each cluster's
// lab node, Running and Ready on the cluster's network; every namespace
// gets its default ServiceAccount); `kubectl exec` reaches a Pod's container
// (as its user, with Service names in /etc/hosts) and `kubectl logs` its
// output, that of the run before with --previous: sleep reaches helloworld
// by Pod IP and by name, not cluster2's Pod IPs, and cluster2's
// LoadBalancer Service at its 203.0.113.x address; up is a no-op when up,
// recovers from a crashed component, and `lab down` leaves no process,
// namespace, interface or iptables rule behind.
func TestLab(t *testing.T) {
	bin := kubeharness.Binaries(t) // skips (or fails under CI) without the binaries
	if err := lab.CheckBinaries(bin); err != nil {
		if kubeharness.Required() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	netlab.Require(t)
	bin2 := buildBinaries(t)
	state := filepath.Join(t.TempDir(), "lab")
	var recorded []int
	t.Cleanup(func() {
		if left := labProcesses(state, recorded); len(left) > 0 {
			horizonLab(t, state, "down")
		}
	})

	begin := time.Now()
	code, out, errOut := horizonLab(t, state, "up", "--horizon", filepath.Join(bin2, "horizon"), "--helloworld", filepath.Join(bin2, "helloworld"))
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
	if len(recorded) != 10 {
		t.Fatalf("recorded processes: %+v", st.Clusters)
	}

	// Up again: says so, changes nothing.
	code, out, errOut = horizonLab(t, state, "up")
	if code != 0 || !strings.Contains(out, "already up") {
		t.Errorf("second lab up: exit %d\n%s%s", code, out, errOut)
	}

	code, out, _ = horizonLab(t, state, "env")
	if want := "export KUBECONFIG=" + filepath.Join(state, "kubeconfig") + " CTX_LOCAL=cluster1 CTX_REMOTE=cluster2 PATH=" + bin + `:"$PATH"` + "\n"; code != 0 || out != want {
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
	c1, c2 := clients["cluster1"], clients["cluster2"]

	// Each cluster has its lab node, Ready, with its locality.
	for name, cs := range clients {
		n, err := cs.CoreV1().Nodes().Get(ctx, name+"-node", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		region := map[string]string{"cluster1": "region1", "cluster2": "region2"}[name]
		if n.Labels["topology.kubernetes.io/region"] != region || n.Labels["topology.kubernetes.io/zone"] == "" || !nodeIsReady(n) {
			t.Errorf("%s: node %s: labels %v, conditions %+v", name, n.Name, n.Labels, n.Status.Conditions)
		}
	}

	// A new namespace gets its default ServiceAccount from the controller
	// manager.
	ns := "lab-e2e"
	for _, cs := range []kubernetes.Interface{c1, c2} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "the default ServiceAccount in "+ns, func() bool {
			_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
			return err == nil
		})
	}

	// helloworld v1 (2 replicas) and sleep (as uid 1234) in cluster1,
	// helloworld v2 behind a LoadBalancer Service in cluster2.
	deploy := func(cs kubernetes.Interface, name, image string, replicas int32, uid *int64, cmd []string) {
		t.Helper()
		labels := map[string]string{"app": name}
		c := corev1.Container{Name: name, Image: image, Command: cmd}
		if name != "sleep" {
			c.Ports = []corev1.ContainerPort{{ContainerPort: 5000}}
			c.ReadinessProbe = &corev1.Probe{PeriodSeconds: 1, ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(5000)}}}
		}
		c.SecurityContext = &corev1.SecurityContext{RunAsUser: uid}
		dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: ptr.To[int64](1), Containers: []corev1.Container{c}}}}}
		if _, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	service := func(cs kubernetes.Interface, name string, typ corev1.ServiceType, port int32) {
		t.Helper()
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: corev1.ServiceSpec{
			Type: typ, Selector: map[string]string{"app": "helloworld"},
			Ports: []corev1.ServicePort{{Name: "http", Port: port, TargetPort: intstr.FromInt32(5000)}}}}
		if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	deploy(c1, "helloworld", "istio/examples-helloworld-v1", 2, nil, nil)
	deploy(c1, "sleep", "curlimages/curl", 1, ptr.To[int64](1234), []string{"/bin/sleep", "infinity"})
	service(c1, "helloworld", corev1.ServiceTypeClusterIP, 5000)
	deploy(c2, "helloworld", "istio/examples-helloworld-v2", 1, nil, nil)
	service(c2, "helloworld-lb", corev1.ServiceTypeLoadBalancer, 80)
	readyPods := func(cs kubernetes.Interface, app string, n int, cidr string) []corev1.Pod {
		t.Helper()
		var pods []corev1.Pod
		waitFor(t, 60*time.Second, fmt.Sprintf("%d Running, Ready %s pods on %s", n, app, cidr), func() bool {
			list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
			if err != nil || len(list.Items) != n {
				return false
			}
			for _, p := range list.Items {
				if p.Status.Phase != corev1.PodRunning || !podIsReady(&p) || !strings.HasPrefix(p.Status.PodIP, cidr) || !strings.HasSuffix(p.Spec.NodeName, "-node") {
					return false
				}
			}
			pods = list.Items
			return true
		})
		return pods
	}
	hw1 := readyPods(c1, "helloworld", 2, "10.51.0.")
	sleep := readyPods(c1, "sleep", 1, "10.51.0.")
	hw2 := readyPods(c2, "helloworld", 1, "10.52.0.")
	for _, p := range hw1 {
		// ServiceAccount admission mounted the default ServiceAccount's
		// token as a projected volume.
		if p.Spec.ServiceAccountName != "default" || !slices.ContainsFunc(p.Spec.Volumes, func(v corev1.Volume) bool {
			return strings.HasPrefix(v.Name, "kube-api-access-") && v.Projected != nil
		}) {
			t.Errorf("pod %s: service account %q, volumes %+v", p.Name, p.Spec.ServiceAccountName, p.Spec.Volumes)
		}
	}

	// kubectl exec, served by the lab node's kubelet API: in sleep's
	// network namespace, as its user, with its /etc/hosts.
	k := newLabKubectl(bin, state)
	exec := func(args ...string) (int, string) {
		t.Helper()
		out, code := k.run(append([]string{"exec"}, args...)...)
		return code, out
	}
	if code, out := exec("-n", ns, sleep[0].Name, "--", "id", "-u"); code != 0 || strings.TrimSpace(out) != "1234" {
		t.Errorf("kubectl exec id -u: exit %d %q", code, out)
	}
	curl := func(from, url string) (int, string) {
		t.Helper()
		return exec("-n", ns, from, "--", "curl", "-sS", "-m", "3", url)
	}
	for _, p := range hw1 {
		if code, out := curl("deploy/sleep", "http://"+p.Status.PodIP+":5000/hello"); code != 0 || !strings.Contains(out, "Hello version: v1, instance: "+p.Name) {
			t.Errorf("sleep → helloworld pod %s: exit %d %q", p.Status.PodIP, code, out)
		}
	}
	// A Service name resolves to its ClusterIP, which the router DNATs to a
	// ready pod.
	if code, out := curl("deploy/sleep", "http://helloworld."+ns+":5000/hello"); code != 0 || !strings.Contains(out, "Hello version: v1") {
		t.Errorf("sleep → helloworld.%s:5000: exit %d %q", ns, code, out)
	}
	// No route to network2's pods.
	if code, out := curl("deploy/sleep", "http://"+hw2[0].Status.PodIP+":5000/hello"); code == 0 {
		t.Errorf("cluster1's sleep reached cluster2's pod %s directly: %q", hw2[0].Status.PodIP, out)
	}
	// cluster2's LoadBalancer Service gets an address of its slice of
	// 203.0.113.0/24, reachable from cluster1's pods.
	var lbIP string
	waitFor(t, 30*time.Second, "a load-balancer address", func() bool {
		svc, err := c2.CoreV1().Services(ns).Get(ctx, "helloworld-lb", metav1.GetOptions{})
		if err != nil || len(svc.Status.LoadBalancer.Ingress) != 1 {
			return false
		}
		lbIP = svc.Status.LoadBalancer.Ingress[0].IP
		return true
	})
	if lbIP != "203.0.113.20" {
		t.Errorf("load-balancer address %s, want 203.0.113.20 (cluster2's first)", lbIP)
	}
	waitFor(t, 20*time.Second, "sleep → the load balancer → helloworld v2", func() bool {
		code, out := curl("deploy/sleep", "http://"+lbIP+"/hello")
		return code == 0 && strings.Contains(out, "Hello version: v2, instance: "+hw2[0].Name)
	})
	// A pod reaches itself through its own Service (the router's hairpin).
	if code, out := exec("--context", "cluster2", "-n", ns, hw2[0].Name, "--", "curl", "-sS", "-m", "3", "http://"+lbIP+"/hello"); code != 0 || !strings.Contains(out, "v2") {
		t.Errorf("helloworld v2 → its own load balancer: exit %d %q", code, out)
	}
	// The API servers, where real ones would be: the kubernetes Service
	// (KUBERNETES_SERVICE_HOST, the name) with the pod's service-account
	// CA and token (authenticated as the pod's ServiceAccount, which may
	// not list pods), and cluster2's at its router's public address.
	sa := "/var/run/secrets/kubernetes.io/serviceaccount"
	if code, out := exec("-n", ns, "deploy/sleep", "--", "sh", "-c",
		`curl -sS -m 3 --cacert `+sa+`/ca.crt -H "Authorization: Bearer $(cat `+sa+`/token)" https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/`+ns+`/pods`+
			` && curl -sS -m 3 -f --cacert `+sa+`/ca.crt https://kubernetes.default.svc.cluster.local/version`); code != 0 ||
		!strings.Contains(out, `"system:serviceaccount:`+ns+`:default\" cannot list resource \"pods\"`) || !strings.Contains(out, `"gitVersion"`) {
		t.Errorf("sleep → the kubernetes Service: exit %d %q", code, out)
	}
	if code, out := exec("-n", ns, "deploy/sleep", "--", "curl", "-sS", "-m", "3", "-k", "https://203.0.113.2/version"); code != 0 || !strings.Contains(out, `"gitVersion"`) {
		t.Errorf("sleep → cluster2's API server at 203.0.113.2: exit %d %q", code, out)
	}
	if code, out := exec("-n", ns, sleep[0].Name, "--", "false"); code != 1 || !strings.Contains(out, "command terminated with exit code 1") {
		t.Errorf("kubectl exec false: exit %d %q", code, out)
	}
	if out, code := k.run("logs", "-n", ns, "deploy/sleep"); code != 0 || out != "" {
		t.Errorf("kubectl logs deploy/sleep: exit %d %q", code, out)
	}
	if out, code := k.run("logs", "-n", ns, "deploy/sleep", "-c", "nope"); code == 0 || !strings.Contains(out, "container nope is not valid for pod") {
		t.Errorf("kubectl logs -c nope: exit %d %s", code, out)
	}
	// A container that exits is restarted: logs shows its last run (what
	// it wrote to stderr too), --previous the one before.
	k.ok(t, "run", "crash", "-n", ns, "--image=horizon/proxy", "--command", "--", "horizon-agent", "version", "--bogus")
	waitFor(t, time.Minute, "the crashing container to have restarted", func() bool {
		n, _ := strconv.Atoi(k.ok(t, "get", "pod", "crash", "-n", ns, "-o", "jsonpath={.status.containerStatuses[0].restartCount}"))
		return n >= 1
	})
	for _, prev := range []string{"--previous=false", "--previous"} {
		if out, code := k.run("logs", "-n", ns, "crash", prev); code != 0 || !strings.Contains(out, "Error: unknown flag: --bogus") {
			t.Errorf("kubectl logs crash %s: exit %d %q", prev, code, out)
		}
	}
	pods := hw1
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "cluster1-node"}}
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
	waitFor(t, 10*time.Second, "the killed API server to be gone", func() bool {
		return !slices.Contains(labProcesses(state, []int{apiPID}), "recorded pid "+strconv.Itoa(apiPID))
	})
	code, out, _ = horizonLab(t, state, "status")
	if code == 0 || !strings.Contains(out, "stopped") {
		t.Errorf("lab status with a dead API server: exit %d\n%s", code, out)
	}
	begin = time.Now()
	code, out, errOut = horizonLab(t, state, "up", "--horizon", filepath.Join(bin2, "horizon"), "--helloworld", filepath.Join(bin2, "helloworld"))
	if code != 0 || !strings.Contains(errOut, "leftover") {
		t.Fatalf("lab up after a crash: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("lab up after a crash in %s:\n%s", time.Since(begin).Round(100*time.Millisecond), errOut)
	if left := labProcesses(state, recorded); len(left) != 10 {
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
	assertNoLabLeftovers(t, state)
	if code, _, errOut := horizonLab(t, state, "down"); code != 0 || !strings.Contains(errOut, "not up") {
		t.Errorf("second lab down: exit %d %s", code, errOut)
	}
	if code, _, errOut := horizonLab(t, state, "status"); code == 0 || !strings.Contains(errOut, "not up") {
		t.Errorf("lab status when down: exit %d %s", code, errOut)
	}
}

// assertNoLabLeftovers checks what `lab down` must leave: no state dir, and
// no network namespace, interface, iptables rule or mount of the lab.
func assertNoLabLeftovers(t *testing.T, state string) {
	t.Helper()
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("the state dir is still there: %v", err)
	}
	for _, cmd := range [][]string{{"ip", "netns", "list"}, {"ip", "-o", "link"}, {"iptables-save"}, {"iptables-save", "-t", "nat"}} {
		out, err := osexec.Command(cmd[0], cmd[1:]...).CombinedOutput()
		if err != nil {
			t.Errorf("%v: %v\n%s", cmd, err, out)
		}
		if strings.Contains(strings.ToLower(string(out)), lab.NetPrefix) {
			t.Errorf("%v shows the lab's leftovers after down:\n%s", cmd, out)
		}
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(mounts), "\n") {
		if strings.Contains(l, state) || strings.Contains(l, "/run/netns/"+lab.NetPrefix) {
			t.Errorf("a mount of the lab is left after down: %s", l)
		}
	}
}

func nodeIsReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podIsReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
