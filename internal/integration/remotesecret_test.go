//go:build integration

package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/internal/source/remote"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
)

// fakeTokenController does in cluster c what kube-controller-manager's
// token controller does (the harness runs none): it fills every
// service-account-token Secret of namespace that has no token yet, with a
// token bound to that Secret (deleting the Secret revokes it, as with the
// real controller), the CA and the namespace.
func fakeTokenController(t *testing.T, c *kubeharness.Cluster, namespace string) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			list, err := c.Client.CoreV1().Secrets(namespace).List(ctx, metav1.ListOptions{FieldSelector: "type=" + string(corev1.SecretTypeServiceAccountToken)})
			if err == nil {
				for i := range list.Items {
					s := &list.Items[i]
					sa := s.Annotations[corev1.ServiceAccountNameKey]
					if len(s.Data[corev1.ServiceAccountTokenKey]) > 0 || sa == "" {
						continue
					}
					tr, err := c.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
						BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: s.Name, UID: s.UID}}}, metav1.CreateOptions{})
					if err != nil {
						continue
					}
					s.Data = map[string][]byte{corev1.ServiceAccountTokenKey: []byte(tr.Status.Token), corev1.ServiceAccountRootCAKey: c.CACert,
						corev1.ServiceAccountNamespaceKey: []byte(namespace)}
					_, _ = c.Client.CoreV1().Secrets(namespace).Update(ctx, s, metav1.UpdateOptions{})
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
}

// decodeRemoteSecret checks the printed Secret's shape and returns it and
// the kubeconfig it holds for id.
func decodeRemoteSecret(t *testing.T, out, namespace, id string) (*corev1.Secret, []byte) {
	t.Helper()
	var s corev1.Secret
	if err := yaml.UnmarshalStrict([]byte(out), &s); err != nil {
		t.Fatalf("stdout is not one Secret: %v\n%s", err, out)
	}
	if s.Kind != "Secret" || !strings.HasPrefix(s.Name, "istio-remote-secret-") || s.Namespace != namespace ||
		s.Labels["istio/multiCluster"] != "true" || s.Annotations["networking.istio.io/cluster"] != id || len(s.StringData) != 1 {
		t.Fatalf("printed Secret:\n%s", out)
	}
	kc := []byte(s.StringData[id])
	if _, err := remote.ParseKubeconfig(kc, false); err != nil {
		t.Fatalf("discovery would refuse the kubeconfig: %v", err)
	}
	return &s, kc
}

// clientFrom is a client with the kubeconfig's credentials only.
func clientFrom(t *testing.T, kc []byte) kubernetes.Interface {
	t.Helper()
	rc, err := remote.ParseKubeconfig(kc, false)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// checkReadOnly asserts through cluster2's API server what the token in
// the kubeconfig may do: read the registry, create TokenReviews; nothing
// with Secrets, no writes.
func checkReadOnly(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	allowed := map[string]error{}
	_, allowed["list services"] = cs.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	_, allowed["list pods"] = cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	_, allowed["list endpointslices"] = cs.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
	_, allowed["list nodes"] = cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	_, allowed["list namespaces"] = cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	_, allowed["get service"] = cs.CoreV1().Services("sample").Get(ctx, "helloworld", metav1.GetOptions{})
	w, err := cs.CoreV1().Services("").Watch(ctx, metav1.ListOptions{})
	if err == nil {
		w.Stop()
	}
	allowed["watch services"] = err
	_, allowed["create tokenreviews"] = cs.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: "x"}}, metav1.CreateOptions{})
	for what, err := range allowed {
		if err != nil {
			t.Errorf("%s: %v, want allowed", what, err)
		}
	}

	forbidden := map[string]error{}
	_, forbidden["list secrets"] = cs.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
	_, forbidden["list secrets in istio-system"] = cs.CoreV1().Secrets("istio-system").List(ctx, metav1.ListOptions{})
	_, forbidden["get secret"] = cs.CoreV1().Secrets("istio-system").Get(ctx, "horizon-reader-cluster2-token", metav1.GetOptions{})
	_, forbidden["list configmaps"] = cs.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{})
	_, forbidden["create configmap"] = cs.CoreV1().ConfigMaps("sample").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
	_, forbidden["create service"] = cs.CoreV1().Services("sample").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "x"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})
	_, forbidden["create secret"] = cs.CoreV1().Secrets("sample").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
	_, forbidden["create namespace"] = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
	_, forbidden["patch service"] = cs.CoreV1().Services("sample").Patch(ctx, "helloworld", types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
	_, forbidden["patch pod"] = cs.CoreV1().Pods("sample").Patch(ctx, "helloworld-v2", types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
	_, forbidden["update pod status"] = cs.CoreV1().Pods("sample").Patch(ctx, "helloworld-v2", types.MergePatchType, []byte(`{"status":{"podIP":"10.9.9.9"}}`), metav1.PatchOptions{}, "status")
	_, forbidden["update endpointslice"] = cs.DiscoveryV1().EndpointSlices("sample").Patch(ctx, "helloworld-1", types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
	forbidden["delete service"] = cs.CoreV1().Services("sample").Delete(ctx, "helloworld", metav1.DeleteOptions{})
	forbidden["delete pod"] = cs.CoreV1().Pods("sample").Delete(ctx, "helloworld-v2", metav1.DeleteOptions{})
	forbidden["delete configmaps"] = cs.CoreV1().ConfigMaps("istio-system").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	_, forbidden["request a token"] = cs.CoreV1().ServiceAccounts("istio-system").CreateToken(ctx, "horizon-reader-cluster2", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	_, forbidden["edit its own role"] = cs.RbacV1().ClusterRoles().Patch(ctx, "horizon-reader", types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
	for what, err := range forbidden {
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: %v, want Forbidden", what, err)
		}
	}

	// Istio Gateways (no CRD in this cluster) and everything else, asked
	// of the authorizer.
	for _, ra := range []struct {
		attr authorizationv1.ResourceAttributes
		want bool
	}{
		{authorizationv1.ResourceAttributes{Group: "networking.istio.io", Resource: "gateways", Verb: "list"}, true},
		{authorizationv1.ResourceAttributes{Group: "networking.istio.io", Resource: "gateways", Verb: "watch"}, true},
		{authorizationv1.ResourceAttributes{Group: "networking.istio.io", Resource: "gateways", Verb: "create"}, false},
		{authorizationv1.ResourceAttributes{Group: "networking.istio.io", Resource: "virtualservices", Verb: "list"}, false},
		{authorizationv1.ResourceAttributes{Resource: "secrets", Verb: "watch"}, false},
		{authorizationv1.ResourceAttributes{Resource: "pods", Subresource: "exec", Verb: "create"}, false},
		{authorizationv1.ResourceAttributes{Resource: "serviceaccounts", Subresource: "token", Verb: "create"}, false},
		{authorizationv1.ResourceAttributes{Resource: "services", Verb: "update"}, false},
		{authorizationv1.ResourceAttributes{Resource: "nodes", Verb: "delete"}, false},
	} {
		r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &ra.attr}}, metav1.CreateOptions{})
		if err != nil {
			t.Errorf("access review %+v: %v", ra.attr, err)
		} else if r.Status.Allowed != ra.want {
			t.Errorf("%s %s/%s/%s allowed %v, want %v", ra.attr.Verb, ra.attr.Group, ra.attr.Resource, ra.attr.Subresource, r.Status.Allowed, ra.want)
		}
	}
}

// TestCreateRemoteSecret is issue 9: `horizon create-remote-secret` run
// against cluster2 prints the Secret that, applied in cluster1, joins
// cluster2 to discovery with a token that can only read.
func TestCreateRemoteSecret(t *testing.T) {
	m := startMesh(t)
	admin, err := m.c2.Kubeconfig()
	must(t, err)
	kubeconfig := filepath.Join(t.TempDir(), "cluster2.kubeconfig")
	must(t, os.WriteFile(kubeconfig, admin, 0o600))
	args := []string{"create-remote-secret", "--kubeconfig", kubeconfig, "--name", "cluster2"}
	timed := func(args ...string) (int, string, string) {
		start := time.Now()
		code, out, errOut := horizon(args...)
		t.Logf("horizon %s: exit %d in %s\n%s", strings.Join(args[5:], " "), code, time.Since(start).Round(time.Millisecond), errOut)
		return code, out, errOut
	}

	// No token controller runs: the long-lived token never comes; a clear
	// error within --timeout and nothing on stdout.
	code, out, errOut := timed(append(args, "--timeout", "3s")...)
	if code != 1 || out != "" || !strings.Contains(errOut, "token controller") || !strings.Contains(errOut, "--token-ttl") {
		t.Fatalf("without a token controller: exit %d, stdout %q, stderr %s", code, out, errOut)
	}

	// With one (simulated): the default, a long-lived Secret token.
	fakeTokenController(t, m.c2, "istio-system")
	code, out, errOut = timed(args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	secret, kc := decodeRemoteSecret(t, out, "istio-system", "cluster2")
	if secret.Name != "istio-remote-secret-cluster2" {
		t.Errorf("Secret name %s", secret.Name)
	}
	rc, _ := remote.ParseKubeconfig(kc, false)
	if rc.Host != m.c2.URL || string(rc.CAData) != string(m.c2.CACert) || rc.BearerToken == "" {
		t.Errorf("kubeconfig: server %s, CA inline %v, token %v", rc.Host, string(rc.CAData) == string(m.c2.CACert), rc.BearerToken != "")
	}

	// Idempotent: a second run changes nothing and prints the same Secret.
	code, out2, errOut := timed(args...)
	if code != 0 || out2 != out {
		t.Errorf("second run: exit %d, same output %v: %s", code, out2 == out, errOut)
	}
	for _, obj := range []string{"ServiceAccount istio-system/horizon-reader-cluster2 unchanged", "ClusterRole horizon-reader unchanged",
		"ClusterRoleBinding horizon-reader-cluster2.istio-system unchanged", "Secret istio-system/horizon-reader-cluster2-token unchanged"} {
		if !strings.Contains(errOut, obj) {
			t.Errorf("second run: no %q in\n%s", obj, errOut)
		}
	}

	// Applied in cluster1, it joins cluster2: its endpoints appear in EDS.
	_, err = m.c1.Client.CoreV1().Secrets(secret.Namespace).Create(ctx, secret, metav1.CreateOptions{})
	must(t, err)
	d := startDiscovery(t, m.c1, nil, true)
	n1 := proxy(t, d, "sleep-n1.sample", "network1")
	n2 := proxy(t, d, "sleep-n2.sample", "network2")
	waitEDS(t, n1, map[string]uint32{"10.1.0.5:5000": 1, "198.51.100.2:15443": 1})
	waitEDS(t, n2, map[string]uint32{"10.1.0.5:5000": 1, "10.2.0.5:5000": 1})

	// The token can read and nothing more, through cluster2's API server.
	checkReadOnly(t, clientFrom(t, kc))

	// --token-ttl: a TokenRequest token, the server as given. Applying it
	// rotates cluster2's kubeconfig; EDS keeps cluster2's endpoints.
	code, out3, errOut := timed(append(args, "--token-ttl", "2h", "--server", m.c2.URL)...)
	if code != 0 || !strings.Contains(errOut, "expires at") {
		t.Fatalf("--token-ttl: exit %d: %s", code, errOut)
	}
	if strings.Contains(errOut, "horizon-reader-cluster2-token") {
		t.Errorf("--token-ttl touched the long-lived token Secret:\n%s", errOut)
	}
	rotated, kc3 := decodeRemoteSecret(t, out3, "istio-system", "cluster2")
	if string(kc3) == string(kc) {
		t.Error("--token-ttl printed the long-lived token")
	}
	checkReadOnly(t, clientFrom(t, kc3))
	since := cluster2Since(d)
	cur, err := m.c1.Client.CoreV1().Secrets(rotated.Namespace).Get(ctx, rotated.Name, metav1.GetOptions{})
	must(t, err)
	rotated.ResourceVersion = cur.ResourceVersion
	_, err = m.c1.Client.CoreV1().Secrets(rotated.Namespace).Update(ctx, rotated, metav1.UpdateOptions{})
	must(t, err)
	waitFor(t, 30*time.Second, "the rotated kubeconfig to take over", func() bool { return cluster2Since(d).After(since) })
	waitEDS(t, n2, map[string]uint32{"10.1.0.5:5000": 1, "10.2.0.5:5000": 1})

	// Both tokens still work (re-running revoked nothing), and the first
	// one's objects are as they were.
	if _, err := clientFrom(t, kc).CoreV1().Services("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("the long-lived token after the second mode: %v", err)
	}

	// Another namespace, created when missing; another cluster ID.
	code, out, errOut = timed("create-remote-secret", "--kubeconfig", kubeconfig, "--name", "cluster_3", "--namespace", "horizon-remotes", "--token-ttl", "10m")
	if code != 0 || !strings.Contains(errOut, "Namespace horizon-remotes created") {
		t.Fatalf("new namespace: exit %d: %s", code, errOut)
	}
	_, kc4 := decodeRemoteSecret(t, out, "horizon-remotes", "cluster_3")
	if _, err := clientFrom(t, kc4).DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("cluster_3's token: %v", err)
	}

	// An unreachable API server: a clear error, well within 30 s.
	dead := filepath.Join(t.TempDir(), "dead.kubeconfig")
	must(t, os.WriteFile(dead, []byte(strings.Replace(string(admin), m.c2.URL, "https://127.0.0.1:1", 1)), 0o600))
	code, out, errOut = timed("create-remote-secret", "--kubeconfig", dead, "--name", "cluster2", "--token-ttl", "1h")
	if code != 1 || out != "" || !strings.Contains(errOut, "cannot reach the API server https://127.0.0.1:1") {
		t.Errorf("unreachable: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
}
