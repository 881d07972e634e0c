//go:build bench

package bench

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// What both benchmarks write into their API server before the control
// plane starts: the mesh's namespaces and configuration, then per Service
// its Pods. Each keeps its own EndpointSlices (TestConvergence's are
// sliceSize endpoints each, TestHostile's one per Service).

// writeMeshConfig creates namespace istio-system (on network1) with the
// istio ConfigMap (mesh config and meshNetworks: network1 reached through
// one gateway), namespace benchNS and its default ServiceAccount (no
// controller-manager creates it; istiod's injector-free sidecars would
// run as it).
func writeMeshConfig(ctx context.Context, cs kubernetes.Interface) error {
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system",
		Labels: map[string]string{"topology.istio.io/network": "network1"}}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNS}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := cs.CoreV1().ConfigMaps("istio-system").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"},
		Data: map[string]string{"mesh": "defaultConfig: {}\ntrustDomain: cluster.local\n", "meshNetworks": meshNetworks}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err := cs.CoreV1().ServiceAccounts(benchNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	return err
}

// createServices creates Services svcName(0..n-1) in benchNS, Service i
// with one port "http", port(i), selecting the Pods labelled app=svcName(i).
func createServices(ctx context.Context, cs kubernetes.Interface, n int, port func(i int) int32) error {
	return parallel(n, func(i int) error {
		_, err := cs.CoreV1().Services(benchNS).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: svcName(i), Namespace: benchNS},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: port(i)}}, Selector: map[string]string{"app": svcName(i)}}},
			metav1.CreateOptions{})
		return err
	})
}

// createPods creates perPod Pods svcName(i)-j (j < perPod) for each of n
// Services, mTLS-capable, with spec(i), and writes each one's status as a
// kubelet would: Running, Ready, IP ip(k+1) where k = i*perPod+j (the
// address endpoint gives the same Pod).
func createPods(ctx context.Context, cs kubernetes.Interface, n, perPod int, spec func(i int) corev1.PodSpec) error {
	return parallel(n*perPod, func(k int) error {
		i, j := k/perPod, k%perPod
		p, err := cs.CoreV1().Pods(benchNS).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", svcName(i), j), Namespace: benchNS,
				Labels: map[string]string{"app": svcName(i), "security.istio.io/tlsMode": "istio"}},
			Spec: spec(i),
		}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip(k + 1), PodIPs: []corev1.PodIP{{IP: ip(k + 1)}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
		_, err = cs.CoreV1().Pods(benchNS).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return err
	})
}
