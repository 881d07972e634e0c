//go:build integration

package kubeharness

import (
	"context"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Two real API servers in one test: RBAC is enforced on a ServiceAccount
// kubeconfig from the TokenRequest API, Pod status is written through
// UpdateStatus, and the clusters share nothing.
func TestTwoClusters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	begin := time.Now()
	a := Start(t, Options{Name: "a"})
	startA := time.Since(begin)
	b := Start(t, Options{Name: "b", ServiceCIDR: "10.97.0.0/16"})
	t.Logf("cluster a ready in %s, cluster b in %s more", startA.Round(time.Millisecond), (time.Since(begin) - startA).Round(time.Millisecond))

	v, err := a.Client.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != KubernetesVersion {
		t.Errorf("kube-apiserver reports %s, want %s (rebuild with scripts/k8s-bins.sh)", v.GitVersion, KubernetesVersion)
	}

	// The admin kubeconfig works as bytes, like a user's file.
	adminKC, err := a.Kubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	admin := clientFrom(t, adminKC)
	if _, err := admin.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("admin cannot list Secrets: %v", err)
	}

	// A remote reader: what a remote cluster's kubeconfig Secret holds.
	if err := a.CreateRemoteReader(ctx, "istio-system", "istio-reader"); err != nil {
		t.Fatal(err)
	}
	if err := a.CreateRemoteReader(ctx, "istio-system", "istio-reader"); err != nil {
		t.Fatalf("CreateRemoteReader is not idempotent: %v", err)
	}
	kc, err := a.KubeconfigFor(ctx, "istio-system", "istio-reader", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	reader := clientFrom(t, kc)
	if _, err := reader.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("the reader cannot list Pods: %v", err)
	}
	if _, err := reader.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("the reader cannot list EndpointSlices: %v", err)
	}
	if _, err := reader.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("the reader cannot list Nodes: %v", err)
	}
	if _, err := reader.AuthenticationV1().TokenReviews().Create(ctx,
		&authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: "not-a-token"}}, metav1.CreateOptions{}); err != nil {
		t.Errorf("the reader cannot create TokenReviews: %v", err)
	}
	if _, err := reader.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("RBAC not enforced: listing Secrets gave %v, want Forbidden", err)
	}
	if _, err := reader.CoreV1().Pods("default").Create(ctx, testPod("intruder"), metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("RBAC not enforced: creating a Pod gave %v, want Forbidden", err)
	}

	// No kubelet: the test writes Pod status itself.
	created, err := a.Client.CoreV1().Pods("default").Create(ctx, testPod("p"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status.Phase = corev1.PodRunning
	created.Status.PodIP = "10.1.0.9"
	created.Status.PodIPs = []corev1.PodIP{{IP: "10.1.0.9"}}
	if _, err := a.Client.CoreV1().Pods("default").UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("UpdateStatus: %v", err)
	}
	got, err := reader.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.PodIP != "10.1.0.9" || got.Status.Phase != corev1.PodRunning {
		t.Errorf("pod status = %+v, want Running with IP 10.1.0.9", got.Status)
	}

	// Independent clusters: a's objects are not in b, and b refuses a's
	// token (another signing key and issuer).
	if _, err := b.Client.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod p in cluster b: %v, want NotFound", err)
	}
	if _, err := b.Client.CoreV1().Namespaces().Get(ctx, "istio-system", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace istio-system in cluster b: %v, want NotFound", err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Host, cfg.TLSClientConfig.CAData = b.URL, b.CACert
	intoB, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := intoB.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Errorf("cluster a's token in cluster b: %v, want Unauthorized", err)
	}

	// The API server stops and comes back on the same URL, with the same
	// etcd and keys: objects and earlier tokens are still good.
	stopBegin := time.Now()
	a.StopAPIServer(false)
	a.StopAPIServer(false) // a second stop does nothing
	t.Logf("cluster a's API server stopped in %s", time.Since(stopBegin).Round(time.Millisecond))
	if a.APIServerRunning() {
		t.Error("APIServerRunning after StopAPIServer")
	}
	if _, err := reader.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{}); err == nil {
		t.Error("cluster a answers with its API server stopped")
	}
	restartBegin := time.Now()
	if err := a.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster a's API server restarted in %s", time.Since(restartBegin).Round(time.Millisecond))
	if !a.APIServerRunning() {
		t.Error("!APIServerRunning after StartAPIServer")
	}
	if got, err := reader.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{}); err != nil || got.Status.PodIP != "10.1.0.9" {
		t.Errorf("after the restart, the reader's old token and pod p: %v %v", got, err)
	}
	a.StopAPIServer(true) // as a crash would
	if err := a.StartAPIServer(); err != nil {
		t.Fatalf("after SIGKILL: %v", err)
	}
	if _, err := a.Client.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{}); err != nil {
		t.Errorf("after a SIGKILL and a restart: %v", err)
	}

	// Stop is idempotent with the cleanup that runs it again.
	stopBegin = time.Now()
	b.Stop()
	t.Logf("cluster b stopped in %s", time.Since(stopBegin).Round(time.Millisecond))
	if _, err := b.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err == nil {
		t.Error("cluster b still answers after Stop")
	}
}

func clientFrom(t *testing.T, kubeconfig []byte) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func testPod(name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example/app"}}}}
}
