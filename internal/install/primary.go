package install

import (
	"fmt"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// WebhookName is the MutatingWebhookConfiguration discovery keeps the
// caBundle of.
const WebhookName = "horizon-sidecar-injector"

// discoveryLabels select discovery's pods. tlsMode=istio makes them mesh
// endpoints, so that network gateways can carry remote proxies' mTLS to
// discovery (the walkthrough's remotePilotAddress).
func discoveryLabels() map[string]string {
	return map[string]string{"app": DiscoveryName, "security.istio.io/tlsMode": "istio"}
}

func primaryObjects(s Settings) []runtime.Object {
	out := []runtime.Object{
		&corev1.ServiceAccount{TypeMeta: typeMeta("v1", "ServiceAccount"), ObjectMeta: objMeta(DiscoveryName, s.Namespace)},
		discoveryClusterRole(s),
		&rbacv1.ClusterRoleBinding{TypeMeta: typeMeta("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
			ObjectMeta: objMeta(DiscoveryName+"-"+s.Namespace, ""),
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: DiscoveryName + "-discovery"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: DiscoveryName, Namespace: s.Namespace}}},
		discoveryRole(s),
		&rbacv1.RoleBinding{TypeMeta: typeMeta("rbac.authorization.k8s.io/v1", "RoleBinding"),
			ObjectMeta: objMeta(DiscoveryName, s.Namespace),
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: DiscoveryName},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: DiscoveryName, Namespace: s.Namespace}}},
	}
	if s.MeshNetworks != "" {
		out = append(out, &corev1.ConfigMap{TypeMeta: typeMeta("v1", "ConfigMap"), ObjectMeta: objMeta(MeshConfigMap, s.Namespace),
			Data: map[string]string{"meshNetworks": s.MeshNetworks}})
	}
	out = append(out, discoveryService(s))
	if s.IstiodService {
		out = append(out, istiodService(s))
	}
	out = append(out, discoveryDeployment(s))
	if s.Replicas > 1 {
		one := intstr.FromInt32(1)
		out = append(out, &policyv1.PodDisruptionBudget{TypeMeta: typeMeta("policy/v1", "PodDisruptionBudget"),
			ObjectMeta: objMeta(DiscoveryName, s.Namespace),
			Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &one,
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": DiscoveryName}}}})
	}
	if s.InjectionWebhook {
		out = append(out, injectionWebhook(s))
	}
	return out
}

// discoveryClusterRole is the least discovery needs cluster-wide: read the
// registry, Istio Gateways and DestinationRules, review tokens, publish the root certificate
// ConfigMap in every namespace, and keep its own webhook's caBundle (only
// when the webhook is installed).
func discoveryClusterRole(s Settings) *rbacv1.ClusterRole {
	read := []string{"get", "list", "watch"}
	rules := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"services", "endpoints", "pods", "nodes", "namespaces"}, Verbs: read},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
		{APIGroups: []string{"networking.istio.io"}, Resources: []string{"gateways", "destinationrules"}, Verbs: read},
		{APIGroups: []string{"security.istio.io"}, Resources: []string{"peerauthentications"}, Verbs: read},
		{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch", "create", "update"}},
	}
	if s.InjectionWebhook {
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations"},
			ResourceNames: []string{WebhookName}, Verbs: []string{"get", "update", "patch"}})
	}
	return &rbacv1.ClusterRole{TypeMeta: typeMeta("rbac.authorization.k8s.io/v1", "ClusterRole"),
		ObjectMeta: objMeta(DiscoveryName+"-discovery", ""), Rules: rules}
}

// discoveryRole: Secrets only in its own namespace — remote clusters'
// kubeconfigs, cacerts, and the shared self-signed root it may create.
func discoveryRole(s Settings) *rbacv1.Role {
	return &rbacv1.Role{TypeMeta: typeMeta("rbac.authorization.k8s.io/v1", "Role"), ObjectMeta: objMeta(DiscoveryName, s.Namespace),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch", "create"}},
		}}
}

// discoveryService exposes the authenticated xDS port (15012), ops and
// the webhook (only with InjectionWebhook); the plaintext xDS port only
// with PlaintextXDS.
func discoveryService(s Settings) *corev1.Service {
	return &corev1.Service{TypeMeta: typeMeta("v1", "Service"), ObjectMeta: objMeta(DiscoveryName, s.Namespace),
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": DiscoveryName}, Ports: discoveryServicePorts(s, "tls-xds")}}
}

// IstiodName is Istio's control-plane Service, which pods Istio injected
// dial (istiod.<namespace>.svc:15012).
const IstiodName = "istiod"

// istiodService is discovery's Service under Istio's name, with the port
// names of the istiod Service in Istio's chart (15012 https-dns, 443
// https-webhook to 15017, 15014 http-monitoring; 15010 grpc-xds only with
// PlaintextXDS, 443 only with InjectionWebhook), selecting discovery's pods.
func istiodService(s Settings) *corev1.Service {
	return &corev1.Service{TypeMeta: typeMeta("v1", "Service"), ObjectMeta: objMeta(IstiodName, s.Namespace),
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": DiscoveryName}, Ports: discoveryServicePorts(s, "https-dns")}}
}

func discoveryServicePorts(s Settings, secureName string) []corev1.ServicePort {
	var ports []corev1.ServicePort
	if s.PlaintextXDS {
		ports = append(ports, corev1.ServicePort{Name: "grpc-xds", Port: PortXDS, TargetPort: intstr.FromInt32(PortXDS)})
	}
	ports = append(ports,
		corev1.ServicePort{Name: secureName, Port: PortSecure, TargetPort: intstr.FromInt32(PortSecure)},
		corev1.ServicePort{Name: "http-monitoring", Port: PortOps, TargetPort: intstr.FromInt32(PortOps)})
	if s.InjectionWebhook {
		ports = append(ports, corev1.ServicePort{Name: "https-webhook", Port: 443, TargetPort: intstr.FromInt32(PortWebhook)})
	}
	return ports
}

func discoveryDeployment(s Settings) *appsv1.Deployment {
	replicas := s.Replicas
	svc := DiscoveryName + "." + s.Namespace + ".svc"
	// Without PlaintextXDS discovery does not listen on 15010 at all: a pod
	// IP reaches no unauthenticated port either.
	xdsAddr := ""
	ports := []corev1.ContainerPort{{Name: "tls-xds", ContainerPort: PortSecure}, {Name: "http-monitoring", ContainerPort: PortOps}}
	// Without InjectionWebhook discovery serves no webhook (an empty
	// --inject-addr) and never touches a webhook configuration.
	injectAddr := ""
	if s.InjectionWebhook {
		injectAddr = fmt.Sprintf(":%d", PortWebhook)
		ports = append(ports, corev1.ContainerPort{Name: "https-webhook", ContainerPort: PortWebhook})
	}
	if s.PlaintextXDS {
		xdsAddr = fmt.Sprintf(":%d", PortXDS)
		ports = append([]corev1.ContainerPort{{Name: "grpc-xds", ContainerPort: PortXDS}}, ports...)
	}
	args := []string{"discovery", "--cluster-id", s.ClusterID, "--namespace", s.Namespace,
		"--xds-addr", xdsAddr, "--secure-addr", ":15012", "--http-addr", ":15014",
		"--trust-domain", s.TrustDomain,
		"--default-mtls-mode", s.DefaultMTLSMode, "--outbound-traffic-policy", s.OutboundTrafficPolicy,
		"--inject-addr", injectAddr, "--proxy-image", s.ProxyImage,
		"--secure-san", svc + "," + svc + ".cluster.local,istiod." + s.Namespace + ".svc," +
			"outbound_.15012_._." + DiscoveryName + "." + s.Namespace + ".svc.cluster.local"}
	if s.Network != "" {
		args = append(args, "--network", s.Network)
	}
	if ttl := s.StaleEndpointTTL.Duration; ttl > 0 {
		args = append(args, "--stale-endpoint-ttl", ttl.String())
	}
	if s.LocalityFailover {
		args = append(args, "--locality-failover")
	}
	probe := func(h corev1.ProbeHandler, period int32) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: h, PeriodSeconds: period, TimeoutSeconds: 2, FailureThreshold: 3}
	}
	labels := discoveryLabels()
	return &appsv1.Deployment{TypeMeta: typeMeta("apps/v1", "Deployment"), ObjectMeta: objMeta(DiscoveryName, s.Namespace),
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": DiscoveryName}},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxUnavailable: ptrTo(intstr.FromInt32(0)), MaxSurge: ptrTo(intstr.FromInt32(1))}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName: DiscoveryName,
					Containers: []corev1.Container{{
						Name: "discovery", Image: s.DiscoveryImage, ImagePullPolicy: corev1.PullPolicy(s.ImagePullPolicy),
						Command: []string{"horizon-discovery"}, Args: args,
						Ports: ports,
						// Readiness is /ready (synced); liveness only that the
						// process answers: a control plane whose API server is
						// away is not helped by a restart.
						ReadinessProbe: probe(corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(PortOps)}}, 5),
						LivenessProbe:  probe(corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(PortOps)}}, 15),
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")},
						},
						Env:             []corev1.EnvVar{memoryLimitEnv("discovery")},
						SecurityContext: restricted(1337),
					}},
				},
			},
		}}
}

// injectionWebhook sends Pod creations in namespaces labelled
// istio-injection=enabled to discovery. Failing closed: a pod created while
// discovery is down waits rather than starting outside the mesh.
func injectionWebhook(s Settings) *admissionv1.MutatingWebhookConfiguration {
	path, port := "/inject", int32(443)
	fail, none, never := admissionv1.Fail, admissionv1.SideEffectClassNone, admissionv1.NeverReinvocationPolicy
	timeout := int32(10)
	scope := admissionv1.NamespacedScope
	return &admissionv1.MutatingWebhookConfiguration{
		TypeMeta: typeMeta("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"), ObjectMeta: objMeta(WebhookName, ""),
		Webhooks: []admissionv1.MutatingWebhook{{
			Name:         "sidecar-injector.horizon.mesh",
			ClientConfig: admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: s.Namespace, Name: DiscoveryName, Path: &path, Port: &port}},
			Rules: []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: &scope}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{InjectionLabel: "enabled"}},
			ObjectSelector:          &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "sidecar.istio.io/inject", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}}}},
			FailurePolicy:           &fail,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      &never,
		}},
	}
}

func ptrTo[T any](v T) *T { return &v }
