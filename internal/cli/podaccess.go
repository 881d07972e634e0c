package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// podAccess reaches HTTP servers inside a cluster's pods as `kubectl
// port-forward` does: through the API server to the pod's network
// namespace, where they may listen on 127.0.0.1 only (Envoy's admin,
// discovery's ops port), with nothing exposed.
type podAccess struct {
	cfg *rest.Config
	cs  kubernetes.Interface
}

func newPodAccess(c clusterFlags) (*podAccess, error) {
	cfg, err := c.restConfig()
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &podAccess{cfg: cfg, cs: cs}, nil
}

// maxHTTPBody bounds what one request through a port-forward may return
// (a large proxy's config_dump is tens of MiB).
const maxHTTPBody = 256 << 20

// resolvePod finds the pod ref names: POD[.NS] or deploy/NAME[.NS] (a
// running pod of that Deployment), NS defaulting to namespace.
func (a *podAccess) resolvePod(ctx context.Context, ref, namespace string) (*corev1.Pod, error) {
	kind, name := "", ref
	if k, n, ok := strings.Cut(ref, "/"); ok {
		kind, name = k, n
	}
	if n, ns, ok := strings.Cut(name, "."); ok {
		name, namespace = n, ns
	}
	if name == "" || namespace == "" {
		return nil, fmt.Errorf("%q: want POD[.NAMESPACE] or deploy/NAME[.NAMESPACE]", ref)
	}
	switch kind {
	case "":
		p, err := a.cs.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("pod %s/%s: %w", namespace, name, err)
		}
		return p, nil
	case "deploy", "deployment", "deployments":
		d, err := a.cs.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("deployment %s/%s: %w", namespace, name, err)
		}
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil {
			return nil, fmt.Errorf("deployment %s/%s: spec.selector: %w", namespace, name, err)
		}
		return a.runningPod(ctx, namespace, sel.String(), "deployment "+namespace+"/"+name)
	}
	return nil, fmt.Errorf("%q: %s is not a kind this command knows (want a pod name or deploy/NAME)", ref, kind)
}

// runningPod returns the first running pod (by name) matching selector.
func (a *podAccess) runningPod(ctx context.Context, namespace, selector, what string) (*corev1.Pod, error) {
	if _, err := labels.Parse(selector); err != nil {
		return nil, err
	}
	pods, err := a.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, fmt.Errorf("%s: listing its pods: %w", what, err)
	}
	var best *corev1.Pod
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && (best == nil || p.Name < best.Name) {
			best = p
		}
	}
	if best == nil {
		return nil, fmt.Errorf("%s: no running pod (%d pods match %s)", what, len(pods.Items), selector)
	}
	return best, nil
}

// forward opens a port-forward to port inside pod on a free local port of
// 127.0.0.1; stop closes it.
func (a *podAccess) forward(ctx context.Context, pod *corev1.Pod, port int) (local uint16, stop func(), err error) {
	transport, upgrader, err := spdy.RoundTripperFor(a.cfg)
	if err != nil {
		return 0, nil, err
	}
	u := a.cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	stopCh, ready := make(chan struct{}), make(chan struct{})
	var errOut bytes.Buffer
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)}, stopCh, ready, io.Discard, &errOut)
	if err != nil {
		return 0, nil, err
	}
	done := make(chan error, 1)
	go func() {
		done <- fw.ForwardPorts()
		close(done)
	}()
	stop = func() {
		close(stopCh)
		for range done { // ForwardPorts returns nil once stopped
		}
	}
	select {
	case <-ready:
	case err := <-done:
		return 0, nil, fmt.Errorf("port-forward to %s/%s:%d: %w %s", pod.Namespace, pod.Name, port, err, strings.TrimSpace(errOut.String()))
	case <-ctx.Done():
		stop()
		return 0, nil, ctx.Err()
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) != 1 {
		stop()
		return 0, nil, fmt.Errorf("port-forward to %s/%s:%d: no local port (%d ports): %w", pod.Namespace, pod.Name, port, len(ports), err)
	}
	return ports[0].Local, stop, nil
}

// get fetches http://127.0.0.1:PORT/PATH inside pod through a
// port-forward opened for this request; a status other than 200 is an
// error carrying the answer's first line.
func (a *podAccess) get(ctx context.Context, pod *corev1.Pod, port int, path string) ([]byte, error) {
	local, stop, err := a.forward(ctx, pod, port)
	if err != nil {
		return nil, err
	}
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", local, path), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s in %s/%s (port %d): %w", path, pod.Namespace, pod.Name, port, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s in %s/%s (port %d): %w", path, pod.Namespace, pod.Name, port, err)
	}
	if len(body) > maxHTTPBody {
		return nil, fmt.Errorf("GET %s in %s/%s: answer over %d MiB", path, pod.Namespace, pod.Name, maxHTTPBody>>20)
	}
	if resp.StatusCode != http.StatusOK {
		line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
		return body, fmt.Errorf("GET %s in %s/%s (port %d): %s: %s", path, pod.Namespace, pod.Name, port, resp.Status, line)
	}
	return body, nil
}
