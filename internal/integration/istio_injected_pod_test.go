//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/internal/bootstrap"
	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/ca/catest"
	"github.com/horizonmesh/horizon/internal/k8sproc"
	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/rootcert"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
)

// What docs/istio-migration.md ("What an Istio user changes") tells an
// Istio user to arrange: the istiod Service's name leads to Horizon's TLS
// port, and Istio's cluster name and trust domain equal Horizon's.
const docDiscoveryAddress = "istiod.istio-system.svc:15012"

// istioctlBinary is Istio's own istioctl (scripts/istiod.sh istioctl);
// see istioBinary.
func istioctlBinary(t *testing.T) string {
	t.Helper()
	return istioBinary(t, "HORIZON_ISTIOCTL", "istioctl")
}

// istioInjected is what Istio's injector makes of the walkthrough's sleep
// (samples/sleep/sleep.yaml applied in namespace sample): the objects of
// `istioctl kube-inject`'s output, its injected Deployment among them.
type istioInjected struct {
	objects [][]byte // each object of the output, JSON
	deploy  *appsv1.Deployment
}

// istioInject runs Istio's own code, offline, the way a default
// `istioctl install` would inject: `istioctl manifest generate` renders the
// default profile (Istio's charts in the pinned module), whose
// istio-sidecar-injector ConfigMap (keys config and values) and istio
// ConfigMap (key mesh) are exactly what kube-inject reads from a cluster;
// `istioctl kube-inject` then injects sleep.yaml with them. --revision
// default keeps kube-inject from looking for a cluster (the default
// revision renders as in a default install).
func istioInject(t *testing.T, istioctl, sampleFile, ns string, env ...string) istioInjected {
	t.Helper()
	dir := t.TempDir()
	run := func(args ...string) []byte {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(c, istioctl, args...)
		// No cluster: a kubeconfig that does not exist, a home of its own.
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "KUBECONFIG=" + filepath.Join(dir, "no-kubeconfig")}, env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("istioctl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return out
	}
	start := time.Now()
	manifest := run("manifest", "generate")
	data := map[string]map[string]string{} // ConfigMap name -> data
	for _, doc := range splitYAML(manifest) {
		var cm corev1.ConfigMap
		if err := yaml.Unmarshal(doc, &cm); err == nil && cm.Kind == "ConfigMap" && cm.Namespace == "istio-system" {
			data[cm.Name] = cm.Data
		}
	}
	files := map[string]string{
		"config":    data["istio-sidecar-injector"]["config"],
		"values":    data["istio-sidecar-injector"]["values"],
		"mesh.yaml": data["istio"]["mesh"],
	}
	for name, content := range files {
		if content == "" {
			t.Fatalf("istioctl manifest generate: no %s in its istio-sidecar-injector/istio ConfigMaps (have %v)", name, keys(data))
		}
		must(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600))
	}

	// The sample as `kubectl -n sample apply -f` gives it to the webhook.
	src, err := os.ReadFile(sampleFile)
	must(t, err)
	var in []string
	for _, doc := range splitYAML(src) {
		var obj map[string]any
		must(t, yaml.Unmarshal(doc, &obj))
		if obj == nil {
			continue
		}
		obj["metadata"].(map[string]any)["namespace"] = ns
		b, err := yaml.Marshal(obj)
		must(t, err)
		in = append(in, string(b))
	}
	input := filepath.Join(dir, "sleep.yaml")
	must(t, os.WriteFile(input, []byte(strings.Join(in, "---\n")), 0o600))
	out := run("kube-inject", "--revision", "default", "-f", input,
		"--injectConfigFile", filepath.Join(dir, "config"),
		"--meshConfigFile", filepath.Join(dir, "mesh.yaml"),
		"--valuesFile", filepath.Join(dir, "values"))
	t.Logf("istioctl manifest generate + kube-inject: %s", time.Since(start).Round(time.Millisecond))

	var res istioInjected
	for _, doc := range splitYAML(out) {
		j, err := yaml.YAMLToJSON(doc)
		must(t, err)
		if string(j) == "null" {
			continue
		}
		res.objects = append(res.objects, j)
		var d appsv1.Deployment
		if err := json.Unmarshal(j, &d); err == nil && d.Kind == "Deployment" {
			res.deploy = &d
		}
	}
	if res.deploy == nil {
		t.Fatalf("kube-inject's output has no Deployment:\n%s", out)
	}
	if _, ok := res.deploy.Spec.Template.Annotations["sidecar.istio.io/status"]; !ok {
		t.Fatalf("kube-inject did not inject the Deployment:\n%s", out)
	}
	return res
}

func splitYAML(b []byte) [][]byte {
	var out [][]byte
	for _, doc := range bytes.Split(append([]byte("\n"), b...), []byte("\n---")) {
		if len(bytes.TrimSpace(doc)) > 0 {
			out = append(out, doc)
		}
	}
	return out
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestIstioInjectedPodFindsWhatItMounts: the pod spec Istio's own injector
// makes for the walkthrough's sleep (default profile, rendered by the pinned
// istioctl offline; istio-proxy as a regular container and, as istiod's
// webhook injects it for nodes that support it, as a native sidecar) finds,
// in a cluster where `horizon-discovery discovery` runs instead of istiod, everything
// it mounts: the API server accepts the injected Deployment and Pod; the
// ConfigMap istio-ca-root-cert, which discovery publishes, holds
// root-cert.pem (the file pilot-agent reads under /var/run/secrets/istio)
// with the mesh root; the optional CRL ConfigMap may be absent; the
// istio-token projection (audience istio-ca) is issued for the pod's
// service account, bound to the pod as a kubelet binds it, and Horizon's
// token reviewer (what its CA runs) accepts it; the downward API fields
// resolve on the pod. The addresses and IDs the spec carries for istiod
// are the ones docs/istio-migration.md tells a user to arrange: CA_ADDR
// and the discovery address pilot-agent derives from PROXY_CONFIG (it
// prints its effective config) are istiod.istio-system.svc:15012,
// ISTIO_META_CLUSTER_ID and TRUST_DOMAIN are Horizon's defaults. No kubelet
// runs: the pod is never scheduled; the test checks what its kubelet and
// agent would look up.
func TestIstioInjectedPodFindsWhatItMounts(t *testing.T) {
	istioctl := istioctlBinary(t)
	pilotAgent := pilotAgentBinary(t)
	const ns = "sample"
	defaults := bootstrap.DefaultConfig()

	c1 := kubeharness.Start(t, kubeharness.Options{Name: "cluster1"})
	namespace(t, c1, "istio-system", nil)
	files, err := catest.New("mesh")
	must(t, err)
	installCACerts(t, c1, files)
	ports, err := k8sproc.FreePorts(1)
	must(t, err)
	// `horizon-discovery discovery` with its defaults (cluster ID, trust domain,
	// token audiences) and its TLS port: with a CA it publishes the root.
	start := time.Now()
	d := startDiscoveryWith(t, c1, nil, true, func(c *bootstrap.Config) {
		c.ClusterID = defaults.ClusterID
		c.SecureAddr = "127.0.0.1:" + strconv.Itoa(ports[0])
	})
	t.Logf("discovery ready in %s", time.Since(start).Round(time.Millisecond))
	// The namespace appears after discovery started, as a user's would.
	namespace(t, c1, ns, map[string]string{"istio-injection": "enabled"})

	for i, tt := range []struct{ name, native, suffix string }{
		{"istio-proxy container", "false", ""},
		{"istio-proxy native sidecar", "true", "-native"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			inj := istioInject(t, istioctl, "../../samples/sleep/sleep.yaml", ns, "ENABLE_NATIVE_SIDECARS="+tt.native)
			// Everything kube-inject wrote (ServiceAccount, Service, the
			// injected Deployment), as `kubectl apply` would: the API
			// server validates the injected pod template.
			for _, obj := range inj.objects {
				applyJSON(t, c1, ns, obj, tt.suffix)
			}
			checkIstioInjectedPod(t, c1, d, inj, fmt.Sprintf("sleep-istio-%d", i), files[ca.RootCertFile], pilotAgent)
		})
	}
}

// checkIstioInjectedPod creates the pod of the injected Deployment's
// template and checks every reference it makes.
func checkIstioInjectedPod(t *testing.T, c1 *kubeharness.Cluster, d *discoveryProc, inj istioInjected, podName string, meshRoot []byte, pilotAgent string) {
	ns := inj.deploy.Namespace
	defaults := bootstrap.DefaultConfig()
	// No controller-manager runs: the pod the Deployment would make.
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: ns,
		Labels: inj.deploy.Spec.Template.Labels, Annotations: inj.deploy.Spec.Template.Annotations},
		Spec: *inj.deploy.Spec.Template.Spec.DeepCopy()}
	p.Spec.NodeName = "node-1"
	pod, err := c1.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("the API server refuses Istio's injected pod: %v", err)
	}
	// As a kubelet would report it (downward API status.* fields).
	pod.Status.PodIP, pod.Status.HostIP = "10.1.0.9", "192.0.2.1"
	pod.Status.PodIPs, pod.Status.HostIPs = []corev1.PodIP{{IP: "10.1.0.9"}}, []corev1.HostIP{{IP: "192.0.2.1"}}
	pod, err = c1.Client.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	must(t, err)
	proxy := container(t, pod, "istio-proxy")
	t.Logf("injected: init containers %v, containers %v; istio-proxy restartPolicy %v",
		names(pod.Spec.InitContainers), names(pod.Spec.Containers), ptrString(proxy.RestartPolicy))

	sa := pod.Spec.ServiceAccountName
	if _, err := c1.Client.CoreV1().ServiceAccounts(ns).Get(ctx, sa, metav1.GetOptions{}); err != nil {
		t.Errorf("the pod's service account %s/%s: %v", ns, sa, err)
	}

	// Discovery publishes the root in the namespace: wait for it.
	waitFor(t, 30*time.Second, "istio-ca-root-cert in "+ns, func() bool {
		cm, err := c1.Client.CoreV1().ConfigMaps(ns).Get(ctx, rootcert.ConfigMapName, metav1.GetOptions{})
		return err == nil && cm.Data[rootcert.Key] != ""
	})

	// Every volume a container mounts is in the spec, and every volume
	// resolves.
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		vols[v.Name] = v
	}
	mounts := map[string][]string{} // volume -> container:mountPath
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		for _, m := range c.VolumeMounts {
			if _, ok := vols[m.Name]; !ok {
				t.Errorf("container %s mounts %s, which is not a volume of the pod", c.Name, m.Name)
			}
			mounts[m.Name] = append(mounts[m.Name], c.Name+":"+m.MountPath+subPath(m))
		}
	}
	chk := &refChecker{t: t, client: c1.Client, ns: ns, pod: pod, clusterID: defaults.ClusterID,
		audiences: defaults.TokenAudiences}
	for _, v := range pod.Spec.Volumes {
		how := chk.volume(v, mounts[v.Name])
		t.Logf("volume %-18s mounted at %-60s %s", v.Name, strings.Join(mounts[v.Name], ","), how)
	}

	// The root the agent reads: PILOT_CERT_PROVIDER=istiod makes
	// pilot-agent trust ./var/run/secrets/istio/root-cert.pem for the
	// discovery/CA connection, which the istio-ca-root-cert volume holds.
	rootVol := ""
	for _, m := range proxy.VolumeMounts {
		if m.MountPath == "/var/run/secrets/istio" {
			rootVol = m.Name
		}
	}
	if v, ok := vols[rootVol]; !ok || v.ConfigMap == nil || v.ConfigMap.Name != rootcert.ConfigMapName {
		t.Errorf("istio-proxy's /var/run/secrets/istio is volume %q (%+v), not the ConfigMap %s", rootVol, v.VolumeSource, rootcert.ConfigMapName)
	} else {
		cm, err := c1.Client.CoreV1().ConfigMaps(ns).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
		must(t, err)
		if got := cm.Data[rootcert.Key]; !bytes.Equal([]byte(got), meshRoot) {
			t.Errorf("%s/%s %s is not the mesh root (cacerts' root-cert.pem):\n%s", ns, cm.Name, rootcert.Key, got)
		}
	}

	// The environment: every reference resolves, and what names istiod is
	// what the migration guide says.
	env := map[string]string{}
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		for _, e := range c.Env {
			how := chk.env(c.Name, e)
			if c.Name == "istio-proxy" {
				env[e.Name] = e.Value
			}
			t.Logf("env %s %-28s %s", c.Name, e.Name, how)
		}
		for _, f := range c.EnvFrom {
			t.Errorf("container %s: envFrom %+v (not expected in Istio's template; check it)", c.Name, f)
		}
	}
	want := map[string]string{
		"CA_ADDR":               docDiscoveryAddress,
		"ISTIO_META_CLUSTER_ID": defaults.ClusterID,
		"TRUST_DOMAIN":          defaults.TrustDomain,
		"PILOT_CERT_PROVIDER":   "istiod",
	}
	for _, k := range keys(want) {
		if env[k] != want[k] {
			t.Errorf("istio-proxy %s=%q; docs/istio-migration.md expects %q", k, env[k], want[k])
		}
	}
	var pc map[string]any
	if err := json.Unmarshal([]byte(env["PROXY_CONFIG"]), &pc); err != nil {
		t.Errorf("PROXY_CONFIG %q: %v", env["PROXY_CONFIG"], err)
	}
	t.Logf("PROXY_CONFIG as injected: %s", strings.TrimSpace(env["PROXY_CONFIG"]))
	if got := effectiveDiscoveryAddress(t, pilotAgent, proxy, pod); got != docDiscoveryAddress {
		t.Errorf("pilot-agent's effective discoveryAddress from the injected PROXY_CONFIG is %q; docs/istio-migration.md expects %q", got, docDiscoveryAddress)
	} else {
		t.Logf("pilot-agent's effective discoveryAddress (PROXY_CONFIG over its defaults): %s", got)
	}
	// Horizon knows the cluster the pod names (a proxy of an unknown
	// cluster is refused).
	if clusters := d.get(t, "/debug/clusters"); !strings.Contains(clusters, `"`+env["ISTIO_META_CLUSTER_ID"]+`"`) {
		t.Errorf("ISTIO_META_CLUSTER_ID %q is not among discovery's clusters: %s", env["ISTIO_META_CLUSTER_ID"], clusters)
	}
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func ptrString[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

func subPath(m corev1.VolumeMount) string {
	if m.SubPath != "" {
		return "(subPath " + m.SubPath + ")"
	}
	return ""
}

func container(t *testing.T, pod *corev1.Pod, name string) corev1.Container {
	t.Helper()
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s in the injected pod", name)
	return corev1.Container{}
}

// applyJSON creates one object of kube-inject's output in namespace ns,
// the Deployment under its name plus suffix; a ServiceAccount or Service
// an earlier variant created (the same object) may exist.
func applyJSON(t *testing.T, c *kubeharness.Cluster, ns string, obj []byte, suffix string) {
	t.Helper()
	var meta metav1.TypeMeta
	must(t, json.Unmarshal(obj, &meta))
	var err error
	switch meta.Kind {
	case "ServiceAccount":
		var o corev1.ServiceAccount
		must(t, json.Unmarshal(obj, &o))
		if _, err = c.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &o, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) && suffix != "" {
			err = nil
		}
	case "Service":
		var o corev1.Service
		must(t, json.Unmarshal(obj, &o))
		if _, err = c.Client.CoreV1().Services(ns).Create(ctx, &o, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) && suffix != "" {
			err = nil
		}
	case "Deployment":
		var o appsv1.Deployment
		must(t, json.Unmarshal(obj, &o))
		o.Name += suffix
		_, err = c.Client.AppsV1().Deployments(ns).Create(ctx, &o, metav1.CreateOptions{})
	default:
		t.Fatalf("kube-inject's output has a %s; add it here", meta.Kind)
	}
	if err != nil {
		t.Fatalf("the API server refuses kube-inject's %s: %v", meta.Kind, err)
	}
}

// refChecker resolves a pod's references as its kubelet would, plus the
// token review Horizon's CA makes.
type refChecker struct {
	t         *testing.T
	client    kubernetes.Interface
	ns        string
	pod       *corev1.Pod
	clusterID string
	audiences []string
}

func (r *refChecker) configMap(name string, optional *bool, items []corev1.KeyToPath, subPaths []string) string {
	cm, err := r.client.CoreV1().ConfigMaps(r.ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && optional != nil && *optional {
		return "ConfigMap " + name + ": absent, optional (mounted empty)"
	}
	if err != nil {
		r.t.Errorf("ConfigMap %s/%s: %v", r.ns, name, err)
		return "ConfigMap " + name + ": MISSING"
	}
	need := subPaths
	for _, it := range items {
		need = append(need, it.Key)
	}
	for _, k := range need {
		if _, ok := cm.Data[k]; !ok {
			if _, ok := cm.BinaryData[k]; !ok && (optional == nil || !*optional) {
				r.t.Errorf("ConfigMap %s/%s has no key %s", r.ns, name, k)
			}
		}
	}
	return fmt.Sprintf("ConfigMap %s: present, keys %v (labels %v)", name, keys(cm.Data), cm.Labels)
}

func (r *refChecker) secret(name string, optional *bool) string {
	_, err := r.client.CoreV1().Secrets(r.ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && optional != nil && *optional {
		return "Secret " + name + ": absent, optional"
	}
	if err != nil {
		r.t.Errorf("Secret %s/%s: %v", r.ns, name, err)
		return "Secret " + name + ": MISSING"
	}
	return "Secret " + name + ": present"
}

// token issues the projected token as a kubelet does (TokenRequest for the
// pod's service account, bound to the pod) and has Horizon's reviewer,
// with discovery's default audiences, authenticate it for the pod's
// cluster.
func (r *refChecker) token(p *corev1.ServiceAccountTokenProjection) string {
	var audiences []string
	if p.Audience != "" {
		audiences = []string{p.Audience}
	}
	tr, err := r.client.CoreV1().ServiceAccounts(r.ns).CreateToken(ctx, r.pod.Spec.ServiceAccountName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: p.ExpirationSeconds,
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: r.pod.Name, UID: r.pod.UID}}},
		metav1.CreateOptions{})
	if err != nil {
		r.t.Errorf("TokenRequest for %s/%s (audience %q, %v s) bound to pod %s: %v", r.ns, r.pod.Spec.ServiceAccountName,
			p.Audience, deref(p.ExpirationSeconds), r.pod.Name, err)
		return "token " + p.Path + ": NOT ISSUED"
	}
	reviewer := &ca.TokenReviewer{Audiences: r.audiences, Clients: func(id model.ClusterID) kubernetes.Interface {
		if string(id) == r.clusterID {
			return r.client
		}
		return nil
	}}
	caller, err := reviewer.Authenticate(ctx, model.ClusterID(r.clusterID), tr.Status.Token)
	if err != nil {
		r.t.Errorf("Horizon's CA would refuse the pod's %s token: %v", p.Path, err)
		return "token " + p.Path + ": REFUSED by Horizon's reviewer"
	}
	if caller.Namespace != r.ns || caller.ServiceAccount != r.pod.Spec.ServiceAccountName {
		r.t.Errorf("the pod's token reviews as %s/%s", caller.Namespace, caller.ServiceAccount)
	}
	return fmt.Sprintf("serviceAccountToken %s (audience %s, %ds): TokenRequest bound to the pod succeeds; Horizon's reviewer (audiences %v) accepts it as %s/%s",
		p.Path, p.Audience, deref(p.ExpirationSeconds), r.audiences, caller.Namespace, caller.ServiceAccount)
}

func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// field resolves a downward API fieldPath on the pod (only the paths
// Istio's template uses are known; any other is reported).
func (r *refChecker) field(path string) string {
	p := r.pod
	var v string
	switch path {
	case "metadata.name":
		v = p.Name
	case "metadata.namespace":
		v = p.Namespace
	case "metadata.uid":
		v = string(p.UID)
	case "metadata.labels":
		v = fmt.Sprint(len(p.Labels), " labels")
	case "metadata.annotations":
		v = fmt.Sprint(len(p.Annotations), " annotations")
	case "spec.serviceAccountName":
		v = p.Spec.ServiceAccountName
	case "spec.nodeName":
		v = p.Spec.NodeName
	case "status.podIP":
		v = p.Status.PodIP
	case "status.hostIP":
		v = p.Status.HostIP
	default:
		r.t.Errorf("downward API fieldPath %s: not one this test knows; check it", path)
		return "?"
	}
	if v == "" {
		r.t.Errorf("downward API fieldPath %s is empty on the pod", path)
	}
	return v
}

func (r *refChecker) volume(v corev1.Volume, mounts []string) string {
	switch s := v.VolumeSource; {
	case s.EmptyDir != nil:
		return "emptyDir: nothing to find"
	case s.ConfigMap != nil:
		return r.configMap(s.ConfigMap.Name, s.ConfigMap.Optional, s.ConfigMap.Items, volumeSubPaths(r.pod, v.Name))
	case s.Secret != nil:
		return r.secret(s.Secret.SecretName, s.Secret.Optional)
	case s.DownwardAPI != nil:
		var out []string
		for _, it := range s.DownwardAPI.Items {
			switch {
			case it.FieldRef != nil:
				out = append(out, it.Path+"="+it.FieldRef.FieldPath+" ("+r.field(it.FieldRef.FieldPath)+")")
			case it.ResourceFieldRef != nil:
				out = append(out, it.Path+"="+it.ResourceFieldRef.Resource)
			}
		}
		return "downwardAPI: " + strings.Join(out, ", ")
	case s.Projected != nil:
		var out []string
		for _, src := range s.Projected.Sources {
			switch {
			case src.ServiceAccountToken != nil:
				out = append(out, r.token(src.ServiceAccountToken))
			case src.ConfigMap != nil:
				out = append(out, r.configMap(src.ConfigMap.Name, src.ConfigMap.Optional, src.ConfigMap.Items, nil))
			case src.Secret != nil:
				out = append(out, r.secret(src.Secret.Name, src.Secret.Optional))
			case src.DownwardAPI != nil:
				for _, it := range src.DownwardAPI.Items {
					if it.FieldRef != nil {
						out = append(out, it.Path+"="+it.FieldRef.FieldPath+" ("+r.field(it.FieldRef.FieldPath)+")")
					}
				}
			default:
				r.t.Errorf("volume %s: projected source %+v not checked here", v.Name, src)
			}
		}
		return "projected: " + strings.Join(out, "; ")
	default:
		r.t.Errorf("volume %s mounted at %v: a source this test does not check: %+v", v.Name, mounts, s)
		return "?"
	}
}

func volumeSubPaths(pod *corev1.Pod, vol string) []string {
	var out []string
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		for _, m := range c.VolumeMounts {
			if m.Name == vol && m.SubPath != "" {
				out = append(out, m.SubPath)
			}
		}
	}
	return out
}

func (r *refChecker) env(container string, e corev1.EnvVar) string {
	if e.ValueFrom == nil {
		return "value " + strconv.Quote(strings.TrimSpace(e.Value))
	}
	switch f := e.ValueFrom; {
	case f.FieldRef != nil:
		return "fieldRef " + f.FieldRef.FieldPath + " = " + r.field(f.FieldRef.FieldPath)
	case f.ResourceFieldRef != nil:
		return "resourceFieldRef " + f.ResourceFieldRef.Resource + " (the container's own resources)"
	case f.ConfigMapKeyRef != nil:
		return r.configMap(f.ConfigMapKeyRef.Name, f.ConfigMapKeyRef.Optional, []corev1.KeyToPath{{Key: f.ConfigMapKeyRef.Key}}, nil)
	case f.SecretKeyRef != nil:
		return r.secret(f.SecretKeyRef.Name, f.SecretKeyRef.Optional)
	default:
		r.t.Errorf("container %s env %s: a source this test does not check: %+v", container, e.Name, f)
		return "?"
	}
}

// effectiveDiscoveryAddress runs Istio's pilot-agent with the istio-proxy
// container's arguments and environment (fieldRefs resolved from the
// pod) and reads the discovery address from the effective proxy config it
// logs at start (the injected PROXY_CONFIG over its built-in defaults);
// it is stopped right after.
func effectiveDiscoveryAddress(t *testing.T, agent string, c corev1.Container, pod *corev1.Pod) string {
	t.Helper()
	work := t.TempDir()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + work}
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil {
			if e.ValueFrom.FieldRef == nil {
				continue // resource limits: not needed to read the config
			}
			v = (&refChecker{t: t, pod: pod}).field(e.ValueFrom.FieldRef.FieldPath)
		}
		env = append(env, e.Name+"="+v)
	}
	// No Envoy; it is stopped as soon as it has logged its config, before
	// it would serve anything.
	env = append(env, "DISABLE_ENVOY=true")
	args := slices.Clone(c.Args)
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "$(POD_NAMESPACE)", pod.Namespace)
	}
	logPath := filepath.Join(work, "pilot-agent.log")
	logFile, err := os.Create(logPath)
	must(t, err)
	defer logFile.Close()
	cmd := exec.Command(agent, args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = work, env, logFile, logFile
	must(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer stopPilotAgent(t, cmd, exited, logPath, 40)
	const marker = "Effective config: "
	var cfg string
	waitFor(t, 30*time.Second, "pilot-agent's effective config in its log", func() bool {
		b, _ := os.ReadFile(logPath)
		i := bytes.Index(b, []byte(marker))
		// The config is YAML over several lines; it is complete once a
		// later log line (timestamped) follows it.
		if i >= 0 {
			rest := b[i+len(marker):]
			if j := bytes.Index(rest, []byte("\n20")); j >= 0 {
				cfg = string(rest[:j])
				return true
			}
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("pilot-agent exited before it logged its config (%v):\n%s", err, lastLines(b, 40))
		default:
		}
		return false
	})
	var pc struct {
		DiscoveryAddress string `json:"discoveryAddress"`
	}
	if err := yaml.Unmarshal([]byte(cfg), &pc); err != nil {
		t.Fatalf("pilot-agent's effective config: %v\n%s", err, cfg)
	}
	return pc.DiscoveryAddress
}
