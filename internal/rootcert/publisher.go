// Package rootcert publishes the mesh root certificate as the ConfigMap
// istio-ca-root-cert (key root-cert.pem) in every namespace of a cluster
// and keeps it current: injected pods, Horizon's and Istio's alike, mount
// it to trust discovery and their peers.
package rootcert

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Name and key of the ConfigMap, as Istio names them.
const (
	ConfigMapName = "istio-ca-root-cert"
	Key           = "root-cert.pem"
)

// Publisher keeps the root certificate ConfigMap in every namespace.
type Publisher struct {
	Client  kubernetes.Interface
	RootPEM []byte
	// Labels are set on every ConfigMap it writes.
	Labels map[string]string
	Log    *slog.Logger
}

// Run publishes until ctx ends: once per namespace as it appears, and again
// whenever someone edits or deletes a published ConfigMap. Failures are
// retried with back-off per namespace.
func (p *Publisher) Run(ctx context.Context) {
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	defer queue.ShutDown()
	nsFactory := informers.NewSharedInformerFactory(p.Client, 10*time.Minute)
	cmFactory := informers.NewSharedInformerFactoryWithOptions(p.Client, 10*time.Minute,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", ConfigMapName).String()
		}))
	enqueueNS := func(obj any) {
		if ns, ok := obj.(*corev1.Namespace); ok && ns.Status.Phase != corev1.NamespaceTerminating {
			queue.Add(ns.Name)
		}
	}
	enqueueCM := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Name == ConfigMapName {
			queue.Add(cm.Namespace)
		}
	}
	_, _ = nsFactory.Core().V1().Namespaces().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueueNS, UpdateFunc: func(_, o any) { enqueueNS(o) },
	})
	_, _ = cmFactory.Core().V1().ConfigMaps().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, o any) { enqueueCM(o) }, DeleteFunc: enqueueCM,
	})
	nsFactory.Start(ctx.Done())
	cmFactory.Start(ctx.Done())
	go func() { <-ctx.Done(); queue.ShutDown() }()
	for {
		ns, shutdown := queue.Get()
		if shutdown {
			return
		}
		if err := p.ensure(ctx, ns); err != nil && ctx.Err() == nil {
			if queue.NumRequeues(ns) == 0 {
				p.Log.Warn("root certificate ConfigMap not published; retrying", "namespace", ns, "error", err)
			}
			queue.AddRateLimited(ns)
		} else {
			queue.Forget(ns)
		}
		queue.Done(ns)
	}
}

// ensure creates or corrects the ConfigMap in one namespace.
func (p *Publisher) ensure(ctx context.Context, ns string) error {
	cms := p.Client.CoreV1().ConfigMaps(ns)
	cur, err := cms.Get(ctx, ConfigMapName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName, Namespace: ns, Labels: p.Labels},
			Data: map[string]string{Key: string(p.RootPEM)}}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err) || apierrors.IsForbidden(err) && isTerminating(err) {
			return nil // raced with another replica, or the namespace is going
		}
		return err
	case err != nil:
		return err
	case bytes.Equal([]byte(cur.Data[Key]), p.RootPEM):
		return nil
	}
	cur = cur.DeepCopy()
	if cur.Data == nil {
		cur.Data = map[string]string{}
	}
	cur.Data[Key] = string(p.RootPEM)
	if _, err := cms.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update %s/%s: %w", ns, ConfigMapName, err)
	}
	p.Log.Info("root certificate ConfigMap corrected", "namespace", ns)
	return nil
}

// isTerminating: creating in a namespace being deleted is Forbidden.
func isTerminating(err error) bool {
	return apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause)
}
