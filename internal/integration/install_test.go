//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"

	"github.com/horizonmesh/horizon/internal/cli"
	"github.com/horizonmesh/horizon/internal/install"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
)

// horizon runs the CLI in-process and returns its exit code and output.
func horizon(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := cli.Run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// managed lists every object labelled as the installer's, by kind.
func managed(t *testing.T, c *kubeharness.Cluster) []string {
	t.Helper()
	dyn, err := dynamic.NewForConfig(c.AdminConfig)
	must(t, err)
	var out []string
	for _, gvr := range []schema.GroupVersionResource{
		{Version: "v1", Resource: "serviceaccounts"}, {Version: "v1", Resource: "services"}, {Version: "v1", Resource: "configmaps"},
		{Group: "apps", Version: "v1", Resource: "deployments"}, {Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
		{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"},
		{Group: "networking.istio.io", Version: "v1", Resource: "gateways"},
	} {
		list, err := dyn.Resource(gvr).List(context.Background(), metav1.ListOptions{LabelSelector: install.ManagedByLabel + "=" + install.ManagedBy})
		if err != nil {
			if strings.Contains(err.Error(), "the server could not find the requested resource") {
				continue // the Gateway CRD is not there yet
			}
			t.Fatalf("list %s: %v", gvr.Resource, err)
		}
		for _, it := range list.Items {
			out = append(out, gvr.Resource+"/"+it.GetName())
		}
	}
	return out
}

// installCluster starts an API server named name and writes its admin
// kubeconfig into a temporary directory; it returns the cluster, that
// directory and the kubeconfig's path.
func installCluster(t *testing.T, name string) (c *kubeharness.Cluster, dir, kubeconfig string) {
	t.Helper()
	c = kubeharness.Start(t, kubeharness.Options{Name: name})
	dir = t.TempDir()
	kc, err := c.Kubeconfig()
	must(t, err)
	kubeconfig = filepath.Join(dir, "kubeconfig")
	must(t, os.WriteFile(kubeconfig, kc, 0o600))
	return c, dir, kubeconfig
}

// horizonOK runs the CLI in-process like horizon and fails t unless it
// exits 0; it returns the output.
func horizonOK(t *testing.T, args ...string) string {
	t.Helper()
	code, out, stderr := horizon(args...)
	if code != 0 {
		t.Fatalf("%s: exit %d\n%s\n%s", args[0], code, out, stderr)
	}
	return out
}

// installAgainChangesNothing runs the install args a second time: it must
// succeed and neither create nor configure anything.
func installAgainChangesNothing(t *testing.T, args []string) {
	t.Helper()
	code, out, stderr := horizon(args...)
	if code != 0 || !strings.Contains(out, "\n0 created, 0 configured,") {
		t.Fatalf("second install changed something: exit %d\n%s\n%s", code, out, stderr)
	}
}

// uninstallLeavesNothing runs uninstall against kubeconfig: it must
// succeed and leave no object labelled as the installer's in c.
func uninstallLeavesNothing(t *testing.T, c *kubeharness.Cluster, kubeconfig string) {
	t.Helper()
	horizonOK(t, "uninstall", "--kubeconfig", kubeconfig)
	if left := managed(t, c); len(left) != 0 {
		t.Fatalf("uninstall left %v", left)
	}
}

func TestInstallIdempotentAndUninstall(t *testing.T) {
	c, dir, kubeconfig := installCluster(t, "install")
	mn := filepath.Join(dir, "meshnetworks.yaml")
	must(t, os.WriteFile(mn, []byte("networks:\n  network1:\n    endpoints:\n    - fromRegistry: cluster1\n"), 0o644))

	// Bad input fails before anything is applied, naming the field.
	bad := filepath.Join(dir, "values.yaml")
	must(t, os.WriteFile(bad, []byte("clusterID: cluster1\nreplicass: 3\n"), 0o644))
	code, _, stderr := horizon("install", "--kubeconfig", kubeconfig, "-f", bad, "--wait=false")
	if code == 0 || !strings.Contains(stderr, `unknown field "replicass"`) {
		t.Fatalf("bad values: exit %d, %s", code, stderr)
	}
	code, _, stderr = horizon("install", "--kubeconfig", kubeconfig, "--cluster-id", "a b", "--wait=false")
	if code == 0 || !strings.Contains(stderr, "clusterID:") {
		t.Fatalf("bad cluster ID: exit %d, %s", code, stderr)
	}
	if got := managed(t, c); len(got) != 0 {
		t.Fatalf("refused settings applied objects: %v", got)
	}

	args := []string{"install", "--kubeconfig", kubeconfig, "--cluster-id", "cluster1", "--network", "network1",
		"--gateway", "--expose-services", "--mesh-networks", mn, "--wait=false"}
	horizonOK(t, args...)
	first := managed(t, c)
	if len(first) < 12 {
		t.Fatalf("install created only %v", first)
	}
	installAgainChangesNothing(t, args)

	// What manifest generate prints is accepted by the real API server.
	code, yaml, stderr := horizon(append([]string{"manifest", "generate"}, args[3:len(args)-1]...)...)
	if code != 0 {
		t.Fatalf("manifest generate: %s", stderr)
	}
	kubectl := exec.Command(filepath.Join(kubeharness.Binaries(t), "kubectl"), "--kubeconfig", kubeconfig,
		"apply", "--dry-run=server", "--server-side", "--field-manager", install.FieldManager, "-f", "-")
	kubectl.Stdin = strings.NewReader(yaml)
	if b, err := kubectl.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply --dry-run=server: %v\n%s", err, b)
	}

	uninstallLeavesNothing(t, c, kubeconfig)
}

// An API server that cannot be reached fails the install with a clear
// error and a non-zero exit, within the client's timeout.
func TestInstallUnreachableAPIServer(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	must(t, os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: gone, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: gone, context: {cluster: gone, user: u}}]
current-context: gone
`), 0o600))
	start := time.Now()
	code, _, stderr := horizon("install", "--kubeconfig", kubeconfig, "--cluster-id", "cluster1", "--wait=false")
	if code == 0 || !strings.Contains(stderr, "127.0.0.1:1") {
		t.Fatalf("unreachable API server: exit %d, %q", code, stderr)
	}
	if d := time.Since(start); d > 45*time.Second {
		t.Fatalf("took %s", d)
	}
}

// Taking over from Istio with a real API server: objects Istio created are
// never taken over. Istio's istiod Service makes --istiod-service refuse
// before anything is applied; Istio's meshNetworks is not overwritten; once
// Istio's istiod Service is gone, Horizon creates its own (Istio's ports,
// selecting discovery) with no injection webhook, applies only its own
// fields to the existing namespace and istio ConfigMap, is idempotent, and
// uninstall deletes what it created and nothing Istio created.
func TestInstallNeverTakesOverIstiosObjects(t *testing.T) {
	c, dir, kubeconfig := installCluster(t, "install-istio")
	ctx := context.Background()
	cs := c.Client

	// What Istio's chart leaves (created by another field manager).
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system",
		Labels: map[string]string{"team": "mesh"}}}, metav1.CreateOptions{FieldManager: "kubectl-create"})
	must(t, err)
	istioMesh := "defaultConfig:\n  discoveryAddress: istiod.istio-system.svc:15012\n"
	_, err = cs.CoreV1().ConfigMaps("istio-system").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: install.MeshConfigMap,
		Labels: map[string]string{install.ManagedByLabel: "Helm", "istio.io/rev": "default"}},
		Data: map[string]string{"mesh": istioMesh, "meshNetworks": "networks: {}"}}, metav1.CreateOptions{FieldManager: "helm"})
	must(t, err)
	_, err = cs.CoreV1().Services("istio-system").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: install.IstiodName,
		Labels: map[string]string{install.ManagedByLabel: "Helm", "app": "istiod"}},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "istiod", "istio": "pilot"},
			Ports: []corev1.ServicePort{{Name: "https-dns", Port: 15012}, {Name: "https-webhook", Port: 443, TargetPort: intstr.FromInt32(15017)}}}},
		metav1.CreateOptions{FieldManager: "helm"})
	must(t, err)
	istioState := func() (*corev1.Namespace, *corev1.ConfigMap) {
		t.Helper()
		ns, err := cs.CoreV1().Namespaces().Get(ctx, "istio-system", metav1.GetOptions{})
		must(t, err)
		cm, err := cs.CoreV1().ConfigMaps("istio-system").Get(ctx, install.MeshConfigMap, metav1.GetOptions{})
		must(t, err)
		if cm.Data["mesh"] != istioMesh || cm.Labels[install.ManagedByLabel] != "Helm" || cm.Labels["istio.io/rev"] != "default" {
			t.Errorf("Istio's istio ConfigMap changed: labels %v, data %v", cm.Labels, cm.Data)
		}
		if ns.Labels["team"] != "mesh" || ns.Labels[install.ManagedByLabel] != "" {
			t.Errorf("namespace labels %v: want the user's kept and no %s", ns.Labels, install.ManagedByLabel)
		}
		return ns, cm
	}

	// Istio's istiod Service: refused, nothing applied.
	code, out, stderr := horizon("install", "--kubeconfig", kubeconfig, "--istiod-service", "--wait=false")
	if code == 0 || !strings.Contains(stderr, "Service istio-system/istiod exists and Horizon did not create it") {
		t.Fatalf("install over Istio's istiod Service: exit %d\n%s\n%s", code, out, stderr)
	}
	svc, err := cs.CoreV1().Services("istio-system").Get(ctx, install.IstiodName, metav1.GetOptions{})
	must(t, err)
	if svc.Spec.Selector["app"] != "istiod" || svc.Labels[install.ManagedByLabel] != "Helm" {
		t.Fatalf("Istio's istiod Service changed: %v %v", svc.Labels, svc.Spec.Selector)
	}
	if got := managed(t, c); len(got) != 0 {
		t.Fatalf("refused install applied %v", got)
	}

	// Istio's meshNetworks: a conflict, refused, nothing applied.
	mn := filepath.Join(dir, "meshnetworks.yaml")
	must(t, os.WriteFile(mn, []byte("networks:\n  network1:\n    endpoints:\n    - fromRegistry: Kubernetes\n"), 0o644))
	code, out, stderr = horizon("install", "--kubeconfig", kubeconfig, "--mesh-networks", mn, "--wait=false")
	if code == 0 || !strings.Contains(stderr, "ConfigMap istio-system/istio existed before Horizon") || !strings.Contains(stderr, "meshNetworks") {
		t.Fatalf("install over Istio's meshNetworks: exit %d\n%s\n%s", code, out, stderr)
	}
	if _, cm := istioState(); cm.Data["meshNetworks"] != "networks: {}" {
		t.Fatalf("Istio's meshNetworks overwritten: %q", cm.Data["meshNetworks"])
	}
	if got := managed(t, c); len(got) != 0 {
		t.Fatalf("refused install applied %v", got)
	}

	// The migration step: Istio's istiod Service goes; Horizon's comes.
	must(t, cs.CoreV1().Services("istio-system").Delete(ctx, install.IstiodName, metav1.DeleteOptions{}))
	args := []string{"install", "--kubeconfig", kubeconfig, "--network", "network1", "--istiod-service", "--injection-webhook=false", "--wait=false"}
	if out := horizonOK(t, args...); !strings.Contains(out, "Namespace istio-system configured (not Horizon's") {
		t.Errorf("install output does not say the namespace is not Horizon's:\n%s", out)
	}
	svc, err = cs.CoreV1().Services("istio-system").Get(ctx, install.IstiodName, metav1.GetOptions{})
	must(t, err)
	var ports []string
	for _, p := range svc.Spec.Ports {
		ports = append(ports, fmt.Sprintf("%s %d->%s", p.Name, p.Port, p.TargetPort.String()))
	}
	if svc.Labels[install.ManagedByLabel] != install.ManagedBy || svc.Spec.Selector["app"] != install.DiscoveryName ||
		strings.Join(ports, ",") != "https-dns 15012->15012,http-monitoring 15014->15014" {
		t.Errorf("Horizon's istiod Service: labels %v, selector %v, ports %v", svc.Labels, svc.Spec.Selector, ports)
	}
	if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, install.WebhookName, metav1.GetOptions{}); err == nil {
		t.Error("--injection-webhook=false installed a webhook configuration")
	}
	ns, _ := istioState()
	if ns.Labels["topology.istio.io/network"] != "network1" {
		t.Errorf("namespace labels %v: want Horizon's network label", ns.Labels)
	}
	installAgainChangesNothing(t, args)

	uninstallLeavesNothing(t, c, kubeconfig)
	if _, err := cs.CoreV1().Services("istio-system").Get(ctx, install.IstiodName, metav1.GetOptions{}); err == nil {
		t.Error("uninstall left Horizon's istiod Service")
	}
	istioState()
}

// An istio ConfigMap without meshNetworks (Istio's mesh only) takes
// Horizon's meshNetworks: Horizon owns that key alone, Istio's mesh and
// labels stay, and uninstall keeps the ConfigMap.
func TestInstallAddsMeshNetworksToIstiosConfigMap(t *testing.T) {
	c, dir, kubeconfig := installCluster(t, "install-mesh")
	ctx := context.Background()
	cs := c.Client
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}}, metav1.CreateOptions{})
	must(t, err)
	_, err = cs.CoreV1().ConfigMaps("istio-system").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: install.MeshConfigMap,
		Labels: map[string]string{install.ManagedByLabel: "Helm"}},
		Data: map[string]string{"mesh": "trustDomain: cluster.local\n"}}, metav1.CreateOptions{FieldManager: "helm"})
	must(t, err)
	mnYAML := "networks:\n  network1:\n    endpoints:\n    - fromRegistry: Kubernetes\n"
	mn := filepath.Join(dir, "meshnetworks.yaml")
	must(t, os.WriteFile(mn, []byte(mnYAML), 0o644))
	horizonOK(t, "install", "--kubeconfig", kubeconfig, "--mesh-networks", mn, "--wait=false")
	cm, err := cs.CoreV1().ConfigMaps("istio-system").Get(ctx, install.MeshConfigMap, metav1.GetOptions{})
	must(t, err)
	if cm.Data["mesh"] != "trustDomain: cluster.local\n" || cm.Data["meshNetworks"] != mnYAML || cm.Labels[install.ManagedByLabel] != "Helm" {
		t.Fatalf("istio ConfigMap: labels %v, data %v", cm.Labels, cm.Data)
	}
	for _, mf := range cm.ManagedFields {
		fields := mf.FieldsV1.GetRawString()
		if mf.Manager == install.FieldManager && (strings.Contains(fields, `"f:mesh"`) || strings.Contains(fields, "managed-by")) {
			t.Errorf("horizon owns Istio's fields: %s", fields)
		}
		if mf.Manager == "helm" && !strings.Contains(fields, `"f:mesh"`) {
			t.Errorf("helm lost its fields: %s", fields)
		}
	}
	horizonOK(t, "uninstall", "--kubeconfig", kubeconfig)
	cm, err = cs.CoreV1().ConfigMaps("istio-system").Get(ctx, install.MeshConfigMap, metav1.GetOptions{})
	if err != nil || cm.Data["mesh"] == "" {
		t.Fatalf("uninstall deleted or changed Istio's ConfigMap: %v, %v", cm, err)
	}
}
