//go:build integration

package integration

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/ca/catest"
	"github.com/horizonmesh/horizon/internal/cmd/horizondiscovery"
	"github.com/horizonmesh/horizon/internal/install"
	"github.com/horizonmesh/horizon/internal/rootcert"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// A remote cluster's pods get that cluster's identity and reach discovery
// through the primary's gateway: `horizon-discovery injector`, called by cluster2's
// real API server, injects CLUSTER_ID=cluster2, network2 and the gateway's
// address; the mesh root (cluster2's cacerts, shared with cluster1) is
// published in every namespace.
func TestRemoteClusterPodsGetTheirClusterIdentity(t *testing.T) {
	c2 := kubeharness.Start(t, kubeharness.Options{Name: "cluster2"})
	files, err := catest.New("mesh")
	must(t, err)
	namespace(t, c2, "istio-system", nil)
	installCACerts(t, c2, files)

	settings := install.Defaults()
	settings.ClusterID, settings.Network, settings.Remote, settings.DiscoveryAddress = "cluster2", "network2", true, "203.0.113.10:15443"
	objs, err := install.Render(settings)
	must(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	url := "https://" + l.Addr().String() + "/inject"
	for _, o := range objs {
		if w, ok := o.(*admissionv1.MutatingWebhookConfiguration); ok {
			w.Webhooks[0].ClientConfig = admissionv1.WebhookClientConfig{URL: &url} // outside a cluster: by URL
			_, err := c2.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, w, metav1.CreateOptions{})
			must(t, err)
		}
	}
	kc, err := c2.Kubeconfig()
	must(t, err)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	must(t, os.WriteFile(kubeconfig, kc, 0o600))
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- horizondiscovery.RunInjector(runCtx, horizondiscovery.InjectorConfig{Kubeconfig: kubeconfig, Namespace: "istio-system", ClusterID: "cluster2",
			Network: "network2", TrustDomain: "cluster.local", ProxyImage: "horizon/proxy:test",
			DiscoveryAddress: settings.DiscoveryAddress, DiscoverySAN: "outbound_.15012_._.horizon.istio-system.svc.cluster.local"},
			testkit.Logger(), l)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("injector: %v", err)
		}
	})
	waitFor(t, 20*time.Second, "the webhook's caBundle", func() bool {
		w, err := c2.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, install.WebhookName, metav1.GetOptions{})
		return err == nil && len(w.Webhooks[0].ClientConfig.CABundle) > 0
	})
	namespace(t, c2, "sample", map[string]string{"istio-injection": "enabled"})
	must(t, createSA(c2, "sample", "default"))
	waitFor(t, 20*time.Second, "the mesh root in sample", func() bool {
		cm, err := c2.Client.CoreV1().ConfigMaps("sample").Get(ctx, rootcert.ConfigMapName, metav1.GetOptions{})
		return err == nil && bytes.Equal([]byte(cm.Data[rootcert.Key]), files[ca.RootCertFile])
	})
	pod, err := c2.Client.CoreV1().Pods("sample").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "helloworld-v2", Labels: map[string]string{"app": "helloworld", "version": "v2"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "helloworld", Image: "istio/examples-helloworld-v2",
			Ports: []corev1.ContainerPort{{ContainerPort: 5000}}}}}}, metav1.CreateOptions{})
	must(t, err)
	var args []string
	for _, c := range pod.Spec.Containers {
		if c.Name == "istio-proxy" {
			args = c.Args
		}
	}
	for _, want := range [][2]string{{"--cluster-id", "cluster2"}, {"--network", "network2"},
		{"--discovery-address", "203.0.113.10:15443"}, {"--discovery-san", "outbound_.15012_._.horizon.istio-system.svc.cluster.local"}} {
		if !hasArg(args, want[0], want[1]) {
			t.Errorf("cluster2's sidecar lacks %s %s: %v", want[0], want[1], args)
		}
	}
	if pod.Labels["topology.istio.io/network"] != "network2" || pod.Labels["security.istio.io/tlsMode"] != "istio" {
		t.Errorf("labels: %v", pod.Labels)
	}
}
