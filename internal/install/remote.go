package install

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// InjectorName names a remote cluster's sidecar injector (Deployment,
// Service, ServiceAccount, RBAC).
const InjectorName = "horizon-injector"

// remoteObjects: a remote cluster runs no discovery. Its pods join the
// primary's discovery through the primary's gateway; `horizon-discovery injector`
// gives them this cluster's CLUSTER_ID and NETWORK and that address, and
// publishes the mesh root (from the cacerts Secret the walkthrough creates
// in both clusters) in every namespace.
func remoteObjects(s Settings) []runtime.Object {
	read := []string{"get", "list", "watch"}
	webhook := injectionWebhook(s)
	webhook.Webhooks[0].ClientConfig.Service.Name = InjectorName
	return []runtime.Object{
		&corev1.ServiceAccount{TypeMeta: typeMeta("v1", "ServiceAccount"), ObjectMeta: objMeta(InjectorName, s.Namespace)},
		&rbacv1.ClusterRole{TypeMeta: typeMeta("rbac.authorization.k8s.io/v1", "ClusterRole"), ObjectMeta: objMeta(InjectorName, ""),
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: read},
				{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch", "create", "update"}},
				{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations"},
					ResourceNames: []string{WebhookName}, Verbs: []string{"get", "update", "patch"}},
			}},
		&rbacv1.ClusterRoleBinding{TypeMeta: typeMeta("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
			ObjectMeta: objMeta(InjectorName+"-"+s.Namespace, ""),
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: InjectorName},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: InjectorName, Namespace: s.Namespace}}},
		&rbacv1.Role{TypeMeta: typeMeta("rbac.authorization.k8s.io/v1", "Role"), ObjectMeta: objMeta(InjectorName, s.Namespace),
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "create"}}}},
		&rbacv1.RoleBinding{TypeMeta: typeMeta("rbac.authorization.k8s.io/v1", "RoleBinding"), ObjectMeta: objMeta(InjectorName, s.Namespace),
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: InjectorName},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: InjectorName, Namespace: s.Namespace}}},
		&corev1.Service{TypeMeta: typeMeta("v1", "Service"), ObjectMeta: objMeta(InjectorName, s.Namespace),
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": InjectorName},
				Ports: []corev1.ServicePort{{Name: "https-webhook", Port: 443, TargetPort: intstr.FromInt32(PortWebhook)}}}},
		injectorDeployment(s),
		webhook,
	}
}

func injectorDeployment(s Settings) *appsv1.Deployment {
	replicas := int32(1)
	args := []string{"injector", "--namespace", s.Namespace, "--cluster-id", s.ClusterID,
		"--trust-domain", s.TrustDomain, "--proxy-image", s.ProxyImage, "--inject-addr", fmt.Sprintf(":%d", PortWebhook),
		"--discovery-address", s.DiscoveryAddress,
		"--discovery-san", fmt.Sprintf("outbound_.%d_._.%s.%s.svc.cluster.local", PortSecure, DiscoveryName, s.Namespace)}
	if s.Network != "" {
		args = append(args, "--network", s.Network)
	}
	return &appsv1.Deployment{TypeMeta: typeMeta("apps/v1", "Deployment"), ObjectMeta: objMeta(InjectorName, s.Namespace),
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": InjectorName}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": InjectorName}},
				Spec: corev1.PodSpec{
					ServiceAccountName: InjectorName,
					Containers: []corev1.Container{{
						Name: "injector", Image: s.DiscoveryImage, ImagePullPolicy: corev1.PullPolicy(s.ImagePullPolicy),
						Command: []string{"horizon-discovery"}, Args: args,
						Ports: []corev1.ContainerPort{{Name: "https-webhook", ContainerPort: PortWebhook}},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(PortWebhook)}},
							PeriodSeconds: 5},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
						},
						Env:             []corev1.EnvVar{memoryLimitEnv("injector")},
						SecurityContext: restricted(1337),
					}},
				},
			},
		}}
}
