//go:build integration

package kubeharness

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func TestTwoClustersRBACAndTokens(t *testing.T) {
	start := time.Now()
	a := Start(t, Options{Name: "a"})
	b := Start(t, Options{Name: "b", ServiceCIDR: "10.97.0.0/16"})
	t.Logf("two API servers ready in %s", time.Since(start))
	ctx := context.Background()

	if err := a.CreateRemoteReader(ctx, "istio-system", "istio-multi"); err != nil {
		t.Fatal(err)
	}
	kc, err := a.KubeconfigFor(ctx, "istio-system", "istio-multi", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	reader, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reader.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("the reader cannot list EndpointSlices: %v", err)
	}
	if _, err := reader.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("RBAC not enforced: listing Secrets gave %v, want Forbidden", err)
	}

	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}
	created, err := a.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status.PodIP = "10.1.0.9"
	created.Status.PodIPs = []corev1.PodIP{{IP: "10.1.0.9"}}
	if _, err := a.Client.CoreV1().Pods("default").UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("UpdateStatus: %v", err)
	}
	if _, err := b.Client.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("clusters are not independent: %v", err)
	}
}
