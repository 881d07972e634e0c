package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Target names a container of a lab Pod for Exec and Logs.
type Target struct {
	// Context is the cluster (cluster1 when "").
	Context   string
	Namespace string
	// Pod is a Pod's name or deploy/NAME (a Running Pod of the Deployment).
	Pod string
	// Container is the container (the default-container annotation's, else
	// the first, when "").
	Container string
}

// resolved is a target found: its pod, container and cluster.
type resolved struct {
	pod       *corev1.Pod
	container string
	spec      ClusterSpec
}

func (o Options) resolve(ctx context.Context, t Target) (*resolved, error) {
	if t.Context == "" {
		t.Context = Clusters[0].Name
	}
	if t.Namespace == "" {
		t.Namespace = metav1.NamespaceDefault
	}
	spec, err := ClusterByName(t.Context)
	if err != nil {
		return nil, err
	}
	clients, err := Clients(o.StateDir)
	if err != nil {
		return nil, fmt.Errorf("%w (is the lab up? `horizon lab up`)", err)
	}
	pod, err := findPod(ctx, clients[spec.Name], t.Namespace, t.Pod)
	if err != nil {
		return nil, err
	}
	name := t.Container
	var names []string
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	for _, c := range pod.Spec.InitContainers {
		names = append(names, c.Name)
	}
	if name == "" {
		name = pod.Annotations["kubectl.kubernetes.io/default-container"]
	}
	if name == "" {
		name = pod.Spec.Containers[0].Name
	}
	found := false
	for _, n := range names {
		found = found || n == name
	}
	if !found {
		return nil, fmt.Errorf("container %s is not valid for pod %s/%s: choose one of %v", name, pod.Namespace, pod.Name, names)
	}
	return &resolved{pod: pod, container: name, spec: spec}, nil
}

func findPod(ctx context.Context, c kubernetes.Interface, ns, name string) (*corev1.Pod, error) {
	kind, dep, ok := strings.Cut(name, "/")
	if !ok {
		return c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	}
	switch kind {
	case "deploy", "deployment", "deployments", "deployment.apps":
	default:
		return nil, fmt.Errorf("%s: only POD and deploy/NAME are supported", name)
	}
	d, err := c.AppsV1().Deployments(ns).Get(ctx, dep, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, err
	}
	pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, err
	}
	var running []corev1.Pod
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			running = append(running, p)
		}
	}
	if len(running) == 0 {
		return nil, fmt.Errorf("deployment %s/%s has no Running pod", ns, dep)
	}
	sort.Slice(running, func(i, j int) bool { return running[i].CreationTimestamp.Before(&running[j].CreationTimestamp) })
	return &running[0], nil
}

// ExecCommand returns the command that runs argv in target's container as
// `kubectl exec` would: in the container's network, mount and UTS
// namespaces (so its volumes and /etc/hosts), as its user and group, in its
// working directory, with its environment — entered through its running
// process (nsenter).
func ExecCommand(ctx context.Context, opts Options, t Target, argv []string) (path string, args, env []string, err error) {
	o, err := opts.normalized()
	if err != nil {
		return "", nil, nil, err
	}
	if len(argv) == 0 {
		return "", nil, nil, fmt.Errorf("no command given (horizon lab exec ... -- CMD ...)")
	}
	r, err := o.resolve(ctx, t)
	if err != nil {
		return "", nil, nil, err
	}
	var cs *corev1.ContainerStatus
	for i := range r.pod.Status.ContainerStatuses {
		if r.pod.Status.ContainerStatuses[i].Name == r.container {
			cs = &r.pod.Status.ContainerStatuses[i]
		}
	}
	if cs == nil || cs.State.Running == nil {
		return "", nil, nil, fmt.Errorf("container %s of pod %s/%s is not running", r.container, r.pod.Namespace, r.pod.Name)
	}
	pid, err := strconv.Atoi(strings.TrimPrefix(cs.ContainerID, "lab://"))
	if err != nil || !strings.HasPrefix(cs.ContainerID, "lab://") {
		return "", nil, nil, fmt.Errorf("container %s of pod %s/%s: container ID %q is not a lab node's", r.container, r.pod.Namespace, r.pod.Name, cs.ContainerID)
	}
	uid, gid, err := procIDs(pid)
	if err != nil {
		return "", nil, nil, fmt.Errorf("container %s of pod %s/%s (pid %d): %w", r.container, r.pod.Namespace, r.pod.Name, pid, err)
	}
	environ, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
	if err != nil {
		return "", nil, nil, err
	}
	for _, kv := range bytes.Split(environ, []byte{0}) {
		if len(kv) > 0 {
			env = append(env, string(kv))
		}
	}
	args = []string{"nsenter", "--target", strconv.Itoa(pid), "--net", "--mount", "--uts", "--wd"}
	if uid != "0" || gid != "0" {
		args = append(args, "--setgid", gid, "--setuid", uid)
	}
	args = append(append(args, "--"), argv...)
	return "nsenter", args, env, nil
}

// procIDs are a process's effective uid and gid.
func procIDs(pid int) (uid, gid string, err error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return "", "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "Uid:" {
			uid = f[2]
		}
		if len(f) >= 3 && f[0] == "Gid:" {
			gid = f[2]
		}
	}
	if uid == "" || gid == "" {
		return "", "", fmt.Errorf("no Uid/Gid in /proc/%d/status", pid)
	}
	return uid, gid, nil
}

// LogPath is the log file of target's container (what the lab node writes
// its output to).
func LogPath(ctx context.Context, opts Options, t Target) (string, error) {
	o, err := opts.normalized()
	if err != nil {
		return "", err
	}
	r, err := o.resolve(ctx, t)
	if err != nil {
		return "", err
	}
	if r.pod.Spec.NodeName != r.spec.NodeName() {
		return "", fmt.Errorf("pod %s/%s is not on the lab node %s (node %q)", r.pod.Namespace, r.pod.Name, r.spec.NodeName(), r.pod.Spec.NodeName)
	}
	dir := clusterDir(filepath.Join(o.StateDir, r.spec.Name))
	p := filepath.Join(dir.node(), "pods", r.pod.Namespace+"_"+r.pod.Name+"_"+string(r.pod.UID), "logs", r.container+".log")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("container %s of pod %s/%s has no log yet: %w", r.container, r.pod.Namespace, r.pod.Name, err)
	}
	return p, nil
}
