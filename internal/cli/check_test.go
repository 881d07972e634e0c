package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/horizonmesh/horizon/internal/ca/catest"
	"github.com/horizonmesh/horizon/internal/source/remote"
)

func cacertsSecret(t *testing.T, files catest.Files) *corev1.Secret {
	t.Helper()
	data := map[string][]byte{}
	for k, v := range files {
		data[k] = v
	}
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: caSecretName, Namespace: "istio-system"}, Data: data}
}

// cacerts: one root for all passes; a cluster with another root, without
// cacerts, or with a key that is not its certificate's fails, named, with
// a remedy.
func TestCheckCACerts(t *testing.T) {
	mesh, err := catest.New("mesh")
	if err != nil {
		t.Fatal(err)
	}
	other, err := catest.New("other")
	if err != nil {
		t.Fatal(err)
	}
	broken := catest.Files{}
	for k, v := range mesh {
		broken[k] = v
	}
	broken["ca-key.pem"] = other["ca-key.pem"]
	cluster := func(name string, objs ...*corev1.Secret) checkCluster {
		cs := fake.NewClientset()
		for _, o := range objs {
			if _, err := cs.CoreV1().Secrets(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		return checkCluster{name: name, cs: cs}
	}
	report := func(cs ...checkCluster) (string, int) {
		var out bytes.Buffer
		n := writeChecks(&out, checkCACerts(context.Background(), cs, "istio-system"))
		return out.String(), n
	}
	out, failed := report(cluster("cluster1", cacertsSecret(t, mesh)), cluster("cluster2", cacertsSecret(t, mesh)))
	if failed != 0 || !strings.Contains(out, "OK   cacerts one root: 2 clusters chain to SHA256:") {
		t.Errorf("one root: %d failed\n%s", failed, out)
	}
	out, failed = report(cluster("cluster1", cacertsSecret(t, mesh)), cluster("cluster2", cacertsSecret(t, other)))
	if failed != 1 || !strings.Contains(out, "FAIL cacerts one root: cluster1's root is SHA256:") || !strings.Contains(out, "cluster2's is SHA256:") ||
		!strings.Contains(out, "     remedy: give every cluster a cacerts whose root-cert.pem is cluster1's") {
		t.Errorf("another root in cluster2: %d failed\n%s", failed, out)
	}
	out, failed = report(cluster("cluster1", cacertsSecret(t, mesh)), cluster("cluster2"), cluster("cluster3", cacertsSecret(t, broken)))
	if failed != 2 || !strings.Contains(out, "FAIL cacerts cluster2: Secret istio-system/cacerts:") ||
		!strings.Contains(out, "FAIL cacerts cluster3: Secret istio-system/cacerts: cacerts: ca-key.pem does not match") ||
		!strings.Contains(out, "remedy: kubectl --context cluster2 -n istio-system create secret generic cacerts") {
		t.Errorf("cluster2 without cacerts, cluster3's key not its cert's: %d failed\n%s", failed, out)
	}
}

// A remote Secret discovery would refuse (an exec plugin) fails its check,
// named by Secret and key, with how to make it again; none at all passes.
func TestCheckRemoteSecretsRefusedAsDiscoveryRefuses(t *testing.T) {
	cs := fake.NewClientset()
	if got := checkRemoteSecrets(context.Background(), cs, "cluster1", "istio-system", nil); len(got) != 1 || !got[0].OK {
		t.Errorf("no remote Secret: %+v", got)
	}
	kc := `apiVersion: v1
kind: Config
clusters: [{name: c2, cluster: {server: "https://203.0.113.5:443", certificate-authority-data: ""}}]
users: [{name: u, user: {exec: {command: /bin/sh, apiVersion: client.authentication.k8s.io/v1}}}]
contexts: [{name: c2, context: {cluster: c2, user: u}}]
current-context: c2
`
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "istio-remote-secret-cluster2", Namespace: "istio-system",
		Labels: map[string]string{remote.MultiClusterLabel: "true"}}, Data: map[string][]byte{"cluster2": []byte(kc)}}
	if _, err := cs.CoreV1().Secrets("istio-system").Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	n := writeChecks(&out, checkRemoteSecrets(context.Background(), cs, "cluster1", "istio-system", nil))
	if n != 1 || !strings.Contains(out.String(), "FAIL remote-secret istio-system/istio-remote-secret-cluster2[cluster2]: refused as discovery refuses it: ") ||
		!strings.Contains(out.String(), "remedy: make it again: horizon create-remote-secret --context <cluster2's context> --name cluster2") {
		t.Errorf("%d failed:\n%s", n, &out)
	}
}
