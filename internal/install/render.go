package install

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Names of the objects the installer creates.
const (
	DiscoveryName   = "horizon"
	GatewayName     = "horizon-eastwestgateway"
	MeshConfigMap   = "istio" // Istio's name: meshNetworks lives there
	RootCertMap     = "istio-ca-root-cert"
	InjectionLabel  = "istio-injection"
	GatewayLabelKey = "istio"
	GatewayLabelVal = "eastwestgateway"
)

// Ports of discovery.
const (
	PortXDS     = 15010
	PortSecure  = 15012
	PortOps     = 15014
	PortWebhook = 15017
	PortMTLS    = 15443 // the gateway's AUTO_PASSTHROUGH port
)

// Render returns every object s needs, in apply order (namespaces and
// RBAC before the workloads that use them). s must be valid.
func Render(s Settings) ([]runtime.Object, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	out := []runtime.Object{namespace(s)}
	if s.Remote {
		out = append(out, remoteObjects(s)...)
	} else {
		out = append(out, primaryObjects(s)...)
	}
	if s.Gateway {
		out = append(out, gatewayObjects(s)...)
	}
	for _, o := range out {
		setManaged(o)
	}
	return out, nil
}

func objMeta(name, ns string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{}}
}

// setManaged labels an object as the installer's.
func setManaged(o runtime.Object) {
	m, err := metaAccessor(o)
	if err != nil {
		panic(err) // every rendered type is a metav1.Object
	}
	l := m.GetLabels()
	if l == nil {
		l = map[string]string{}
	}
	l[ManagedByLabel] = ManagedBy
	m.SetLabels(l)
}

func metaAccessor(o runtime.Object) (metav1.Object, error) {
	m, ok := o.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no object metadata", o)
	}
	return m, nil
}

func namespace(s Settings) *corev1.Namespace {
	ns := &corev1.Namespace{TypeMeta: typeMeta("v1", "Namespace"), ObjectMeta: objMeta(s.Namespace, "")}
	if s.Network != "" {
		// The walkthrough labels istio-system with its cluster's network.
		ns.Labels["topology.istio.io/network"] = s.Network
	}
	return ns
}

func typeMeta(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

// container security: non-root, no privilege escalation, read-only root,
// every capability dropped.
func restricted(uid int64) *corev1.SecurityContext {
	f, t := false, true
	return &corev1.SecurityContext{
		RunAsUser: &uid, RunAsGroup: &uid, RunAsNonRoot: &t, AllowPrivilegeEscalation: &f,
		ReadOnlyRootFilesystem: &t, Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// memoryLimitEnv sets GOMEMLIMIT to the container's memory limit (bytes):
// the Go runtime then collects harder as the heap nears the limit instead
// of letting it grow to twice the live set (GOGC=100) and being OOM-killed
// (docs/performance.md: Horizon's peak RSS is mostly that headroom).
func memoryLimitEnv(container string) corev1.EnvVar {
	return corev1.EnvVar{Name: "GOMEMLIMIT", ValueFrom: &corev1.EnvVarSource{
		ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: container, Resource: "limits.memory", Divisor: resource.MustParse("1")}}}
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}
