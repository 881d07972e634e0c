//go:build integration

package integration

import (
	"bytes"
	"io"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/horizonmesh/horizon/internal/bootstrap"
	"github.com/horizonmesh/horizon/internal/install"
	"github.com/horizonmesh/horizon/internal/rootcert"
)

// The RBAC `horizon install` gives discovery is enough: discovery runs with
// its ServiceAccount's token (TokenRequest) instead of admin, and the
// walkthrough's outcomes hold; so do the writes it makes (the shared
// self-signed root, the root certificate in every namespace, the webhook's
// caBundle).
func TestInstalledRBACIsEnough(t *testing.T) {
	m := startMesh(t)
	s := install.Defaults()
	s.ClusterID, s.Network, s.Replicas = "cluster1", "network1", 1
	objs, err := install.Render(s)
	must(t, err)
	us, err := install.Unstructured(objs)
	must(t, err)
	c, err := install.NewClient(m.c1.AdminConfig)
	must(t, err)
	_, err = c.Apply(ctx, us, false, io.Discard)
	must(t, err)
	kubeconfig, err := m.c1.KubeconfigFor(ctx, s.Namespace, install.DiscoveryName, 0)
	must(t, err)

	d := startDiscoveryWith(t, m.c1, kubeconfig, true, func(c *bootstrap.Config) {
		// The CA (a self-signed root shared through a Secret) and injection.
		c.SecureAddr, c.InjectAddr = pickAddr(t), pickAddr(t)
	})
	waitFor(t, 30*time.Second, "the shared self-signed root Secret", func() bool {
		_, err := m.c1.Client.CoreV1().Secrets(s.Namespace).Get(ctx, bootstrap.SelfSignedSecretName, metav1.GetOptions{})
		return err == nil
	})
	waitFor(t, 30*time.Second, "the root certificate in namespace sample", func() bool {
		cm, err := m.c1.Client.CoreV1().ConfigMaps("sample").Get(ctx, rootcert.ConfigMapName, metav1.GetOptions{})
		return err == nil && bytes.Contains([]byte(cm.Data[rootcert.Key]), []byte("BEGIN CERTIFICATE"))
	})
	waitFor(t, 30*time.Second, "the webhook's caBundle", func() bool {
		w, err := m.c1.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, install.WebhookName, metav1.GetOptions{})
		return err == nil && len(w.Webhooks[0].ClientConfig.CABundle) > 0
	})
	walkthroughAcrossClusters(t, m, d)
}
