package inject

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/horizonmesh/horizon/internal/clip"
)

// Status is the value of the sidecar.istio.io/status annotation: what was
// injected (Istio's keys), so that tools and a later removal know.
type Status struct {
	InitContainers   []string `json:"initContainers"`
	Containers       []string `json:"containers"`
	Volumes          []string `json:"volumes"`
	ImagePullSecrets []string `json:"imagePullSecrets"`
	Revision         string   `json:"revision"`
	Injector         string   `json:"injector"`
}

// systemNamespaces are never injected, whatever their labels say.
var systemNamespaces = map[string]bool{"kube-system": true, "kube-public": true, "kube-node-lease": true}

// Inject returns pod with the sidecar added when policy says so. The pod
// given is not modified. Not injecting is not an error: patched is then
// pod itself, injected false and reason says why. err is for pods that
// must be refused (an invalid injection label or annotation, a name the
// injector needs already taken) and names what is wrong.
//
// Policy: never pods with hostNetwork, pods in kube-system, kube-public and
// kube-node-lease, or pods already injected (an istio-proxy container or
// the sidecar.istio.io/status annotation: re-injection changes nothing). A
// pod labelled or annotated sidecar.istio.io/inject=false is not injected.
// Otherwise a pod is injected exactly when its namespace is labelled
// istio-injection=enabled (istio.io/rev may be absent or anything).
// sidecar.istio.io/inject=true does not opt a pod in from an unlabelled
// namespace: injection is the namespace owner's choice, the webhook's
// namespace selector sends only enabled namespaces, and Handler must
// decide the same way whatever the selector.
func Inject(pod *corev1.Pod, ns *corev1.Namespace, cfg Config) (patched *corev1.Pod, injected bool, reason string, err error) {
	r, err := inject(pod, ns, cfg)
	if err != nil {
		return nil, false, "", err
	}
	return r.pod, r.injected, r.reason, nil
}

type result struct {
	pod      *corev1.Pod
	injected bool
	reason   string
	warnings []string // for the admission response (shown by kubectl)
}

func inject(pod *corev1.Pod, ns *corev1.Namespace, cfg Config) (result, error) {
	if pod == nil {
		return result{}, fmt.Errorf("no pod")
	}
	if err := cfg.Validate(); err != nil {
		return result{}, err
	}
	nsName := pod.Namespace
	if ns != nil && ns.Name != "" {
		nsName = ns.Name
	}
	ok, reason, err := required(pod, ns, nsName)
	if err != nil || !ok {
		return result{pod: pod, reason: reason}, err
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name == InitContainerName {
			return result{}, fmt.Errorf("pod already has an init container named %s", InitContainerName)
		}
	}
	for _, v := range pod.Spec.Volumes {
		if v.Name == TokenVolume || v.Name == RootCertVolume || v.Name == WorkVolume {
			return result{}, fmt.Errorf("pod already has a volume named %s, which the sidecar needs", v.Name)
		}
	}
	inbound, err := annotationPorts(pod, ExcludeInboundPortsAnn)
	if err != nil {
		return result{}, err
	}
	outbound, err := annotationPorts(pod, ExcludeOutboundPortsAnn)
	if err != nil {
		return result{}, err
	}
	var warnings []string
	probePorts, w := probePorts(pod)
	warnings = append(warnings, w...)
	// The sidecar's own probe port too, whatever the Config says: the
	// kubelet reaches the agent there without mTLS.
	inbound = sortedUnique(slices.Concat(cfg.ExcludeInboundPorts, inbound, probePorts, []int32{StatusPort}))
	outbound = sortedUnique(outbound)
	for _, c := range pod.Spec.Containers {
		if uid := runAsUser(pod, c); uid != nil && *uid == cfg.ProxyUID {
			warnings = append(warnings, fmt.Sprintf("container %s runs as uid %d, the proxy's: its traffic is not captured by the sidecar", clip.String(c.Name), cfg.ProxyUID))
		}
	}

	out := pod.DeepCopy()
	if out.Spec.ServiceAccountName == "" {
		// What the ServiceAccount admission plugin does before webhooks in
		// most clusters; a projected token is refused without it.
		out.Spec.ServiceAccountName = "default"
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Labels[TLSModeLabel] = "istio"
	network := out.Labels[NetworkLabel]
	if network == "" && cfg.Network != "" {
		network = cfg.Network
		out.Labels[NetworkLabel] = network
	}
	if _, ok := out.Labels[CanonicalNameLabel]; !ok {
		if name := canonicalName(pod); name != "" {
			out.Labels[CanonicalNameLabel] = name
		}
	}
	if _, ok := out.Labels[CanonicalRevisionLabel]; !ok {
		out.Labels[CanonicalRevisionLabel] = canonicalRevision(pod)
	}
	if _, ok := out.Annotations[DefaultContainerAnn]; !ok && len(pod.Spec.Containers) > 0 {
		out.Annotations[DefaultContainerAnn] = pod.Spec.Containers[0].Name
	}
	status, err := json.Marshal(Status{
		InitContainers: []string{InitContainerName}, Containers: []string{ProxyContainerName},
		Volumes: []string{TokenVolume, RootCertVolume, WorkVolume}, Revision: "default", Injector: "horizon",
	})
	if err != nil {
		return result{}, err
	}
	out.Annotations[StatusAnnotation] = string(status)

	out.Spec.InitContainers = append(out.Spec.InitContainers, initContainer(cfg, inbound, outbound))
	out.Spec.Containers = append(out.Spec.Containers, proxyContainer(cfg, out.Labels, network))
	out.Spec.Volumes = append(out.Spec.Volumes, volumes(cfg)...)
	return result{pod: out, injected: true, reason: fmt.Sprintf("namespace %s is labelled %s=enabled", clip.String(nsName), NamespaceInjectionLabel), warnings: warnings}, nil
}

// required applies the injection policy.
func required(pod *corev1.Pod, ns *corev1.Namespace, nsName string) (bool, string, error) {
	if injected(pod) {
		return false, "already injected", nil
	}
	if pod.Spec.HostNetwork {
		return false, "pod uses the host network", nil
	}
	if systemNamespaces[nsName] {
		return false, "namespace " + nsName + " is never injected", nil
	}
	for _, src := range []struct {
		kind string
		m    map[string]string
	}{{"label", pod.Labels}, {"annotation", pod.Annotations}} {
		v, ok := src.m[InjectLabel]
		if !ok {
			continue
		}
		want, valid := parseBool(v)
		if !valid {
			return false, "", fmt.Errorf("%s %s=%s: want true or false", src.kind, InjectLabel, clip.Quote(v))
		}
		if !want {
			return false, fmt.Sprintf("%s %s=false", src.kind, InjectLabel), nil
		}
	}
	var labels map[string]string
	if ns != nil {
		labels = ns.Labels
	}
	switch v := labels[NamespaceInjectionLabel]; v {
	case "enabled":
		return true, "", nil
	case "":
		return false, fmt.Sprintf("namespace %s is not labelled %s=enabled", clip.String(nsName), NamespaceInjectionLabel), nil
	default:
		return false, fmt.Sprintf("namespace %s is labelled %s=%s", clip.String(nsName), NamespaceInjectionLabel, clip.String(v)), nil
	}
}

// injected: the sidecar is there already (in either container list, so
// that a native-sidecar injection is recognised too) or was recorded.
func injected(pod *corev1.Pod) bool {
	if _, ok := pod.Annotations[StatusAnnotation]; ok {
		return true
	}
	for _, cs := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for _, c := range cs {
			if c.Name == ProxyContainerName {
				return true
			}
		}
	}
	return false
}

// parseBool accepts Istio's spellings.
func parseBool(s string) (value, ok bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "yes", "y", "on", "enabled":
		return true, true
	case "false", "no", "n", "off", "disabled":
		return false, true
	}
	return false, false
}

// annotationPorts reads a comma-separated port list annotation. Empty
// entries (a trailing comma, white space) are ignored; anything else that
// is not a port 1-65535 refuses the pod, naming the annotation.
func annotationPorts(pod *corev1.Pod, key string) ([]int32, error) {
	v, ok := pod.Annotations[key]
	if !ok {
		return nil, nil
	}
	var out []int32
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("annotation %s=%s: %s is not a port (1-65535); want a comma-separated list of ports", key, clip.Quote(v), clip.Quote(f))
		}
		out = append(out, int32(n))
	}
	return out, nil
}

// probePorts are the ports the kubelet probes (httpGet, tcpSocket, grpc of
// liveness, readiness and startup probes of the app's containers). The
// kubelet probes from the node without mTLS, so these ports are left out
// of inbound capture. A probe on a port the container also declares is
// reported: mesh clients send mTLS there, which the app does not speak.
func probePorts(pod *corev1.Pod) (ports []int32, warnings []string) {
	for _, c := range pod.Spec.Containers {
		for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
			if p == nil {
				continue
			}
			var port int32
			switch {
			case p.HTTPGet != nil:
				port = resolvePort(p.HTTPGet.Port, c)
			case p.TCPSocket != nil:
				port = resolvePort(p.TCPSocket.Port, c)
			case p.GRPC != nil:
				port = p.GRPC.Port
			}
			if port < 1 || port > 65535 || slices.Contains(ports, port) {
				continue
			}
			ports = append(ports, port)
			for _, cp := range c.Ports {
				if cp.ContainerPort == port && (cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP) {
					warnings = append(warnings, fmt.Sprintf(
						"container %s: port %d is probed by the kubelet, so it is not captured by the sidecar; mesh clients reaching it with mTLS will fail — probe a separate port", clip.String(c.Name), port))
				}
			}
		}
	}
	return ports, warnings
}

func resolvePort(p intstr.IntOrString, c corev1.Container) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return 0 // the kubelet will not find it either
}

func runAsUser(pod *corev1.Pod, c corev1.Container) *int64 {
	if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
		return c.SecurityContext.RunAsUser
	}
	if pod.Spec.SecurityContext != nil {
		return pod.Spec.SecurityContext.RunAsUser
	}
	return nil
}

// canonicalName is Istio's canonical service name: the app.kubernetes.io/name
// or app label, else the workload's name (a ReplicaSet pod's generateName
// without its hash).
func canonicalName(pod *corev1.Pod) string {
	for _, k := range []string{"app.kubernetes.io/name", "app"} {
		if v := pod.Labels[k]; v != "" {
			return v
		}
	}
	name := pod.Name
	if name == "" {
		name = strings.TrimSuffix(pod.GenerateName, "-")
		if h := pod.Labels["pod-template-hash"]; h != "" {
			name = strings.TrimSuffix(name, "-"+h)
		}
	}
	if len(validation.IsValidLabelValue(name)) > 0 {
		return ""
	}
	return name
}

func canonicalRevision(pod *corev1.Pod) string {
	for _, k := range []string{"app.kubernetes.io/version", "version"} {
		if v := pod.Labels[k]; v != "" {
			return v
		}
	}
	return "latest"
}

func initContainer(cfg Config, inbound, outbound []int32) corev1.Container {
	args := []string{"agent", "iptables", "--proxy-uid", strconv.FormatInt(cfg.ProxyUID, 10)}
	// Without the flag the command's own default (15021,15090) applies.
	if len(inbound) > 0 {
		args = append(args, "--exclude-inbound-port", joinPorts(inbound))
	}
	if len(outbound) > 0 {
		args = append(args, "--exclude-outbound-port", joinPorts(outbound))
	}
	image := cfg.InitImage
	if image == "" {
		image = cfg.ProxyImage
	}
	root := int64(0)
	return corev1.Container{
		Name: InitContainerName, Image: image, ImagePullPolicy: cfg.ImagePullPolicy,
		Command: []string{cfg.Binary}, Args: args,
		Resources: cfg.Resources,
		// iptables needs NET_ADMIN and NET_RAW, nothing else; and a
		// writable /run for its lock file.
		SecurityContext: &corev1.SecurityContext{
			RunAsUser: &root, RunAsGroup: &root, RunAsNonRoot: ptr(false),
			Privileged: ptr(false), AllowPrivilegeEscalation: ptr(false), ReadOnlyRootFilesystem: ptr(false),
			Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}, Drop: []corev1.Capability{"ALL"}},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

func proxyContainer(cfg Config, labels map[string]string, network string) corev1.Container {
	args := []string{"agent",
		"--namespace", "$(POD_NAMESPACE)", "--service-account", "$(SERVICE_ACCOUNT)",
		"--cluster-id", cfg.ClusterID, "--ip", "$(INSTANCE_IP)",
		"--discovery-address", cfg.DiscoveryAddress,
		"--root-cert", RootCertDir + "/" + cfg.RootCertKey, "--token-file", TokenFile,
		"--work-dir", WorkDir,
		// Envoy's access log in the container's log, as operators expect
		// (kubectl logs -c istio-proxy).
		"--envoy-log", "-"}
	if network != "" {
		args = append(args, "--network", escape(network))
	}
	if cfg.DiscoverySAN != "" {
		args = append(args, "--discovery-san", cfg.DiscoverySAN)
	}
	if cfg.EnvoyPath != "" {
		args = append(args, "--envoy-path", cfg.EnvoyPath)
	}
	if cfg.EnvoyLogLevel != "" {
		args = append(args, "--envoy-log-level", cfg.EnvoyLogLevel)
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		args = append(args, "--label", escape(k+"="+labels[k]))
	}
	uid := cfg.ProxyUID
	field := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}}
	}
	return corev1.Container{
		Name: ProxyContainerName, Image: cfg.ProxyImage, ImagePullPolicy: cfg.ImagePullPolicy,
		Command: []string{cfg.Binary}, Args: args,
		Env: []corev1.EnvVar{
			field("POD_NAME", "metadata.name"), field("POD_NAMESPACE", "metadata.namespace"),
			field("INSTANCE_IP", "status.podIP"), field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: TokenVolume, MountPath: TokenDir, ReadOnly: true},
			{Name: RootCertVolume, MountPath: RootCertDir, ReadOnly: true},
			{Name: WorkVolume, MountPath: WorkDir},
		},
		Resources:      cfg.Resources,
		ReadinessProbe: ReadinessProbe(),
		SecurityContext: &corev1.SecurityContext{
			RunAsUser: &uid, RunAsGroup: &uid, RunAsNonRoot: ptr(true),
			Privileged: ptr(false), AllowPrivilegeEscalation: ptr(false), ReadOnlyRootFilesystem: ptr(true),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

// ReadinessProbe is the sidecar's readiness probe (see ProbePeriodSeconds
// for the choice of its numbers); a gateway's agent is probed the same way.
func ReadinessProbe() *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: ReadyPath, Port: intstr.FromInt32(StatusPort), Scheme: corev1.URISchemeHTTP}},
		InitialDelaySeconds: ProbeInitialDelaySeconds, PeriodSeconds: ProbePeriodSeconds,
		TimeoutSeconds: ProbeTimeoutSeconds, FailureThreshold: ProbeFailureThreshold, SuccessThreshold: 1,
	}
}

func volumes(cfg Config) []corev1.Volume {
	ttl := int64(TokenTTL)
	return []corev1.Volume{
		{Name: TokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: TokenAudience, ExpirationSeconds: &ttl, Path: "istio-token"}}}}}},
		{Name: RootCertVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: cfg.RootCertConfigMap}}}},
		// The bootstrap, the SDS socket and Envoy's log.
		{Name: WorkVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
}

func sortedUnique(ps []int32) []int32 {
	out := slices.Clone(ps)
	slices.Sort(out)
	return slices.Compact(out)
}

func joinPorts(ps []int32) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

// escape keeps the kubelet from expanding $(VAR) in a value taken from the
// pod (label values cannot hold '$', but admission runs before validation).
func escape(s string) string { return strings.ReplaceAll(s, "$", "$$") }

// clip bounds what an error quotes of a user's value.
func ptr[T any](v T) *T { return &v }
