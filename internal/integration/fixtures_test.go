//go:build integration

// Package integration runs `horizon-discovery discovery` against real kube-apiservers
// (internal/testing/kubeharness) and talks to it over real gRPC ADS.
package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/horizonmesh/horizon/internal/bootstrap"
	"github.com/horizonmesh/horizon/internal/controlplane"
	"github.com/horizonmesh/horizon/internal/testing/adsclient"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

const hw = "outbound|5000||helloworld.sample.svc.cluster.local"

var ctx = context.Background()

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func namespace(t testing.TB, c *kubeharness.Cluster, name string, labels map[string]string) {
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	must(t, err)
}

func service(t testing.TB, c *kubeharness.Cluster, ns, name string, port int32) {
	_, err := c.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: port}}, Selector: map[string]string{"app": name}}}, metav1.CreateOptions{})
	must(t, err)
}

// pod creates an mTLS-capable Pod and writes its IP through UpdateStatus, as
// a kubelet would (no kubelet runs here). It runs as the ServiceAccount
// named by its "app" label, as the samples' workloads do: discovery gives a
// proxy on its TLS port the inbound side of a workload only when the Pod
// runs as the proxy's proved identity.
func pod(t testing.TB, c *kubeharness.Cluster, ns, name, ip string, labels map[string]string) {
	l := map[string]string{"security.istio.io/tlsMode": "istio"}
	for k, v := range labels {
		l[k] = v
	}
	p, err := c.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: l},
		Spec: corev1.PodSpec{ServiceAccountName: labels["app"], Containers: []corev1.Container{{Name: "app", Image: "example/app"}}}}, metav1.CreateOptions{})
	must(t, err)
	if err != nil {
		return
	}
	p.Status.PodIP, p.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	_, err = c.Client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	must(t, err)
}

// createPod creates a Pod with exactly these labels, running as sa on
// node ("": none), and writes its IP through UpdateStatus, as a kubelet
// would.
func createPod(t testing.TB, c *kubeharness.Cluster, ns, name, ip, sa, node string, labels map[string]string) {
	t.Helper()
	p, err := c.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{ServiceAccountName: sa, NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "x"}}}}, metav1.CreateOptions{})
	must(t, err)
	p.Status.PodIP = ip
	_, err = c.Client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	must(t, err)
}

// slice writes the EndpointSlice of a Service (no controller-manager runs):
// one ready endpoint per pod name → IP, on port http 5000.
func slice(t testing.TB, c *kubeharness.Cluster, ns, svc string, pods map[string]string) {
	t.Helper()
	endpointSlice(t, c, ns, svc, []corev1.ServicePort{{Name: "http", Port: 5000}}, pods)
}

// endpointSlice creates or updates a Service's EndpointSlice (svc-1):
// one ready endpoint per pod name → IP, on every port (by the Service
// port's name and number).
func endpointSlice(t testing.TB, c *kubeharness.Cluster, ns, svc string, ports []corev1.ServicePort, pods map[string]string) {
	t.Helper()
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: svc + "-1", Namespace: ns, Labels: map[string]string{"kubernetes.io/service-name": svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, p := range ports {
		sl.Ports = append(sl.Ports, discoveryv1.EndpointPort{Name: ptr.To(p.Name), Port: ptr.To(p.Port)})
	}
	for name, ip := range pods {
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: name}})
	}
	api := c.Client.DiscoveryV1().EndpointSlices(ns)
	old, err := api.Get(ctx, sl.Name, metav1.GetOptions{})
	if err == nil {
		sl.ResourceVersion = old.ResourceVersion
		_, err = api.Update(ctx, sl, metav1.UpdateOptions{})
	} else {
		_, err = api.Create(ctx, sl, metav1.CreateOptions{})
	}
	must(t, err)
}

func meshNetworksConfigMap(t testing.TB, c *kubeharness.Cluster, meshNetworks string) {
	t.Helper()
	cms := c.Client.CoreV1().ConfigMaps("istio-system")
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"},
		Data: map[string]string{"meshNetworks": meshNetworks, "mesh": "defaultConfig: {}\n"}}
	old, err := cms.Get(ctx, "istio", metav1.GetOptions{})
	if err == nil {
		cm.ResourceVersion = old.ResourceVersion
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	} else {
		_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
	}
	must(t, err)
}

// remoteSecret joins cluster id through a labelled Secret holding a
// kubeconfig, as the walkthrough's `kubectl create secret ... --from-file`.
func remoteSecret(t testing.TB, local *kubeharness.Cluster, name, id string, kubeconfig []byte) {
	t.Helper()
	secrets := local.Client.CoreV1().Secrets("istio-system")
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "istio-system",
		Labels: map[string]string{"istio/multiCluster": "true"}}, Data: map[string][]byte{id: kubeconfig}}
	old, err := secrets.Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		s.ResourceVersion = old.ResourceVersion
		_, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
	} else {
		_, err = secrets.Create(ctx, s, metav1.CreateOptions{})
	}
	must(t, err)
}

// mesh is the walkthrough: cluster1 (network1) runs helloworld v1 and the
// control plane; cluster2 (network2) runs helloworld v2, reached through
// network2's gateway named in the meshNetworks ConfigMap.
type mesh struct {
	c1, c2 *kubeharness.Cluster
}

func startMesh(t *testing.T) *mesh {
	t.Helper()
	m := &mesh{c1: kubeharness.Start(t, kubeharness.Options{Name: "cluster1"}),
		c2: kubeharness.Start(t, kubeharness.Options{Name: "cluster2", ServiceCIDR: "10.97.0.0/16"})}
	for i, c := range []*kubeharness.Cluster{m.c1, m.c2} {
		namespace(t, c, "istio-system", map[string]string{"topology.istio.io/network": fmt.Sprintf("network%d", i+1)})
		namespace(t, c, "sample", nil)
		service(t, c, "sample", "helloworld", 5000)
	}
	pod(t, m.c1, "sample", "helloworld-v1", "10.1.0.5", map[string]string{"app": "helloworld", "version": "v1"})
	slice(t, m.c1, "sample", "helloworld", map[string]string{"helloworld-v1": "10.1.0.5"})
	pod(t, m.c2, "sample", "helloworld-v2", "10.2.0.5", map[string]string{"app": "helloworld", "version": "v2"})
	slice(t, m.c2, "sample", "helloworld", map[string]string{"helloworld-v2": "10.2.0.5"})
	meshNetworksConfigMap(t, m.c1, "networks:\n  network2:\n    endpoints:\n    - fromRegistry: cluster2\n    gateways:\n    - address: 198.51.100.2\n      port: 15443\n")
	if err := m.c2.CreateRemoteReader(ctx, "istio-system", "istio-multi"); err != nil {
		t.Fatal(err)
	}
	return m
}

func (m *mesh) joinCluster2(t *testing.T, secretName string) {
	t.Helper()
	kc, err := m.c2.KubeconfigFor(ctx, "istio-system", "istio-multi", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	remoteSecret(t, m.c1, secretName, "cluster2", kc)
}

// discoveryProc is `horizon-discovery discovery` running in-process against cluster1.
type discoveryProc struct {
	xds, http string
	cp        *controlplane.ControlPlane
	// stop ends this discovery (as SIGTERM would) and waits for it.
	stop func()
}

func startDiscovery(t *testing.T, local *kubeharness.Cluster, kubeconfig []byte, wait bool) *discoveryProc {
	return startDiscoveryWith(t, local, kubeconfig, wait, nil)
}

// startDiscoveryWith lets a test adjust the configuration (e.g. the TLS port).
func startDiscoveryWith(t *testing.T, local *kubeharness.Cluster, kubeconfig []byte, wait bool, edit func(*bootstrap.Config)) *discoveryProc {
	t.Helper()
	if kubeconfig == nil {
		var err error
		if kubeconfig, err = local.Kubeconfig(); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	xl, _ := net.Listen("tcp", "127.0.0.1:0")
	hl, _ := net.Listen("tcp", "127.0.0.1:0")
	d := &discoveryProc{xds: xl.Addr().String(), http: hl.Addr().String()}
	cfg := bootstrap.DefaultConfig()
	cfg.Kubeconfig, cfg.ClusterID = path, "cluster1"
	cfg.XDSAddr, cfg.HTTPAddr, cfg.SecureAddr = d.xds, d.http, ""
	cfg.Debounce, cfg.DebounceMax, cfg.RemoteSyncTimeout = 20*time.Millisecond, 200*time.Millisecond, 5*time.Second
	cfg.PollInterval = time.Second
	if edit != nil {
		edit(&cfg)
	}
	c, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	started := make(chan *controlplane.ControlPlane, 1)
	log := testkit.Logger()
	go func() {
		done <- bootstrap.Run(c, cfg, log, &bootstrap.Listeners{XDS: xl, HTTP: hl, Started: func(cp *controlplane.ControlPlane) { started <- cp }})
	}()
	var once sync.Once
	d.stop = func() { once.Do(func() { cancel(); <-done }) } //nolint:errcheck // stopped on purpose
	t.Cleanup(d.stop)
	select {
	case d.cp = <-started:
	case err := <-done:
		t.Fatalf("discovery: %v", err)
	}
	if wait {
		waitFor(t, 30*time.Second, "discovery ready", d.cp.Ready)
	}
	return d
}

// waitFor is testkit.Eventually (the integration tests name their own,
// longer, timeouts).
func waitFor(t testing.TB, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	testkit.Eventually(t, timeout, what, ok)
}

func (d *discoveryProc) get(t testing.TB, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + d.http + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func proxy(t testing.TB, d *discoveryProc, id, network string) *adsclient.Client {
	t.Helper()
	c, err := adsclient.Dial(d.xds, adsclient.Node(id, network, "cluster1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	_ = c.Request(resource.ClusterType, nil, "", "", "")
	_ = c.Request(resource.EndpointType, []string{hw}, "", "", "")
	return c
}

func weightsOf(r *discovery.DiscoveryResponse) map[string]uint32 {
	clas, err := adsclient.LoadAssignments(r)
	if err != nil || clas[hw] == nil {
		return nil
	}
	return adsclient.Weights(clas[hw])
}

// waitEDS waits until the latest helloworld EDS equals want.
func waitEDS(t testing.TB, c *adsclient.Client, want map[string]uint32) {
	t.Helper()
	_, err := c.Wait(resource.EndpointType, 30*time.Second, func(r *discovery.DiscoveryResponse) bool {
		return fmt.Sprint(weightsOf(r)) == fmt.Sprint(want)
	})
	if err != nil {
		var last map[string]uint32
		if rs := c.Responses(); len(rs) > 0 {
			last = weightsOf(rs[len(rs)-1])
		}
		t.Fatalf("%s: want %v, last %v: %v", c.Node.Id, want, last, err)
	}
}

func createSA(c *kubeharness.Cluster, ns, name string) error {
	_, err := c.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	return err
}

func bindClusterAdmin(c *kubeharness.Cluster, ns, sa string) error {
	_, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "horizon-" + sa},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}}}, metav1.CreateOptions{})
	return err
}

// moduleFile finds a file of a dependency in the module cache.
func moduleFile(t testing.TB, module, file string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", module, err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), file)
}

// installCACerts creates the plug-in CA Secret (the walkthrough's cacerts)
// in the cluster's istio-system namespace.
func installCACerts(t testing.TB, c *kubeharness.Cluster, files map[string][]byte) {
	t.Helper()
	_, err := c.Client.CoreV1().Secrets("istio-system").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: bootstrap.CASecretName, Namespace: "istio-system"}, Data: files}, metav1.CreateOptions{})
	must(t, err)
}
