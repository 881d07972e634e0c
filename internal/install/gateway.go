package install

import (
	_ "embed"
	"fmt"

	networkingv1 "istio.io/api/networking/v1alpha3"
	istiov1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/internal/inject"
)

// gatewayCRD and destinationRuleCRD are Istio's CRDs as istio.io/api
// ships them (scripts/istio-crds.sh extracts them; a test keeps them in
// step).
var (
	//go:embed gateway-crd.yaml
	gatewayCRD []byte
	//go:embed destinationrule-crd.yaml
	destinationRuleCRD []byte
)

// Names of the Istio CRDs install can apply.
const (
	GatewayCRDName         = "gateways.networking.istio.io"
	DestinationRuleCRDName = "destinationrules.networking.istio.io"
)

// IstioCRD returns one of Istio's CustomResourceDefinitions install
// carries (GatewayCRDName, DestinationRuleCRDName), unstructured: Horizon
// does not otherwise need the apiextensions types.
func IstioCRD(name string) (*unstructured.Unstructured, error) {
	raw := map[string][]byte{GatewayCRDName: gatewayCRD, DestinationRuleCRDName: destinationRuleCRD}[name]
	if raw == nil {
		return nil, fmt.Errorf("no embedded CRD %s", name)
	}
	crd := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(raw, &crd.Object); err != nil {
		return nil, fmt.Errorf("embedded CRD %s: %w", name, err)
	}
	if crd.GetKind() != "CustomResourceDefinition" || crd.GetName() != name {
		return nil, fmt.Errorf("embedded CRD %s: found %s %s", name, crd.GetKind(), crd.GetName())
	}
	return crd, nil
}

func gatewayLabels() map[string]string {
	return map[string]string{"app": GatewayName, GatewayLabelKey: GatewayLabelVal}
}

// gatewayObjects: the east-west gateway (`horizon-agent agent --router`), its
// LoadBalancer Service labelled with the network (discovery finds the
// gateway's address there, no manual edit), and, with ExposeServices, the
// walkthrough's AUTO_PASSTHROUGH Gateway.
func gatewayObjects(s Settings) []runtime.Object {
	svc := &corev1.Service{TypeMeta: typeMeta("v1", "Service"), ObjectMeta: objMeta(GatewayName, s.Namespace),
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": GatewayName},
			Ports: []corev1.ServicePort{{Name: "tls", Port: PortMTLS, TargetPort: intstr.FromInt32(PortMTLS)}}}}
	if s.Network != "" {
		svc.Labels["topology.istio.io/network"] = s.Network
	}
	out := []runtime.Object{
		&corev1.ServiceAccount{TypeMeta: typeMeta("v1", "ServiceAccount"), ObjectMeta: objMeta(GatewayName, s.Namespace)},
		gatewayDeployment(s), svc,
	}
	if s.ExposeServices {
		out = append(out, &istiov1.Gateway{TypeMeta: typeMeta("networking.istio.io/v1", "Gateway"),
			ObjectMeta: objMeta("cross-network-gateway", s.Namespace),
			Spec: networkingv1.Gateway{
				Selector: map[string]string{GatewayLabelKey: GatewayLabelVal},
				Servers: []*networkingv1.Server{{
					Port:  &networkingv1.Port{Number: PortMTLS, Name: "tls", Protocol: "TLS"},
					Tls:   &networkingv1.ServerTLSSettings{Mode: networkingv1.ServerTLSSettings_AUTO_PASSTHROUGH},
					Hosts: []string{"*.local"},
				}},
			}})
	}
	return out
}

func gatewayDeployment(s Settings) *appsv1.Deployment {
	replicas := int32(1)
	discovery := s.DiscoveryAddress
	if discovery == "" {
		discovery = fmt.Sprintf("%s.%s.svc:%d", DiscoveryName, s.Namespace, PortSecure)
	}
	args := []string{"agent", "--router", "--label", GatewayLabelKey + "=" + GatewayLabelVal,
		"--namespace", s.Namespace, "--service-account", GatewayName, "--cluster-id", s.ClusterID,
		"--ip", "$(INSTANCE_IP)", "--discovery-address", discovery,
		"--root-cert", "/var/run/secrets/istio/root-cert.pem", "--token-file", "/var/run/secrets/tokens/istio-token",
		"--work-dir", "/var/run/horizon", "--envoy-log", "-"}
	if s.Network != "" {
		args = append(args, "--network", s.Network)
	}
	if s.Remote {
		// Through the primary's gateway, discovery is reached by its mesh
		// SNI, and its certificate names it so.
		args = append(args, "--discovery-san", fmt.Sprintf("outbound_.%d_._.%s.%s.svc.cluster.local", PortSecure, DiscoveryName, s.Namespace))
	}
	expiry := int64(43200)
	return &appsv1.Deployment{TypeMeta: typeMeta("apps/v1", "Deployment"), ObjectMeta: objMeta(GatewayName, s.Namespace),
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": GatewayName}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: gatewayLabels()},
				Spec: corev1.PodSpec{
					ServiceAccountName: GatewayName,
					Containers: []corev1.Container{{
						Name: "istio-proxy", Image: s.ProxyImage, ImagePullPolicy: corev1.PullPolicy(s.ImagePullPolicy),
						Command: []string{"horizon-agent"}, Args: args,
						Env:   []corev1.EnvVar{fieldEnv("INSTANCE_IP", "status.podIP")},
						Ports: []corev1.ContainerPort{{Name: "tls", ContainerPort: PortMTLS}},
						// Ready once its Envoy has its listeners (the agent's
						// status port, as in an injected sidecar): a rollout
						// replaces the old gateway only then.
						ReadinessProbe:  inject.ReadinessProbe(),
						SecurityContext: restricted(1337),
						VolumeMounts: []corev1.VolumeMount{
							{Name: "istio-token", MountPath: "/var/run/secrets/tokens", ReadOnly: true},
							{Name: "istiod-ca-cert", MountPath: "/var/run/secrets/istio", ReadOnly: true},
							{Name: "work", MountPath: "/var/run/horizon"},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "istio-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{
							ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: "istio-ca", ExpirationSeconds: &expiry, Path: "istio-token"}}}}}},
						{Name: "istiod-ca-cert", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: RootCertMap}}}},
						{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					},
				},
			},
		}}
}
