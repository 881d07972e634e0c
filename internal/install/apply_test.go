package install

import (
	"context"
	"io"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/meta/testrestmapper"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/applyconfigurations"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/scheme"
	clienttesting "k8s.io/client-go/testing"
)

// fakeCluster is a Client over a fake dynamic client whose tracker does
// server-side apply as the API server does (managed fields, conflicts).
type fakeCluster struct {
	*Client
	tracker clienttesting.ObjectTracker
	mapper  meta.RESTMapper
}

func newFakeCluster(t *testing.T) *fakeCluster {
	t.Helper()
	tracker := clienttesting.NewFieldManagedObjectTracker(scheme.Scheme, scheme.Codecs.UniversalDecoder(), applyconfigurations.NewTypeConverter(scheme.Scheme))
	dyn := dynamicfake.NewSimpleDynamicClient(scheme.Scheme)
	react := clienttesting.ObjectReaction(tracker)
	// The tracker returns typed objects; the dynamic client wants them
	// unstructured.
	dyn.PrependReactor("*", "*", func(a clienttesting.Action) (bool, runtime.Object, error) {
		handled, obj, err := react(a)
		if err != nil || obj == nil {
			return handled, obj, err
		}
		if _, ok := obj.(*metav1.Status); ok {
			return handled, obj, err
		}
		m, cerr := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if cerr != nil {
			return true, nil, cerr
		}
		u := &unstructured.Unstructured{Object: m}
		if gvks, _, err := scheme.Scheme.ObjectKinds(obj); err == nil {
			u.SetGroupVersionKind(gvks[0])
		}
		return handled, u, nil
	})
	mapper := testrestmapper.TestOnlyStaticRESTMapper(scheme.Scheme)
	return &fakeCluster{Client: &Client{dyn: dyn, mapper: mapper}, tracker: tracker, mapper: mapper}
}

// create stores obj as another tool would (manager, an Update).
func (f *fakeCluster) create(t *testing.T, obj runtime.Object, manager string) {
	t.Helper()
	gvks, _, err := scheme.Scheme.ObjectKinds(obj)
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.mapper.RESTMapping(gvks[0].GroupKind(), gvks[0].Version)
	if err != nil {
		t.Fatal(err)
	}
	o := obj.(metav1.Object)
	if err := f.tracker.Create(m.Resource, obj, o.GetNamespace(), metav1.CreateOptions{FieldManager: manager}); err != nil {
		t.Fatal(err)
	}
}

func (f *fakeCluster) configMap(t *testing.T, ns, name string) *corev1.ConfigMap {
	t.Helper()
	o, err := f.tracker.Get(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, ns, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return o.(*corev1.ConfigMap)
}

func renderedUnstructured(t *testing.T, s Settings) []*unstructured.Unstructured {
	t.Helper()
	objs, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	us, err := Unstructured(objs)
	if err != nil {
		t.Fatal(err)
	}
	return us
}

// istioConfigMap is the istio ConfigMap as Istio's chart leaves it (Helm's
// label, the mesh key), with or without meshNetworks.
func istioConfigMap(meshNetworks string) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: MeshConfigMap, Namespace: "istio-system",
			Labels: map[string]string{ManagedByLabel: "Helm", "istio.io/rev": "default"}},
		Data: map[string]string{"mesh": "defaultConfig:\n  discoveryAddress: istiod.istio-system.svc:15012\n"}}
	if meshNetworks != "" {
		cm.Data["meshNetworks"] = meshNetworks
	}
	return cm
}

// An istio ConfigMap and a namespace that existed before keep what others
// set: Horizon adds only its own fields, without force and without its
// managed-by label, and uninstall deletes neither.
func TestApplyKeepsObjectsItDidNotCreate(t *testing.T) {
	ctx := context.Background()
	f := newFakeCluster(t)
	f.create(t, &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: "istio-system", Labels: map[string]string{"team": "mesh"}}}, "kubectl-create")
	f.create(t, istioConfigMap(""), "helm")

	s := Defaults()
	s.ClusterID, s.Network = "cluster1", "network1"
	s.MeshNetworks = "networks:\n  network1:\n    endpoints:\n    - fromRegistry: cluster1\n"
	var out strings.Builder
	if _, err := f.Apply(ctx, renderedUnstructured(t, s), false, &out); err != nil {
		t.Fatalf("apply: %v\n%s", err, out.String())
	}
	cm := f.configMap(t, "istio-system", MeshConfigMap)
	if cm.Data["mesh"] == "" || cm.Data["meshNetworks"] != s.MeshNetworks {
		t.Errorf("istio ConfigMap data %v: want Istio's mesh kept and Horizon's meshNetworks", cm.Data)
	}
	if cm.Labels[ManagedByLabel] != "Helm" || cm.Labels["istio.io/rev"] != "default" {
		t.Errorf("istio ConfigMap labels %v: Helm's must stay", cm.Labels)
	}
	for _, mf := range cm.ManagedFields {
		if mf.Manager == FieldManager && strings.Contains(mf.FieldsV1.GetRawString(), `"f:mesh"`) {
			t.Errorf("horizon owns Istio's mesh key: %s", mf.FieldsV1.GetRawString())
		}
	}
	// (The fake keeps no resourceVersion and persists dry runs: the verb
	// itself is checked against a real API server in internal/integration.)
	if !strings.Contains(out.String(), "ConfigMap istio-system/istio unchanged (not Horizon's") {
		t.Errorf("progress does not say the ConfigMap is not Horizon's:\n%s", out.String())
	}

	// Uninstall deletes what Horizon created and leaves both.
	all := Defaults()
	all.Gateway, all.MeshNetworks, all.IstiodService = true, "networks: {}\n", true
	n, err := f.Uninstall(ctx, renderedUnstructured(t, all), io.Discard)
	if err != nil || n == 0 {
		t.Fatalf("uninstall: %d deleted, %v", n, err)
	}
	cm = f.configMap(t, "istio-system", MeshConfigMap)
	if cm.Data["mesh"] == "" {
		t.Errorf("uninstall changed Istio's ConfigMap: %v", cm.Data)
	}
	if _, err := f.tracker.Get(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, "", "istio-system", metav1.GetOptions{}); err != nil {
		t.Errorf("namespace: %v", err)
	}
	if _, err := f.tracker.Get(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, "istio-system", DiscoveryName, metav1.GetOptions{}); err == nil {
		t.Error("uninstall left discovery's Deployment")
	}
}

// meshNetworks that Istio's chart set to something else is a conflict:
// install fails naming it before applying anything, and Istio's value stays.
func TestApplyRefusesToTakeOverAnotherManagersField(t *testing.T) {
	f := newFakeCluster(t)
	f.create(t, istioConfigMap("networks: {}\n"), "helm")
	s := Defaults()
	s.MeshNetworks = "networks:\n  network1:\n    endpoints:\n    - fromRegistry: Kubernetes\n"
	_, err := f.Apply(context.Background(), renderedUnstructured(t, s), false, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "nothing applied") || !strings.Contains(err.Error(), "ConfigMap istio-system/istio existed before Horizon") ||
		!strings.Contains(err.Error(), "meshNetworks") {
		t.Fatalf("apply: %v; want a refusal naming the ConfigMap and meshNetworks", err)
	}
	if cm := f.configMap(t, "istio-system", MeshConfigMap); cm.Data["meshNetworks"] != "networks: {}\n" {
		t.Errorf("meshNetworks %q: Istio's value was taken over", cm.Data["meshNetworks"])
	}
	if _, err := f.tracker.Get(schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}, "istio-system", DiscoveryName, metav1.GetOptions{}); err == nil {
		t.Error("a refused install applied objects")
	}
}

// An istiod Service Horizon did not create (Istio's) is refused, before
// anything is applied; one Horizon created is applied again.
func TestApplyRefusesIstiosIstiodService(t *testing.T) {
	f := newFakeCluster(t)
	f.create(t, &corev1.Service{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: IstiodName, Namespace: "istio-system", Labels: map[string]string{"app": "istiod"}},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "istiod", "istio": "pilot"},
			Ports: []corev1.ServicePort{{Name: "https-dns", Port: 15012}}}}, "helm")
	s := Defaults()
	s.IstiodService = true
	_, err := f.Apply(context.Background(), renderedUnstructured(t, s), false, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "Service istio-system/istiod exists and Horizon did not create it") {
		t.Fatalf("apply over Istio's istiod Service: %v", err)
	}
	o, err := f.tracker.Get(schema.GroupVersionResource{Version: "v1", Resource: "services"}, "istio-system", IstiodName, metav1.GetOptions{})
	if err != nil || o.(*corev1.Service).Spec.Selector["app"] != "istiod" {
		t.Fatalf("Istio's istiod Service changed: %v %v", o, err)
	}
	if _, err := f.tracker.Get(schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}, "istio-system", DiscoveryName, metav1.GetOptions{}); err == nil {
		t.Error("a refused install applied objects")
	}

	// Without Istio's, Horizon's istiod Service is created, and applied
	// again on the next install.
	g := newFakeCluster(t)
	for i := 0; i < 2; i++ {
		if _, err := g.Apply(context.Background(), renderedUnstructured(t, s), false, io.Discard); err != nil {
			t.Fatalf("install %d: %v", i+1, err)
		}
	}
	o, err = g.tracker.Get(schema.GroupVersionResource{Version: "v1", Resource: "services"}, "istio-system", IstiodName, metav1.GetOptions{})
	if err != nil || o.(*corev1.Service).Spec.Selector["app"] != DiscoveryName || o.(*corev1.Service).Labels[ManagedByLabel] != ManagedBy {
		t.Fatalf("Horizon's istiod Service: %+v, %v", o, err)
	}
}
