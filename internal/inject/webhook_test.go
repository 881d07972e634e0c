package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func cluster1() Config {
	c := Defaults()
	c.ClusterID = "cluster1"
	c.DiscoveryAddress = "horizon.istio-system.svc:15012"
	c.EnvoyPath = "/usr/local/bin/envoy"
	return c
}

// cluster2 is a remote cluster on its own network: its pods reach
// discovery through cluster1's gateway.
func cluster2() Config {
	c := cluster1()
	c.ClusterID = "cluster2"
	c.Network = "network2"
	c.DiscoveryAddress = "203.0.113.10:15443"
	c.DiscoverySAN = "outbound_.15012_._.horizon.istio-system.svc.cluster.local"
	return c
}

var namespaces = map[string]*corev1.Namespace{
	"sample":      {ObjectMeta: metav1.ObjectMeta{Name: "sample", Labels: map[string]string{"istio-injection": "enabled"}}},
	"rev":         {ObjectMeta: metav1.ObjectMeta{Name: "rev", Labels: map[string]string{"istio-injection": "enabled", "istio.io/rev": "canary"}}},
	"other":       {ObjectMeta: metav1.ObjectMeta{Name: "other"}},
	"revonly":     {ObjectMeta: metav1.ObjectMeta{Name: "revonly", Labels: map[string]string{"istio.io/rev": "canary"}}},
	"off":         {ObjectMeta: metav1.ObjectMeta{Name: "off", Labels: map[string]string{"istio-injection": "disabled"}}},
	"kube-system": {ObjectMeta: metav1.ObjectMeta{Name: "kube-system", Labels: map[string]string{"istio-injection": "enabled"}}},
}

func lookup(name string) (*corev1.Namespace, error) {
	if name == "broken" {
		return nil, errors.New("informer not synced")
	}
	return namespaces[name], nil // nil for unknown: unlabelled
}

// sleepPod is a Deployment's pod as the API server sends it: no name yet.
func sleepPod(ns string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "sleep-7d5c8b9f4-", Namespace: ns,
			Labels: map[string]string{"app": "sleep", "pod-template-hash": "7d5c8b9f4", "app.kubernetes.io/part-of": "demo"}},
		Spec: corev1.PodSpec{
			ServiceAccountName: "sleep",
			Containers: []corev1.Container{{Name: "sleep", Image: "curlimages/curl", Command: []string{"sleep", "infinity"},
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 5000}}}},
		},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

type admitted struct {
	resp     *admissionv1.AdmissionResponse
	original []byte      // the object sent
	pod      *corev1.Pod // after applying the patch (the original when none)
	raw      []byte      // its JSON
}

// admit sends pod (as raw JSON; rawObject overrides) through the handler
// as the API server would, applies the returned patch and decodes.
func admit(t *testing.T, cfg Config, pod *corev1.Pod, rawObject []byte) admitted {
	t.Helper()
	raw := rawObject
	if raw == nil {
		var err error
		if raw, err = json.Marshal(pod); err != nil {
			t.Fatal(err)
		}
	}
	ns := pod.Namespace
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID("uid-" + t.Name()), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: ns, Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
		},
	}
	body, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	rec := post(Handler(cfg, lookup, nil), body, "application/json")
	if rec.Code != http.StatusOK {
		t.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("response: %v\n%s", err, rec.Body)
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Response == nil {
		t.Fatalf("response is not an AdmissionReview with a response: %s", rec.Body)
	}
	if out.Response.UID != review.Request.UID {
		t.Errorf("response uid %q, want %q", out.Response.UID, review.Request.UID)
	}
	a := admitted{resp: out.Response, original: raw, raw: raw}
	if len(out.Response.Patch) > 0 {
		if out.Response.PatchType == nil || *out.Response.PatchType != admissionv1.PatchTypeJSONPatch {
			t.Fatalf("patch type %v", out.Response.PatchType)
		}
		patch, err := jsonpatch.DecodePatch(out.Response.Patch)
		if err != nil {
			t.Fatalf("patch: %v\n%s", err, out.Response.Patch)
		}
		if a.raw, err = patch.Apply(raw); err != nil {
			t.Fatalf("applying the patch: %v\n%s", err, out.Response.Patch)
		}
	} else if out.Response.PatchType != nil {
		t.Errorf("patch type %v without a patch", *out.Response.PatchType)
	}
	a.pod = &corev1.Pod{}
	if err := json.Unmarshal(a.raw, a.pod); err != nil {
		t.Fatal(err)
	}
	return a
}

func post(h http.Handler, body []byte, contentType string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, WebhookPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func container(t *testing.T, cs []corev1.Container, name string) corev1.Container {
	t.Helper()
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	return corev1.Container{}
}

// flag returns the value after name in args ("" and false when absent).
func flag(args []string, name string) (string, bool) {
	i := slices.Index(args, name)
	if i < 0 || i+1 >= len(args) {
		return "", false
	}
	return args[i+1], true
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestInjectedInEnabledNamespace(t *testing.T) {
	for _, ns := range []string{"sample", "rev"} {
		t.Run(ns, func(t *testing.T) {
			a := admit(t, cluster1(), sleepPod(ns), nil)
			if !a.resp.Allowed || len(a.resp.Patch) == 0 {
				t.Fatalf("not injected: %+v", a.resp)
			}
			checkInjected(t, a.pod, cluster1(), ns)
		})
	}
}

func checkInjected(t *testing.T, p *corev1.Pod, cfg Config, ns string) {
	t.Helper()
	if got := names(p.Spec.Containers); !slices.Equal(got, []string{"sleep", "istio-proxy"}) {
		t.Errorf("containers %v", got)
	}
	if got := names(p.Spec.InitContainers); !slices.Equal(got, []string{"istio-init"}) {
		t.Errorf("init containers %v", got)
	}
	// The app is untouched.
	if app := container(t, p.Spec.Containers, "sleep"); !slices.Equal(app.Command, []string{"sleep", "infinity"}) || app.SecurityContext != nil {
		t.Errorf("app container changed: %+v", app)
	}

	init := container(t, p.Spec.InitContainers, "istio-init")
	if init.Image != cfg.ProxyImage || !slices.Equal(init.Command, []string{"horizon-agent"}) {
		t.Errorf("init image %q command %v", init.Image, init.Command)
	}
	if got, _ := flag(init.Args, "--proxy-uid"); got != "1337" || !slices.Equal(init.Args[:2], []string{"agent", "iptables"}) {
		t.Errorf("init args %v", init.Args)
	}
	isc := init.SecurityContext
	if isc == nil || *isc.RunAsUser != 0 || *isc.RunAsNonRoot || *isc.Privileged || *isc.AllowPrivilegeEscalation ||
		!slices.Equal(isc.Capabilities.Add, []corev1.Capability{"NET_ADMIN", "NET_RAW"}) || !slices.Equal(isc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("init security context %+v", isc)
	}

	proxy := container(t, p.Spec.Containers, "istio-proxy")
	if proxy.Image != cfg.ProxyImage || proxy.Args[0] != "agent" {
		t.Errorf("proxy image %q args %v", proxy.Image, proxy.Args)
	}
	for flagName, want := range map[string]string{
		"--namespace": "$(POD_NAMESPACE)", "--service-account": "$(SERVICE_ACCOUNT)", "--ip": "$(INSTANCE_IP)",
		"--cluster-id": cfg.ClusterID, "--discovery-address": cfg.DiscoveryAddress,
		"--root-cert": "/var/run/secrets/istio/root-cert.pem", "--token-file": "/var/run/secrets/tokens/istio-token",
		"--envoy-path": cfg.EnvoyPath, "--work-dir": "/var/run/horizon", "--envoy-log-level": "warning",
	} {
		if got, _ := flag(proxy.Args, flagName); got != want {
			t.Errorf("proxy %s = %q, want %q (args %v)", flagName, got, want, proxy.Args)
		}
	}
	// Every pod label reaches the agent, the injected ones included.
	for _, l := range []string{"app=sleep", "app.kubernetes.io/part-of=demo", "security.istio.io/tlsMode=istio"} {
		if !slices.Contains(proxy.Args, l) || proxy.Args[slices.Index(proxy.Args, l)-1] != "--label" {
			t.Errorf("proxy args lack --label %s: %v", l, proxy.Args)
		}
	}
	// Ready once Envoy serves: the agent's status port, outside capture.
	if rp := proxy.ReadinessProbe; rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/healthz/ready" || rp.HTTPGet.Port != intstr.FromInt32(15021) ||
		rp.InitialDelaySeconds != 1 || rp.PeriodSeconds != 2 || rp.TimeoutSeconds != 3 || rp.FailureThreshold != 4 {
		t.Errorf("proxy readiness probe %+v", rp)
	}
	psc := proxy.SecurityContext
	if psc == nil || *psc.RunAsUser != 1337 || *psc.RunAsGroup != 1337 || !*psc.RunAsNonRoot || !*psc.ReadOnlyRootFilesystem ||
		*psc.AllowPrivilegeEscalation || len(psc.Capabilities.Add) != 0 || !slices.Equal(psc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("proxy security context %+v", psc)
	}
	env := map[string]string{}
	for _, e := range proxy.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	for k, v := range map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace",
		"INSTANCE_IP": "status.podIP", "SERVICE_ACCOUNT": "spec.serviceAccountName"} {
		if env[k] != v {
			t.Errorf("env %s from %q, want %q", k, env[k], v)
		}
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range proxy.VolumeMounts {
		mounts[m.Name] = m
	}
	if m := mounts["istio-token"]; m.MountPath != "/var/run/secrets/tokens" || !m.ReadOnly {
		t.Errorf("token mount %+v", m)
	}
	if m := mounts["istio-ca-root-cert"]; m.MountPath != "/var/run/secrets/istio" || !m.ReadOnly {
		t.Errorf("root cert mount %+v", m)
	}
	if m := mounts["horizon-work"]; m.MountPath != "/var/run/horizon" || m.ReadOnly {
		t.Errorf("work mount %+v", m)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range p.Spec.Volumes {
		vols[v.Name] = v
	}
	if v := vols["istio-token"].Projected; v == nil || len(v.Sources) != 1 || v.Sources[0].ServiceAccountToken == nil ||
		v.Sources[0].ServiceAccountToken.Audience != "istio-ca" || *v.Sources[0].ServiceAccountToken.ExpirationSeconds != 43200 ||
		v.Sources[0].ServiceAccountToken.Path != "istio-token" {
		t.Errorf("token volume %+v", vols["istio-token"])
	}
	if v := vols["istio-ca-root-cert"].ConfigMap; v == nil || v.Name != "istio-ca-root-cert" {
		t.Errorf("root cert volume %+v", vols["istio-ca-root-cert"])
	}
	if vols["horizon-work"].EmptyDir == nil {
		t.Errorf("work volume %+v", vols["horizon-work"])
	}
	if p.Labels["security.istio.io/tlsMode"] != "istio" || p.Labels["service.istio.io/canonical-name"] != "sleep" ||
		p.Labels["service.istio.io/canonical-revision"] != "latest" || p.Labels["app"] != "sleep" {
		t.Errorf("labels %v", p.Labels)
	}
	var st Status
	if err := json.Unmarshal([]byte(p.Annotations["sidecar.istio.io/status"]), &st); err != nil ||
		!slices.Equal(st.Containers, []string{"istio-proxy"}) || !slices.Equal(st.InitContainers, []string{"istio-init"}) || len(st.Volumes) != 3 {
		t.Errorf("status annotation %q (%v)", p.Annotations["sidecar.istio.io/status"], err)
	}
	if p.Annotations["kubectl.kubernetes.io/default-container"] != "sleep" {
		t.Errorf("default container %q", p.Annotations["kubectl.kubernetes.io/default-container"])
	}
	if p.Namespace != ns || p.Spec.ServiceAccountName != "sleep" {
		t.Errorf("namespace %q service account %q changed", p.Namespace, p.Spec.ServiceAccountName)
	}
}

func TestNotInjected(t *testing.T) {
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
	}{
		{"unlabelled namespace", sleepPod("other")},
		{"unknown namespace", sleepPod("nowhere")},
		{"namespace with only istio.io/rev", sleepPod("revonly")},
		{"namespace disabled", sleepPod("off")},
		{"kube-system", sleepPod("kube-system")},
		{"label inject=false", sleepPod("sample", func(p *corev1.Pod) { p.Labels["sidecar.istio.io/inject"] = "false" })},
		{"annotation inject=false", sleepPod("sample", func(p *corev1.Pod) {
			p.Annotations = map[string]string{"sidecar.istio.io/inject": "false"}
		})},
		// Our choice: the namespace owner opts in; a pod cannot opt itself in.
		{"label inject=true in an unlabelled namespace", sleepPod("other", func(p *corev1.Pod) { p.Labels["sidecar.istio.io/inject"] = "true" })},
		{"annotation inject=false wins over label true", sleepPod("sample", func(p *corev1.Pod) {
			p.Labels["sidecar.istio.io/inject"] = "true"
			p.Annotations = map[string]string{"sidecar.istio.io/inject": "false"}
		})},
		{"hostNetwork", sleepPod("sample", func(p *corev1.Pod) { p.Spec.HostNetwork = true })},
		{"status annotation only", sleepPod("sample", func(p *corev1.Pod) {
			p.Annotations = map[string]string{"sidecar.istio.io/status": "{}"}
		})},
		{"istio-proxy container present", sleepPod("sample", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "istio-proxy", Image: "istio/proxyv2"})
		})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := admit(t, cluster1(), tc.pod, nil)
			if !a.resp.Allowed || len(a.resp.Patch) != 0 || a.resp.PatchType != nil {
				t.Fatalf("want allowed without a patch, got %+v", a.resp)
			}
			if !bytes.Equal(a.raw, a.original) {
				t.Errorf("pod changed")
			}
			_, injected, reason, err := Inject(tc.pod, namespaces[tc.pod.Namespace], cluster1())
			if injected || err != nil || reason == "" {
				t.Errorf("Inject: injected %v, reason %q, err %v", injected, reason, err)
			}
		})
	}
}

func TestReinjectionChangesNothing(t *testing.T) {
	first := admit(t, cluster1(), sleepPod("sample"), nil)
	if len(first.resp.Patch) == 0 {
		t.Fatal("not injected")
	}
	again := admit(t, cluster1(), first.pod, nil)
	if !again.resp.Allowed || len(again.resp.Patch) != 0 {
		t.Fatalf("re-injection: %+v", again.resp)
	}
	patched, injected, reason, err := Inject(first.pod, namespaces["sample"], cluster1())
	if err != nil || injected || reason != "already injected" || patched != first.pod {
		t.Errorf("Inject on an injected pod: injected %v reason %q err %v", injected, reason, err)
	}
	// Inject itself never modifies its argument.
	orig := sleepPod("sample")
	before, _ := json.Marshal(orig)
	if _, injected, _, err := Inject(orig, namespaces["sample"], cluster1()); err != nil || !injected {
		t.Fatal(injected, err)
	}
	after, _ := json.Marshal(orig)
	if !bytes.Equal(before, after) {
		t.Error("Inject modified the pod it was given")
	}
}

func TestExcludedPorts(t *testing.T) {
	for _, tc := range []struct {
		name          string
		ann           map[string]string
		probes        func(*corev1.Container)
		cfg           func(*Config)
		inbound       string
		outbound      string
		warnings      int
		noOutboundArg bool
	}{
		{name: "defaults", inbound: "15021,15090", noOutboundArg: true},
		{name: "annotations", ann: map[string]string{
			"traffic.sidecar.istio.io/excludeInboundPorts":  "9090, 8080,",
			"traffic.sidecar.istio.io/excludeOutboundPorts": "5432,6379,5432",
		}, inbound: "8080,9090,15021,15090", outbound: "5432,6379"},
		{name: "empty annotations", ann: map[string]string{
			"traffic.sidecar.istio.io/excludeInboundPorts":  "",
			"traffic.sidecar.istio.io/excludeOutboundPorts": " ",
		}, inbound: "15021,15090", noOutboundArg: true},
		{name: "probe ports", probes: func(c *corev1.Container) {
			c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}}
			c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8081)}}}
			c.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9000}}}
		}, inbound: "5000,8081,9000,15021,15090", noOutboundArg: true, warnings: 1},
		{name: "status port whatever the config", cfg: func(c *Config) { c.ExcludeInboundPorts = []int32{9090} },
			inbound: "9090,15021", noOutboundArg: true},
		{name: "probe on an unknown named port", probes: func(c *corev1.Container) {
			c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("nope")}}}
			c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
		}, inbound: "15021,15090", noOutboundArg: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := sleepPod("sample", func(p *corev1.Pod) {
				p.Annotations = tc.ann
				if tc.probes != nil {
					tc.probes(&p.Spec.Containers[0])
				}
			})
			cfg := cluster1()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			a := admit(t, cfg, pod, nil)
			if !a.resp.Allowed || len(a.resp.Patch) == 0 {
				t.Fatalf("not injected: %+v", a.resp)
			}
			init := container(t, a.pod.Spec.InitContainers, "istio-init")
			if got, _ := flag(init.Args, "--exclude-inbound-port"); got != tc.inbound {
				t.Errorf("--exclude-inbound-port %q, want %q (%v)", got, tc.inbound, init.Args)
			}
			got, ok := flag(init.Args, "--exclude-outbound-port")
			if ok == tc.noOutboundArg || got != tc.outbound {
				t.Errorf("--exclude-outbound-port %q (present %v), want %q (%v)", got, ok, tc.outbound, init.Args)
			}
			if len(a.resp.Warnings) != tc.warnings {
				t.Errorf("warnings %q, want %d", a.resp.Warnings, tc.warnings)
			}
		})
	}
}

func TestRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{"inbound not a number", sleepPod("sample", func(p *corev1.Pod) {
			p.Annotations = map[string]string{"traffic.sidecar.istio.io/excludeInboundPorts": "8080,http"}
		}), `traffic.sidecar.istio.io/excludeInboundPorts="8080,http": "http" is not a port`},
		{"outbound out of range", sleepPod("sample", func(p *corev1.Pod) {
			p.Annotations = map[string]string{"traffic.sidecar.istio.io/excludeOutboundPorts": "70000"}
		}), `traffic.sidecar.istio.io/excludeOutboundPorts="70000"`},
		{"outbound zero", sleepPod("sample", func(p *corev1.Pod) {
			p.Annotations = map[string]string{"traffic.sidecar.istio.io/excludeOutboundPorts": "0"}
		}), `traffic.sidecar.istio.io/excludeOutboundPorts="0"`},
		{"outbound negative", sleepPod("sample", func(p *corev1.Pod) {
			p.Annotations = map[string]string{"traffic.sidecar.istio.io/excludeOutboundPorts": "-1"}
		}), `excludeOutboundPorts`},
		{"inject label not a boolean", sleepPod("sample", func(p *corev1.Pod) { p.Labels["sidecar.istio.io/inject"] = "maybe" }),
			`label sidecar.istio.io/inject="maybe"`},
		{"volume name taken", sleepPod("sample", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "istio-token"}}
		}), "volume named istio-token"},
		{"namespace lookup fails", sleepPod("broken"), "looking up namespace broken: informer not synced"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := admit(t, cluster1(), tc.pod, nil)
			if a.resp.Allowed || len(a.resp.Patch) != 0 || a.resp.Result == nil {
				t.Fatalf("want refused, got %+v", a.resp)
			}
			if !strings.Contains(a.resp.Result.Message, tc.want) || a.resp.Result.Code < 400 {
				t.Errorf("refusal %d %q, want one containing %q", a.resp.Result.Code, a.resp.Result.Message, tc.want)
			}
		})
	}
	// The annotation is read only when injecting.
	a := admit(t, cluster1(), sleepPod("other", func(p *corev1.Pod) {
		p.Annotations = map[string]string{"traffic.sidecar.istio.io/excludeInboundPorts": "junk"}
	}), nil)
	if !a.resp.Allowed {
		t.Errorf("pod in an unlabelled namespace refused: %+v", a.resp.Result)
	}
}

func TestCluster2(t *testing.T) {
	cfg := cluster2()
	a := admit(t, cfg, sleepPod("sample"), nil)
	if len(a.resp.Patch) == 0 {
		t.Fatalf("not injected: %+v", a.resp)
	}
	checkInjected(t, a.pod, cfg, "sample")
	proxy := container(t, a.pod.Spec.Containers, "istio-proxy")
	for flagName, want := range map[string]string{
		"--cluster-id": "cluster2", "--network": "network2",
		"--discovery-address": "203.0.113.10:15443",
		"--discovery-san":     "outbound_.15012_._.horizon.istio-system.svc.cluster.local",
	} {
		if got, _ := flag(proxy.Args, flagName); got != want {
			t.Errorf("%s = %q, want %q", flagName, got, want)
		}
	}
	if a.pod.Labels["topology.istio.io/network"] != "network2" || !slices.Contains(proxy.Args, "topology.istio.io/network=network2") {
		t.Errorf("network label %v / args %v", a.pod.Labels, proxy.Args)
	}
	// cluster1 has no network and no SAN: no flags for them.
	b := admit(t, cluster1(), sleepPod("sample"), nil)
	p1 := container(t, b.pod.Spec.Containers, "istio-proxy")
	if _, ok := flag(p1.Args, "--network"); ok {
		t.Errorf("cluster1 proxy has --network: %v", p1.Args)
	}
	if _, ok := flag(p1.Args, "--discovery-san"); ok {
		t.Errorf("cluster1 proxy has --discovery-san: %v", p1.Args)
	}
	// A pod's own network label wins.
	c := admit(t, cfg, sleepPod("sample", func(p *corev1.Pod) { p.Labels["topology.istio.io/network"] = "edge" }), nil)
	if got, _ := flag(container(t, c.pod.Spec.Containers, "istio-proxy").Args, "--network"); got != "edge" || c.pod.Labels["topology.istio.io/network"] != "edge" {
		t.Errorf("--network %q, label %q", got, c.pod.Labels["topology.istio.io/network"])
	}
}

// The patch touches only what injection adds: fields this build does not
// know (a newer API server's) survive.
func TestPatchKeepsUnknownFields(t *testing.T) {
	pod := sleepPod("sample")
	raw, _ := json.Marshal(pod)
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	spec := doc["spec"].(map[string]any)
	spec["futureField"] = map[string]any{"x": 1.0}
	spec["containers"].([]any)[0].(map[string]any)["futureContainerField"] = "kept"
	raw, _ = json.Marshal(doc)
	a := admit(t, cluster1(), pod, raw)
	if len(a.resp.Patch) == 0 {
		t.Fatal("not injected")
	}
	for _, want := range []string{`"futureField":{"x":1}`, `"futureContainerField":"kept"`} {
		if !bytes.Contains(a.raw, []byte(want)) {
			t.Errorf("lost %s:\n%s", want, a.raw)
		}
	}
	var ops []Operation
	if err := json.Unmarshal(a.resp.Patch, &ops); err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		if op.Op != "add" {
			t.Errorf("patch %s %s: injection should only add", op.Op, op.Path)
		}
	}
	if !slices.ContainsFunc(ops, func(o Operation) bool { return o.Path == "/metadata/labels/security.istio.io~1tlsMode" }) {
		t.Errorf("no escaped label path in %s", a.resp.Patch)
	}
}

func TestHandlerBadRequests(t *testing.T) {
	h := Handler(cluster1(), lookup, nil)
	valid := func(mut func(*admissionv1.AdmissionReview)) []byte {
		raw, _ := json.Marshal(sleepPod("sample"))
		r := admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{UID: "u1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				Namespace: "sample", Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw}}}
		if mut != nil {
			mut(&r)
		}
		b, _ := json.Marshal(r)
		return b
	}
	for _, tc := range []struct {
		name   string
		method string
		ct     string
		body   []byte
		code   int
		want   string
	}{
		{"GET", http.MethodGet, "application/json", nil, 405, "POST an AdmissionReview"},
		{"no content type", "", "", valid(nil), 415, "want application/json"},
		{"yaml", "", "application/yaml", valid(nil), 415, "want application/json"},
		{"too big", "", "application/json", append(valid(nil), bytes.Repeat([]byte(" "), MaxRequestBytes)...), 413, "over 1048576 bytes"},
		{"not JSON", "", "application/json", []byte("{"), 400, "malformed AdmissionReview"},
		{"trailing garbage", "", "application/json", append(valid(nil), "x"...), 400, "malformed AdmissionReview"},
		{"wrong type", "", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":"x"}`), 400, "malformed"},
		{"v1beta1", "", "application/json", valid(func(r *admissionv1.AdmissionReview) { r.APIVersion = "admission.k8s.io/v1beta1" }), 400, `want admission.k8s.io/v1 AdmissionReview`},
		{"not a review", "", "application/json", []byte(`{"apiVersion":"v1","kind":"Pod"}`), 400, `kind "Pod"`},
		{"no request", "", "application/json", valid(func(r *admissionv1.AdmissionReview) { r.Request = nil }), 400, "without a request"},
		{"no uid", "", "application/json", valid(func(r *admissionv1.AdmissionReview) { r.Request.UID = "" }), 400, "without a request or its uid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			req := httptest.NewRequest(method, WebhookPath, bytes.NewReader(tc.body))
			if tc.ct != "" {
				req.Header.Set("Content-Type", tc.ct)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.want) {
				t.Errorf("HTTP %d %q, want %d containing %q", rec.Code, rec.Body, tc.code, tc.want)
			}
		})
	}
	// A charset parameter is fine.
	if rec := post(h, valid(nil), "application/json; charset=utf-8"); rec.Code != 200 {
		t.Errorf("charset: HTTP %d %s", rec.Code, rec.Body)
	}
}

func TestHandlerOtherRequests(t *testing.T) {
	raw, _ := json.Marshal(sleepPod("sample"))
	for _, tc := range []struct {
		name    string
		mut     func(*admissionv1.AdmissionRequest)
		allowed bool
		want    string
	}{
		{"update", func(r *admissionv1.AdmissionRequest) { r.Operation = admissionv1.Update }, true, ""},
		{"deployment", func(r *admissionv1.AdmissionRequest) {
			r.Kind = metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
		}, true, ""},
		{"subresource", func(r *admissionv1.AdmissionRequest) { r.SubResource = "status" }, true, ""},
		{"no object", func(r *admissionv1.AdmissionRequest) { r.Object.Raw = nil }, false, "no object"},
		{"object not a pod", func(r *admissionv1.AdmissionRequest) { r.Object.Raw = []byte(`{"spec":{"containers":"x"}}`) }, false, "not a Pod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &admissionv1.AdmissionRequest{UID: "u2", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				Namespace: "sample", Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw}}
			tc.mut(r)
			body, _ := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: r})
			rec := post(Handler(cluster1(), lookup, nil), body, "application/json")
			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || rec.Code != 200 || out.Response == nil {
				t.Fatalf("HTTP %d %s (%v)", rec.Code, rec.Body, err)
			}
			resp := out.Response
			if resp.UID != "u2" || resp.Allowed != tc.allowed || len(resp.Patch) != 0 {
				t.Errorf("response %+v", resp)
			}
			if tc.want != "" && (resp.Result == nil || !strings.Contains(resp.Result.Message, tc.want)) {
				t.Errorf("result %+v, want %q", resp.Result, tc.want)
			}
		})
	}
}

func TestHandlerMisconfigured(t *testing.T) {
	cfg := cluster1()
	cfg.DiscoveryAddress = "no-port"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "DiscoveryAddress") {
		t.Fatalf("Validate: %v", err)
	}
	a := admit(t, cfg, sleepPod("sample"), nil)
	if a.resp.Allowed || a.resp.Result == nil || a.resp.Result.Code != 500 || !strings.Contains(a.resp.Result.Message, "DiscoveryAddress") {
		t.Errorf("misconfigured injector: %+v", a.resp)
	}
	// A pod that would not be injected anyway is still let through? No:
	// the injector cannot tell, so it refuses uniformly; the webhook's
	// namespace selector keeps other namespaces away from it.
	if _, _, _, err := Inject(sleepPod("sample"), namespaces["sample"], cfg); err == nil {
		t.Error("Inject accepted an invalid config")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := cluster2().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.ProxyImage = "" }, "ProxyImage"},
		{func(c *Config) { c.ClusterID = "" }, "ClusterID"},
		{func(c *Config) { c.DiscoveryAddress = "h:0" }, "DiscoveryAddress"},
		{func(c *Config) { c.DiscoveryAddress = ":15012" }, "DiscoveryAddress"},
		{func(c *Config) { c.ProxyUID = 0 }, "ProxyUID"},
		{func(c *Config) { c.Network = "$(HOME)" }, "Network"},
		{func(c *Config) { c.DiscoverySAN = "a b" }, "DiscoverySAN"},
		{func(c *Config) { c.ExcludeInboundPorts = []int32{0} }, "ExcludeInboundPorts"},
		{func(c *Config) { c.ImagePullPolicy = "Sometimes" }, "ImagePullPolicy"},
		{func(c *Config) { c.TrustDomain = "td/x" }, "TrustDomain"},
		{func(c *Config) { c.TrustDomain = `evil"domain` }, "TrustDomain"},
	} {
		c := cluster2()
		tc.mut(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate: %v, want an error naming %s", err, tc.want)
		}
	}
}

// Whoever reaches the webhook decides what each request logs: a flood of
// refused pods is one line per namespace per interval, not one per pod.
func TestRefusalLogsAreRateLimited(t *testing.T) {
	var buf bytes.Buffer
	h := Handler(cluster1(), lookup, slog.New(slog.NewTextHandler(&buf, nil)))
	for i := range 1000 {
		pod := sleepPod("sample", func(p *corev1.Pod) {
			p.Annotations = map[string]string{"traffic.sidecar.istio.io/excludeInboundPorts": "junk" + strconv.Itoa(i)}
		})
		raw, _ := json.Marshal(pod)
		body, _ := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{UID: types.UID("u"), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: "sample",
				Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw}},
		})
		if rec := post(h, body, "application/json"); rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d", rec.Code)
		}
	}
	if n := strings.Count(buf.String(), "pod refused"); n != 1 {
		t.Fatalf("%d log lines for 1000 refused pods of one namespace, want 1:\n%.500s", n, buf.String())
	}
}
