package rootcert

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

func published(t *testing.T, c *fake.Clientset, ns, want string) {
	t.Helper()
	testkit.WaitFor(t, ConfigMapName+" published in namespace "+ns, func() bool {
		cm, err := c.CoreV1().ConfigMaps(ns).Get(context.Background(), ConfigMapName, metav1.GetOptions{})
		return err == nil && cm.Data[Key] == want
	})
}

func TestPublishedEverywhereAndKept(t *testing.T) {
	c := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "b"}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const root = "-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n"
	p := &Publisher{Client: c, RootPEM: []byte(root), Log: testkit.Logger()}
	go p.Run(ctx)
	published(t, c, "a", root)
	published(t, c, "b", root)

	// A namespace created later gets it.
	_, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sample"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	published(t, c, "sample", root)

	// An edited copy is corrected; a deleted one comes back.
	cm, _ := c.CoreV1().ConfigMaps("a").Get(ctx, ConfigMapName, metav1.GetOptions{})
	cm.Data[Key] = "tampered"
	if _, err := c.CoreV1().ConfigMaps("a").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	published(t, c, "a", root)
	if err := c.CoreV1().ConfigMaps("b").Delete(ctx, ConfigMapName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	published(t, c, "b", root)
}
