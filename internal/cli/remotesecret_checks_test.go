package cli

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/horizonmesh/horizon/internal/install"
)

// recordingApplier records what create-remote-secret would apply.
type recordingApplier struct{ applied []string }

func (a *recordingApplier) Apply(_ context.Context, objs []*unstructured.Unstructured, _ bool, _ io.Writer) (install.ApplyResult, error) {
	for _, u := range objs {
		a.applied = append(a.applied, u.GetKind()+" "+u.GetName())
	}
	return install.ApplyResult{Created: len(objs)}, nil
}

// writes are the actions on cs that change something.
func writes(cs *fake.Clientset) []string {
	var out []string
	for _, a := range cs.Actions() {
		switch a.GetVerb() {
		case "get", "list", "watch":
		default:
			out = append(out, a.GetVerb()+" "+a.GetResource().Resource+"/"+a.GetSubresource())
		}
	}
	return out
}

// create-remote-secret checks what it needs before it writes: without a
// CA for the API server (none in the kubeconfig, no kube-root-ca.crt
// ConfigMap), it fails naming it and has created nothing — no Namespace,
// ServiceAccount, ClusterRole, binding, token Secret or token.
func TestCreateRemoteSecretWritesNothingWhenItWillFail(t *testing.T) {
	for _, ttl := range []time.Duration{0, time.Hour} {
		cs := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system"}})
		ap := &recordingApplier{}
		var progress bytes.Buffer
		cfg := &rest.Config{Host: "https://203.0.113.7:6443", TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
		o := remoteSecretOptions{name: "cluster2", namespace: "istio-system", tokenTTL: ttl, timeout: time.Minute}
		out, err := createRemoteSecretWith(context.Background(), cfg, cs, ap, o, &progress)
		if err == nil || !strings.Contains(err.Error(), "no CA") || out != nil {
			t.Errorf("token TTL %s: output %d bytes, error %v; want the no-CA error", ttl, len(out), err)
		}
		if w := writes(cs); len(w) > 0 || len(ap.applied) > 0 {
			t.Errorf("token TTL %s: failed on a missing CA after writing: %v, applied %v", ttl, w, ap.applied)
		}
	}

	// With the CA, the same run gets to its writes (here: until the fake
	// API server's empty token).
	cs := fake.NewClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt", Namespace: "kube-system"},
		Data: map[string]string{"ca.crt": testCA}})
	ap := &recordingApplier{}
	cfg := &rest.Config{Host: "https://127.0.0.1:1", TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	o := remoteSecretOptions{name: "cluster2", namespace: "istio-system", tokenTTL: time.Hour, timeout: time.Minute}
	_, _ = createRemoteSecretWith(context.Background(), cfg, cs, ap, o, io.Discard)
	if len(ap.applied) == 0 || len(writes(cs)) == 0 {
		t.Errorf("with a CA: applied %v, writes %v; want the reader objects applied and the namespace created", ap.applied, writes(cs))
	}
}
