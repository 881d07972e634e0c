package meshnetworks

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestWatchConfigMap(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"},
		Data: map[string]string{ConfigMapKey: net2, "mesh": "x"}}
	other := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "istio-system"},
		Data: map[string]string{ConfigMapKey: "garbage: ["}}
	client := fake.NewClientset(cm, other)
	r := newRecorder()
	if err := WatchConfigMap(ctx, client, "istio-system", "istio", r); err != nil {
		t.Fatal(err)
	}
	r.Expect(t, "applied network2[c2] gw 192.0.2.1:443")

	cms := client.CoreV1().ConfigMaps("istio-system")
	update := func(data map[string]string) {
		t.Helper()
		c := cm.DeepCopy()
		c.Data = data
		if _, err := cms.Update(ctx, c, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	update(map[string]string{ConfigMapKey: net2, "mesh": "y"}) // another key: nothing to apply
	update(map[string]string{ConfigMapKey: "networks: {n: {gateways: [{address: 1.2.3.4}]}}"})
	r.Expect(t, "rejected")
	update(map[string]string{ConfigMapKey: strings.Replace(net2, "c2", "c3", 1)})
	r.Expect(t, "applied network2[c3] gw 192.0.2.1:443")
	if err := cms.Delete(ctx, "istio", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	r.Expect(t, "applied (no networks)")
}
