//go:build integration

package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/horizonmesh/horizon/internal/labnode"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
	"github.com/horizonmesh/horizon/internal/testing/netlab"
)

// TestLabNode: the kubelet stand-in registers a Node with its region and
// zone and a Lease; runs a helloworld Pod (no scheduler here: nodeName set
// by the test) in its own network namespace on a netlab bridge, with
// downward-API env, a ConfigMap key, a projected service-account token
// (TokenRequest, the requested audience) and a downwardAPI volume mounted
// where the host has no such directory; readiness probes (httpGet, exec as
// a non-root user) make it Ready; curl from another pod's namespace gets
// the answer; a container that exits is restarted; an unknown image waits
// in ErrImagePull and an unsupported field is named in the status; deleting
// the Pods leaves no process, namespace, interface or file.
func TestLabNode(t *testing.T) {
	netlab.Require(t)
	begin := time.Now()
	bin, err := os.MkdirTemp("", "hz-labnode-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(bin) })
	must(t, os.Chmod(bin, 0o755))
	hw := filepath.Join(bin, "helloworld")
	if out, err := exec.Command("go", "build", "-o", hw, "../../cmd/helloworld").CombinedOutput(); err != nil {
		t.Fatalf("build helloworld: %v\n%s", err, out)
	}
	c := kubeharness.Start(t, kubeharness.Options{Name: "labnode"})
	netlab.New(t, "hzln", "10.77.0.1/24") // bridge br0 in namespace hzln-br
	state := t.TempDir()
	node, err := labnode.New(labnode.Config{
		NodeName: "lab-node-1", Region: "region1", Zone: "zone1", Labels: map[string]string{"topology.istio.io/network": "network1"},
		RestConfig:  c.AdminConfig,
		Programs:    labnode.Programs{Helloworld: hw},
		NetnsPrefix: "hzln", BridgeNS: "hzln-br", Bridge: "br0", PodCIDR: "10.77.0.0/24", Gateway: "10.77.0.1",
		StateDir: state, Logf: t.Logf, RestartBackoff: 500 * time.Millisecond,
	})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- node.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node.Run: %v", err)
		}
	})
	select {
	case <-node.Ready():
	case err := <-done:
		t.Fatalf("node.Run ended: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the lab node did not get ready")
	}
	cs := c.Client
	bg := context.Background()

	// The Node: labels, Ready, Lease.
	n, err := cs.CoreV1().Nodes().Get(bg, "lab-node-1", metav1.GetOptions{})
	must(t, err)
	for k, v := range map[string]string{corev1.LabelTopologyRegion: "region1", corev1.LabelTopologyZone: "zone1", "topology.istio.io/network": "network1"} {
		if n.Labels[k] != v {
			t.Errorf("node label %s = %q, want %q", k, n.Labels[k], v)
		}
	}
	if !nodeIsReady(n) {
		t.Errorf("node not Ready: %+v", n.Status.Conditions)
	}
	waitFor(t, 30*time.Second, "the node's Lease", func() bool {
		_, err := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(bg, "lab-node-1", metav1.GetOptions{})
		return err == nil
	})
	t.Logf("node ready and leased after %s", time.Since(begin).Round(time.Millisecond))

	namespace(t, c, "sample", nil)
	must(t, createSA(c, "sample", "helloworld"))
	_, err = cs.CoreV1().ConfigMaps("sample").Create(bg, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "hw-config"},
		Data: map[string]string{"greeting": "hello"}}, metav1.CreateOptions{})
	must(t, err)

	grace := int64(5)
	ttl := int64(3600)
	uid := int64(1000)
	hwPod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "helloworld-v1", Namespace: "sample", Labels: map[string]string{"app": "helloworld", "version": "v1"}},
		Spec: corev1.PodSpec{
			NodeName: "lab-node-1", ServiceAccountName: "helloworld", TerminationGracePeriodSeconds: &grace,
			Volumes: []corev1.Volume{
				{Name: "token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: "istio-ca", ExpirationSeconds: &ttl, Path: "istio-token"}},
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "hw-config"}}},
				}}}},
				{Name: "podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
					{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
					{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
				}}}},
				{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
			Containers: []corev1.Container{
				{Name: "helloworld", Image: "docker.io/istio/examples-helloworld-v1",
					Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 5000}},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/hello", Port: intstr.FromString("http")}}, PeriodSeconds: 1}},
				// Checks what a container sees, as a non-root user: env,
				// the token and the files at their mountPaths.
				{Name: "check", Image: "curlimages/curl", Command: []string{"/bin/sleep", "infinity"},
					SecurityContext: &corev1.SecurityContext{RunAsUser: &uid},
					Env: []corev1.EnvVar{
						{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
						{Name: "INSTANCE_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
						{Name: "SA", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.serviceAccountName"}}},
						{Name: "GREETING", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
							LocalObjectReference: corev1.LocalObjectReference{Name: "hw-config"}, Key: "greeting"}}},
						{Name: "MSG", Value: "$(GREETING) from $(POD_NAME)"},
					},
					VolumeMounts: []corev1.VolumeMount{
						{Name: "token", MountPath: "/var/run/secrets/tokens", ReadOnly: true},
						{Name: "podinfo", MountPath: "/etc/podinfo", ReadOnly: true},
						{Name: "work", MountPath: "/var/run/labwork"},
					},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c",
						`test -s /var/run/secrets/tokens/istio-token && test "$(cat /var/run/secrets/tokens/greeting)" = hello && ` +
							`test "$(cat /etc/podinfo/name)" = "$POD_NAME" && grep -q 'version="v1"' /etc/podinfo/labels && ` +
							`test "$MSG" = "hello from helloworld-v1" && test "$SA" = helloworld && test "$(id -u)" = 1000 && ` +
							`test "$(hostname)" = helloworld-v1 && ip -4 addr show eth0 | grep -q "inet $INSTANCE_IP/24" && ` +
							`touch /var/run/labwork/ok && ! touch /etc/podinfo/x 2>/dev/null`}}},
						PeriodSeconds: 1, TimeoutSeconds: 5}},
			},
		},
	}
	sleepPod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "sleep", Namespace: "sample"},
		Spec: corev1.PodSpec{NodeName: "lab-node-1", TerminationGracePeriodSeconds: &grace,
			// Init containers run in order, each to completion, first.
			InitContainers: []corev1.Container{
				{Name: "init1", Image: "governmentpaas/curl-ssl", Command: []string{"/bin/sleep"}, Args: []string{"0.3"}},
				{Name: "init2", Image: "example.com/tools/sleep", Command: []string{"sleep", "0.1"}},
			},
			Containers: []corev1.Container{{Name: "sleep", Image: "curlimages/curl", Command: []string{"/bin/sleep", "infinity"}}}}}
	crashPod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "crasher", Namespace: "sample"},
		Spec: corev1.PodSpec{NodeName: "lab-node-1", TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{Name: "c", Image: "example.com/tools/sleep", Command: []string{"sleep", "1"}}}}}
	unknownPod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "nginx", Namespace: "sample"},
		Spec: corev1.PodSpec{NodeName: "lab-node-1", Containers: []corev1.Container{{Name: "nginx", Image: "nginx:1.27"}}}}
	hostNetPod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "hostnet", Namespace: "sample"},
		Spec: corev1.PodSpec{NodeName: "lab-node-1", HostNetwork: true, Containers: []corev1.Container{{Name: "s", Image: "curlimages/curl"}}}}
	for _, p := range []*corev1.Pod{hwPod, sleepPod, crashPod, unknownPod, hostNetPod} {
		_, err := cs.CoreV1().Pods("sample").Create(bg, p, metav1.CreateOptions{})
		must(t, err)
	}
	get := func(name string) *corev1.Pod {
		p, err := cs.CoreV1().Pods("sample").Get(bg, name, metav1.GetOptions{})
		if err != nil {
			return &corev1.Pod{}
		}
		return p
	}
	created := time.Now()
	waitForPod(t, 90*time.Second, "helloworld-v1 Running and Ready", func() *corev1.Pod { return get("helloworld-v1") }, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning && podIsReady(p) && p.Status.PodIP != ""
	})
	t.Logf("helloworld-v1 Ready %s after its creation", time.Since(created).Round(time.Millisecond))
	waitForPod(t, 60*time.Second, "sleep Ready", func() *corev1.Pod { return get("sleep") }, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning && podIsReady(p)
	})
	sp := get("sleep")
	if is := sp.Status.InitContainerStatuses; len(is) != 2 || is[0].State.Terminated == nil || is[1].State.Terminated == nil ||
		is[0].State.Terminated.ExitCode != 0 || is[1].State.Terminated.StartedAt.Before(&is[0].State.Terminated.FinishedAt) ||
		sp.Status.ContainerStatuses[0].State.Running.StartedAt.Before(&is[1].State.Terminated.FinishedAt) {
		t.Errorf("init containers: %+v, containers %+v", is, sp.Status.ContainerStatuses)
	}
	hp := get("helloworld-v1")
	if !regexp.MustCompile(`^10\.77\.0\.\d+$`).MatchString(hp.Status.PodIP) || hp.Status.PodIP == "10.77.0.1" || hp.Status.HostIP != "10.77.0.1" {
		t.Errorf("podIP %q hostIP %q", hp.Status.PodIP, hp.Status.HostIP)
	}
	for _, s := range hp.Status.ContainerStatuses {
		if !s.Ready || s.State.Running == nil || s.RestartCount != 0 {
			t.Errorf("container status %+v", s)
		}
	}

	// The token was asked for with the requested audience.
	tok, err := os.ReadFile(filepath.Join(state, "pods", "sample_helloworld-v1_"+string(hp.UID), "volumes", "token", "istio-token"))
	must(t, err)
	tr, err := cs.AuthenticationV1().TokenReviews().Create(bg, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{
		Token: string(tok), Audiences: []string{"istio-ca"}}}, metav1.CreateOptions{})
	must(t, err)
	if !tr.Status.Authenticated || tr.Status.User.Username != "system:serviceaccount:sample:helloworld" {
		t.Errorf("token review: %+v", tr.Status)
	}

	// curl from the sleep pod's network namespace.
	sleepNS, ok := node.PodNetns("sample", "sleep")
	if !ok {
		t.Fatal("no namespace for sleep")
	}
	out, err := exec.Command("ip", "netns", "exec", sleepNS, "curl", "-sS", "--max-time", "5", "http://"+hp.Status.PodIP+":5000/hello").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "Hello version: v1, instance: helloworld-v1" {
		t.Errorf("curl from sleep: %v: %q", err, out)
	}

	// Restarts, unknown images, unsupported fields.
	waitForPod(t, 60*time.Second, "crasher restarted", func() *corev1.Pod { return get("crasher") }, func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 1
	})
	waitForPod(t, 30*time.Second, "nginx in ErrImagePull", func() *corev1.Pod { return get("nginx") }, func(p *corev1.Pod) bool {
		s := p.Status.ContainerStatuses
		return len(s) == 1 && s[0].State.Waiting != nil && s[0].State.Waiting.Reason == "ErrImagePull" &&
			strings.Contains(s[0].State.Waiting.Message, "no program for this image") && p.Status.Phase == corev1.PodPending
	})
	waitForPod(t, 30*time.Second, "hostnet refused by field", func() *corev1.Pod { return get("hostnet") }, func(p *corev1.Pod) bool {
		return p.Status.Reason == "UnsupportedPodSpec" && strings.Contains(p.Status.Message, "spec.hostNetwork: Forbidden")
	})

	// Deletion: graceful, then nothing left.
	for _, name := range []string{"helloworld-v1", "sleep", "crasher", "nginx", "hostnet"} {
		must(t, cs.CoreV1().Pods("sample").Delete(bg, name, metav1.DeleteOptions{}))
	}
	deleted := time.Now()
	waitFor(t, 60*time.Second, "pods gone from the API", func() bool {
		l, err := cs.CoreV1().Pods("sample").List(bg, metav1.ListOptions{})
		return err == nil && len(l.Items) == 0
	})
	t.Logf("pods deleted in %s", time.Since(deleted).Round(time.Millisecond))
	waitFor(t, 30*time.Second, "pod namespaces, processes and files gone", func() bool {
		return len(podLeftovers(t, state, hw)) == 0
	})
	if l := podLeftovers(t, state, hw); len(l) > 0 {
		t.Errorf("leftovers: %q", l)
	}
	_, err = cs.CoreV1().Pods("sample").Get(bg, "helloworld-v1", metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("helloworld-v1 still there: %v", err)
	}
	t.Logf("total %s", time.Since(begin).Round(time.Millisecond))
}

func waitForPod(t *testing.T, timeout time.Duration, what string, get func() *corev1.Pod, ok func(*corev1.Pod) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p := get()
		if ok(p) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; pod status: %+v", timeout, what, p.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// podLeftovers lists what pods of the lab node left behind: namespaces
// hzln-p*, host-side veths in the bridge namespace, processes of the
// helloworld binary or with a pod's HOSTNAME, and pod directories.
func podLeftovers(t *testing.T, state, hw string) []string {
	var left []string
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "hzln-p") {
			left = append(left, "netns "+line)
		}
	}
	links, _ := exec.Command("ip", "-n", "hzln-br", "-o", "link").Output()
	for _, m := range regexp.MustCompile(`hzln[0-9a-f]{8}h`).FindAllString(string(links), -1) {
		left = append(left, "link "+m)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		if exe, _ := os.Readlink(p + "/exe"); exe == hw {
			left = append(left, "process "+p+" "+exe)
			continue
		}
		env, _ := os.ReadFile(p + "/environ")
		for _, name := range []string{"helloworld-v1", "sleep", "crasher"} {
			if bytes.Contains(env, []byte("\x00HOSTNAME="+name+"\x00")) && bytes.Contains(env, []byte("HOME=")) {
				left = append(left, "process "+p+" of pod "+name)
			}
		}
	}
	if ents, err := os.ReadDir(filepath.Join(state, "pods")); err == nil {
		for _, e := range ents {
			left = append(left, "dir "+e.Name())
		}
	}
	return left
}
