package kube

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/horizonmesh/horizon/internal/model"
)

// Watcher keeps a Store current from one cluster's API server with shared
// informers for Namespaces, Services, EndpointSlices, Pods and Nodes, and
// calls onChange after every event. Convert then reads the Store exactly as
// it reads one filled from manifests.
type Watcher struct {
	ID    model.ClusterID
	Store *Store

	factory   informers.SharedInformerFactory
	synced    []cache.InformerSynced
	onChange  func(model.ClusterID)
	lastEvent atomic.Int64 // unix nanoseconds
	lastErr   atomic.Pointer[string]
	stopOnce  sync.Once
	stop      chan struct{}
}

// NewWatcher prepares informers on client; Start runs them.
func NewWatcher(id model.ClusterID, client kubernetes.Interface, onChange func(model.ClusterID)) *Watcher {
	w := &Watcher{ID: id, Store: NewStore(), onChange: onChange, stop: make(chan struct{}),
		factory: informers.NewSharedInformerFactory(client, 0)}
	core := w.factory.Core().V1()
	pods := core.Pods().Informer()
	// Keep only what Convert reads: pods are the bulk of a cluster's objects.
	_ = pods.SetTransform(slimPod)
	for _, inf := range []cache.SharedIndexInformer{
		core.Namespaces().Informer(), core.Services().Informer(), core.Nodes().Informer(), pods,
		w.factory.Discovery().V1().EndpointSlices().Informer(),
	} {
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { w.upsert(obj) },
			UpdateFunc: func(_, obj any) { w.upsert(obj) },
			DeleteFunc: w.delete,
		})
		// Remember list/watch failures (an unreachable or forbidden API
		// server) so the cluster's status can say why it is not synced.
		_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			msg := err.Error()
			w.lastErr.Store(&msg)
		})
		w.synced = append(w.synced, inf.HasSynced)
	}
	return w
}

// Start runs the informers until Stop.
func (w *Watcher) Start() { w.factory.Start(w.stop) }

// Stop ends the informers; it is safe to call more than once.
func (w *Watcher) Stop() {
	w.stopOnce.Do(func() {
		close(w.stop)
		go w.factory.Shutdown() // waits for informer goroutines; never block the caller
	})
}

// HasSynced reports whether every informer has listed its objects once.
func (w *Watcher) HasSynced() bool {
	for _, s := range w.synced {
		if !s() {
			return false
		}
	}
	return true
}

// WaitForSync waits until the informers have synced, ctx ends or the watcher
// stops, and reports whether they synced.
func (w *Watcher) WaitForSync(ctx context.Context) bool {
	stop := make(chan struct{})
	go func() { // ends with ctx or the watcher
		select {
		case <-ctx.Done():
		case <-w.stop:
		}
		close(stop)
	}()
	return cache.WaitForCacheSync(stop, w.synced...)
}

// LastError is the last list/watch error, "" if none.
func (w *Watcher) LastError() string {
	if p := w.lastErr.Load(); p != nil {
		return *p
	}
	return ""
}

// LastEvent is when the last informer event arrived (zero before any).
func (w *Watcher) LastEvent() time.Time {
	ns := w.lastEvent.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func (w *Watcher) upsert(obj any) {
	if o, ok := obj.(runtime.Object); ok && w.Store.Upsert(o, "") {
		w.changed()
	}
}

func (w *Watcher) delete(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if o, ok := obj.(runtime.Object); ok && Supported(o) {
		w.Store.Delete(o)
		w.changed()
	}
}

func (w *Watcher) changed() {
	w.lastEvent.Store(time.Now().UnixNano())
	if w.onChange != nil {
		w.onChange(w.ID)
	}
}

// slimPod drops what Convert never reads from a Pod (containers, volumes,
// most of the status), cutting the informer cache's memory several fold.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return &corev1.Pod{
		TypeMeta:   p.TypeMeta,
		ObjectMeta: metav1ObjectMeta(p),
		Spec: corev1.PodSpec{NodeName: p.Spec.NodeName, ServiceAccountName: p.Spec.ServiceAccountName,
			HostNetwork: p.Spec.HostNetwork},
		Status: corev1.PodStatus{PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs, Phase: p.Status.Phase},
	}, nil
}

func metav1ObjectMeta(p *corev1.Pod) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID, Labels: p.Labels,
		ResourceVersion: p.ResourceVersion, DeletionTimestamp: p.DeletionTimestamp}
}
