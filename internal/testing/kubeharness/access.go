package kubeharness

import (
	"context"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// RemoteReaderRole is the ClusterRole CreateRemoteReader binds.
const RemoteReaderRole = "horizon-remote-reader"

// CreateRemoteReader creates namespace and ServiceAccount saName in it (each
// unless present) and binds it to the ClusterRole a remote cluster's
// kubeconfig Secret needs: get/list/watch Services, Endpoints,
// EndpointSlices, Pods, Nodes, Namespaces; create TokenReviews.
func (c *Cluster) CreateRemoteReader(ctx context.Context, namespace, sa string) error {
	ignoreExists := func(err error) error {
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
	cs := c.Client
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); ignoreExists(err) != nil {
		return err
	}
	if _, err := cs.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); ignoreExists(err) != nil {
		return err
	}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: RemoteReaderRole}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"services", "endpoints", "pods", "nodes", "namespaces"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
	}}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); ignoreExists(err) != nil {
		return err
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "horizon-remote-reader-" + namespace + "-" + sa},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: namespace}}}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); ignoreExists(err) != nil {
		return err
	}
	return nil
}

// KubeconfigFor returns a kubeconfig for a ServiceAccount with a token from
// the TokenRequest API (audience: this API server; expiry at least 10
// minutes, or the API's default of one hour when 0), the CA data and server
// URL inline — what the walkthrough puts in a remote cluster's Secret.
func (c *Cluster) KubeconfigFor(ctx context.Context, namespace, sa string, expiry time.Duration) ([]byte, error) {
	req := &authenticationv1.TokenRequest{}
	if expiry > 0 {
		secs := int64(expiry.Seconds())
		req.Spec.ExpirationSeconds = &secs
	}
	tr, err := c.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("token for %s/%s: %w", namespace, sa, err)
	}
	return c.kubeconfig(&clientcmdapi.AuthInfo{Token: tr.Status.Token})
}

// Kubeconfig returns an admin kubeconfig, credentials inline.
func (c *Cluster) Kubeconfig() ([]byte, error) {
	return c.kubeconfig(&clientcmdapi.AuthInfo{ClientCertificateData: c.pki.AdminCert, ClientKeyData: c.pki.AdminKey})
}

func (c *Cluster) kubeconfig(user *clientcmdapi.AuthInfo) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[c.Name] = &clientcmdapi.Cluster{Server: c.URL, CertificateAuthorityData: c.pki.CACert}
	cfg.AuthInfos[c.Name] = user
	cfg.Contexts[c.Name] = &clientcmdapi.Context{Cluster: c.Name, AuthInfo: c.Name}
	cfg.CurrentContext = c.Name
	return clientcmd.Write(*cfg)
}
