//go:build integration

package integration

import (
	"bytes"
	"net"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/horizonmesh/horizon/internal/bootstrap"
	"github.com/horizonmesh/horizon/internal/install"
	"github.com/horizonmesh/horizon/internal/rootcert"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
)

func pickAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().String()
}

// The real kube-apiserver calls discovery's injection webhook: pods of an
// enabled namespace come back with the sidecar, others unchanged; the
// webhook's caBundle and every namespace's root certificate ConfigMap are
// kept by discovery.
func TestAPIServerCallsTheInjectionWebhook(t *testing.T) {
	c := kubeharness.Start(t, kubeharness.Options{Name: "inject"})
	cs := c.Client
	injectAddr := pickAddr(t)
	url := "https://" + injectAddr + "/inject"
	webhook := &admissionv1.MutatingWebhookConfiguration{}
	objs, err := install.Render(install.Defaults())
	must(t, err)
	for _, o := range objs {
		if w, ok := o.(*admissionv1.MutatingWebhookConfiguration); ok {
			webhook = w
		}
	}
	// Outside a cluster the API server reaches discovery by URL, not Service.
	webhook.Webhooks[0].ClientConfig = admissionv1.WebhookClientConfig{URL: &url}
	_, err = cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, webhook, metav1.CreateOptions{})
	must(t, err)
	namespace(t, c, "istio-system", nil)

	startDiscoveryWith(t, c, nil, true, func(cfg *bootstrap.Config) {
		cfg.SecureAddr, cfg.InjectAddr, cfg.Network = pickAddr(t), injectAddr, "network1"
	})
	waitFor(t, 20*time.Second, "the webhook's caBundle", func() bool {
		w, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, install.WebhookName, metav1.GetOptions{})
		return err == nil && len(w.Webhooks[0].ClientConfig.CABundle) > 0
	})

	namespace(t, c, "sample", map[string]string{"istio-injection": "enabled"})
	namespace(t, c, "plain", nil)
	waitFor(t, 20*time.Second, "the root certificate in sample", func() bool {
		cm, err := cs.CoreV1().ConfigMaps("sample").Get(ctx, rootcert.ConfigMapName, metav1.GetOptions{})
		return err == nil && bytes.Contains([]byte(cm.Data[rootcert.Key]), []byte("BEGIN CERTIFICATE"))
	})

	create := func(ns, name string, labels map[string]string) *corev1.Pod {
		t.Helper()
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
			Spec: corev1.PodSpec{ServiceAccountName: "default", Containers: []corev1.Container{{Name: "app", Image: "helloworld",
				Ports: []corev1.ContainerPort{{ContainerPort: 5000}}}}}}
		got, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		must(t, err)
		return got
	}
	// The default ServiceAccount is the controller-manager's job; the
	// harness has none, so create it where pods go.
	for _, ns := range []string{"sample", "plain"} {
		must(t, createSA(c, ns, "default"))
	}

	injected := create("sample", "hello", map[string]string{"app": "helloworld"})
	names := func(cs []corev1.Container) map[string]bool {
		m := map[string]bool{}
		for _, c := range cs {
			m[c.Name] = true
		}
		return m
	}
	if !names(injected.Spec.Containers)["istio-proxy"] || !names(injected.Spec.InitContainers)["istio-init"] {
		t.Fatalf("pod in an enabled namespace not injected: %+v", injected.Spec)
	}
	if injected.Labels["security.istio.io/tlsMode"] != "istio" {
		t.Errorf("injected pod labels: %v", injected.Labels)
	}
	var args []string
	for _, ctr := range injected.Spec.Containers {
		if ctr.Name == "istio-proxy" {
			args = ctr.Args
		}
	}
	for _, want := range [][2]string{{"--cluster-id", "cluster1"}, {"--network", "network1"}, {"--discovery-address", "horizon.istio-system.svc:15012"}} {
		if !hasArg(args, want[0], want[1]) {
			t.Errorf("istio-proxy args lack %s %s: %v", want[0], want[1], args)
		}
	}
	tokenOK := false
	for _, v := range injected.Spec.Volumes {
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				tokenOK = tokenOK || s.ServiceAccountToken != nil && s.ServiceAccountToken.Audience == "istio-ca"
			}
		}
	}
	if !tokenOK {
		t.Error("no projected token with audience istio-ca")
	}

	for _, p := range []*corev1.Pod{
		create("plain", "hello", map[string]string{"app": "helloworld"}),
		create("sample", "opted-out", map[string]string{"sidecar.istio.io/inject": "false"}),
	} {
		if len(p.Spec.Containers) != 1 || len(p.Spec.InitContainers) != 0 {
			t.Errorf("pod %s/%s was changed: %+v", p.Namespace, p.Name, p.Spec.Containers)
		}
	}
}

func hasArg(args []string, flag, value string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag && args[i+1] == value {
			return true
		}
	}
	return false
}
