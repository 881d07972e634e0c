package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/internal/install"
	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source/remote"
)

const testCA = "-----BEGIN CERTIFICATE-----\nMIIBdummy\n-----END CERTIFICATE-----\n"

func TestRemoteSecretRendered(t *testing.T) {
	kc, err := remoteKubeconfig("cluster2", "https://203.0.113.7:6443", []byte(testCA), "tok.en")
	if err != nil {
		t.Fatal(err)
	}
	// What discovery will do with it: accepted without --allow-insecure-kubeconfig.
	rc, err := remote.ParseKubeconfig(kc, false)
	if err != nil {
		t.Fatalf("ParseKubeconfig(allowInsecure=false): %v\n%s", err, kc)
	}
	if rc.Host != "https://203.0.113.7:6443" || rc.BearerToken != "tok.en" || string(rc.CAData) != testCA ||
		rc.CAFile != "" || rc.BearerTokenFile != "" || rc.ExecProvider != nil || rc.AuthProvider != nil || rc.Insecure {
		t.Errorf("client config: host %q token %q CA %q caFile %q tokenFile %q insecure %v", rc.Host, rc.BearerToken, rc.CAData, rc.CAFile, rc.BearerTokenFile, rc.Insecure)
	}

	y, err := renderRemoteSecret("cluster2", "istio-system", kc)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"creationTimestamp", "status"} {
		if strings.Contains(string(y), bad) {
			t.Errorf("output has %s:\n%s", bad, y)
		}
	}
	var s corev1.Secret
	if err := yaml.UnmarshalStrict(y, &s); err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	if s.Kind != "Secret" || s.APIVersion != "v1" || s.Name != "istio-remote-secret-cluster2" || s.Namespace != "istio-system" {
		t.Errorf("object %s %s %s/%s", s.APIVersion, s.Kind, s.Namespace, s.Name)
	}
	if s.Labels["istio/multiCluster"] != "true" || len(s.Labels) != 1 {
		t.Errorf("labels %v", s.Labels)
	}
	if s.Annotations["networking.istio.io/cluster"] != "cluster2" {
		t.Errorf("annotations %v", s.Annotations)
	}
	if len(s.StringData) != 1 || s.StringData["cluster2"] != string(kc) || len(s.Data) != 0 {
		t.Errorf("stringData keys %d, data %d; kubeconfig kept verbatim: %v", len(s.StringData), len(s.Data), s.StringData["cluster2"] == string(kc))
	}
	if _, err := remote.ParseKubeconfig([]byte(s.StringData["cluster2"]), false); err != nil {
		t.Errorf("kubeconfig from the printed Secret: %v", err)
	}
}

func TestRemoteReaderObjectsReadOnly(t *testing.T) {
	objs := remoteReaderObjects("cluster2", "istio-system", true)
	if len(objs) != 4 {
		t.Fatalf("%d objects", len(objs))
	}
	sa := objs[0].(*corev1.ServiceAccount)
	role := objs[1].(*rbacv1.ClusterRole)
	rb := objs[2].(*rbacv1.ClusterRoleBinding)
	tok := objs[3].(*corev1.Secret)
	if sa.Name != "horizon-reader-cluster2" || sa.Namespace != "istio-system" {
		t.Errorf("ServiceAccount %s/%s", sa.Namespace, sa.Name)
	}
	if rb.RoleRef.Name != role.Name || len(rb.Subjects) != 1 || rb.Subjects[0].Name != sa.Name || rb.Subjects[0].Namespace != "istio-system" || rb.Subjects[0].Kind != "ServiceAccount" {
		t.Errorf("binding %+v", rb)
	}
	if tok.Type != corev1.SecretTypeServiceAccountToken || tok.Annotations[corev1.ServiceAccountNameKey] != sa.Name || tok.Namespace != "istio-system" || len(tok.Data) != 0 {
		t.Errorf("token Secret %+v", tok)
	}
	for _, o := range []metav1.Object{sa, role, rb, tok} {
		if o.GetLabels()[install.ManagedByLabel] != install.ManagedBy {
			t.Errorf("%s lacks the managed-by label", o.GetName())
		}
	}
	want := map[string]bool{
		"/services": true, "/endpoints": true, "/pods": true, "/nodes": true, "/namespaces": true,
		"discovery.k8s.io/endpointslices": true, "networking.istio.io/gateways": true,
	}
	seen := map[string]bool{}
	for _, r := range role.Rules {
		if len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
			t.Errorf("unexpected rule %+v", r)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				key := g + "/" + res
				seen[key] = true
				verbs := strings.Join(r.Verbs, ",")
				switch {
				case key == "authentication.k8s.io/tokenreviews":
					if verbs != "create" {
						t.Errorf("%s: %s", key, verbs)
					}
				case want[key]:
					if verbs != "get,list,watch" {
						t.Errorf("%s: %s, want read only", key, verbs)
					}
				default:
					t.Errorf("rule grants %s (%s)", key, verbs)
				}
				if strings.Contains(res, "secret") || strings.Contains(res, "*") || strings.Contains(g, "*") {
					t.Errorf("rule grants %s", key)
				}
			}
		}
	}
	for k := range want {
		if !seen[k] {
			t.Errorf("no rule for %s", k)
		}
	}
	if !seen["authentication.k8s.io/tokenreviews"] {
		t.Error("no rule for tokenreviews")
	}
	if got := remoteReaderObjects("cluster2", "istio-system", false); len(got) != 3 {
		t.Errorf("TokenRequest mode applies %d objects, want no token Secret", len(got))
	}
	if _, err := install.Unstructured(objs); err != nil {
		t.Fatal(err)
	}
}

func TestRemoteNames(t *testing.T) {
	if n := namesFor("cluster2", "istio-system"); n != (remoteNames{"horizon-reader-cluster2", "horizon-reader-cluster2.istio-system",
		"horizon-reader-cluster2-token", "istio-remote-secret-cluster2"}) {
		t.Errorf("%+v", n)
	}
	seen := map[string]string{}
	for _, id := range []string{"cluster2", "cluster-2", "cluster_2", "Cluster-2", "CLUSTER_2", "c.2", "a..b", "x-", "_", "-", "a.-b",
		strings.Repeat("a", 253), strings.Repeat("a", 252) + "b", strings.Repeat("A_", 120)} {
		if err := model.ValidateClusterID(id); err != nil {
			t.Fatalf("test case %q: %v", id, err)
		}
		n := namesFor(id, "istio-system")
		for _, name := range []string{n.serviceAccount, n.tokenSecret, n.secret} {
			if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
				t.Errorf("%q → %q: %v", id, name, errs)
			}
		}
		if other, dup := seen[n.serviceAccount]; dup {
			t.Errorf("%q and %q share %q", id, other, n.serviceAccount)
		}
		seen[n.serviceAccount] = id
	}
}

func TestCreateRemoteSecretBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--name is required"},
		{[]string{"--name", "a b"}, "invalid cluster ID"},
		{[]string{"--name", "c2", "--token-ttl", "5m"}, "at least 10m"},
		{[]string{"--name", "c2", "--token-ttl", "-1h"}, "at least 10m"},
		{[]string{"--name", "c2", "--server", "http://10.0.0.1:6443"}, "not an https:// URL"},
		{[]string{"--name", "c2", "--namespace", "Istio_System"}, "--namespace"},
		{[]string{"--name", "c2", "--kubeconfig", "/nonexistent/kubeconfig"}, "kubeconfig"},
	} {
		code, out, errOut := run(t, append([]string{"create-remote-secret"}, tc.args...)...)
		if code != 2 || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and %q", tc.args, code, out, errOut, tc.want)
		}
	}
}

// An unreachable API server fails with a clear message, at once when the
// port refuses, and nothing is printed on stdout.
func TestCreateRemoteSecretUnreachable(t *testing.T) {
	kc, err := remoteKubeconfig("remote", "https://127.0.0.1:1", selfSignedPEM(t), "x")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, out, errOut := run(t, "create-remote-secret", "--kubeconfig", path, "--name", "cluster2")
	if code != 1 || out != "" || !strings.Contains(errOut, "cannot reach the API server https://127.0.0.1:1") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("took %s", d)
	}
}

func selfSignedPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestWaitForToken(t *testing.T) {
	cs := fake.NewClientset()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() {
		time.Sleep(300 * time.Millisecond) // the Secret exists before it has a token
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "t", Namespace: "ns"}, Type: corev1.SecretTypeServiceAccountToken}
		if _, err := cs.CoreV1().Secrets("ns").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Log(err)
		}
		time.Sleep(300 * time.Millisecond)
		s.Data = map[string][]byte{"token": []byte("abc"), "ca.crt": []byte(testCA)}
		if _, err := cs.CoreV1().Secrets("ns").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Log(err)
		}
	}()
	tok, err := waitForToken(ctx, cs, "ns", "t")
	if err != nil || tok != "abc" {
		t.Fatalf("token %q: %v", tok, err)
	}

	short, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if _, err := waitForToken(short, cs, "ns", "never"); err == nil || !strings.Contains(err.Error(), "token controller") || !strings.Contains(err.Error(), "--token-ttl") {
		t.Errorf("no token controller: %v", err)
	}
}

func TestCAData(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(file, []byte("file"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cfg       rest.TLSClientConfig
		namespace string
		want      string
	}{
		{rest.TLSClientConfig{CAData: []byte("inline"), CAFile: file}, "ns", "inline"},
		{rest.TLSClientConfig{CAFile: file}, "ns", "file"},
		{rest.TLSClientConfig{Insecure: true}, "ns", "root"},
		{rest.TLSClientConfig{Insecure: true}, "not-yet", "kube-system's"}, // the namespace does not exist yet
	} {
		cs := fake.NewClientset(
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt", Namespace: "ns"}, Data: map[string]string{"ca.crt": "root"}},
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt", Namespace: "kube-system"}, Data: map[string]string{"ca.crt": "kube-system's"}})
		got, err := caData(ctx, &rest.Config{TLSClientConfig: tc.cfg}, cs, tc.namespace)
		if err != nil || string(got) != tc.want {
			t.Errorf("%+v in %s: %q, %v; want %q", tc.cfg, tc.namespace, got, err, tc.want)
		}
	}
	if _, err := caData(ctx, &rest.Config{}, fake.NewClientset(), "ns"); err == nil || !strings.Contains(err.Error(), "no CA") {
		t.Errorf("no CA anywhere: %v", err)
	}
}

func TestEnsureNamespace(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "existing", Labels: map[string]string{"a": "b"}}})
	var progress bytes.Buffer
	for _, ns := range []string{"existing", "new", "new"} {
		if err := ensureNamespace(ctx, cs, ns, &progress); err != nil {
			t.Fatal(err)
		}
	}
	if progress.String() != "Namespace new created\n" {
		t.Errorf("progress %q", progress.String())
	}
	ex, _ := cs.CoreV1().Namespaces().Get(ctx, "existing", metav1.GetOptions{})
	if len(ex.Labels) != 1 {
		t.Errorf("an existing namespace was changed: %v", ex.Labels)
	}
	n, _ := cs.CoreV1().Namespaces().Get(ctx, "new", metav1.GetOptions{})
	if n.Labels[install.ManagedByLabel] != install.ManagedBy {
		t.Errorf("created namespace labels %v", n.Labels)
	}
}

func TestCreateRemoteSecretHelp(t *testing.T) {
	code, out, _ := run(t, "create-remote-secret", "--help")
	for _, want := range []string{"--token-ttl", "token controller", "TokenRequest", "--server", "--name", "--kubeconfig", "--context", "istio/multiCluster=true"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("help lacks %q (exit %d)", want, code)
		}
	}
}
