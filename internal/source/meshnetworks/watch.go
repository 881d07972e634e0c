package meshnetworks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/horizonmesh/horizon/internal/model"
)

// Sink receives meshNetworks changes: valid ones to apply, invalid ones to
// report while the last good config keeps serving.
type Sink interface {
	SetMeshNetworks(n *model.MeshNetworks, warnings model.Diagnostics)
	MeshNetworksRejected(error)
}

// ConfigMapKey is the ConfigMap data key holding meshNetworks, as Istio's
// `istio` ConfigMap has it.
const ConfigMapKey = "meshNetworks"

func apply(sink Sink, origin string, data []byte) {
	nets, diags := Parse(origin, data)
	if err := diags.Err(); err != nil {
		sink.MeshNetworksRejected(err)
		return
	}
	sink.SetMeshNetworks(nets, diags.Warnings())
}

// WatchConfigMap follows data.meshNetworks of ConfigMap namespace/name (the
// walkthrough's `kubectl edit cm -n istio-system istio`) until ctx ends. It
// returns once the ConfigMap informer has synced. A missing ConfigMap or key
// means no meshNetworks.
func WatchConfigMap(ctx context.Context, client kubernetes.Interface, namespace, name string, sink Sink) error {
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}))
	inf := factory.Core().V1().ConfigMaps().Informer()
	origin := fmt.Sprintf("ConfigMap %s/%s key %s", namespace, name, ConfigMapKey)
	var mu sync.Mutex // handlers and the initial check below
	var last []byte
	seen := false
	onChange := func(obj any) {
		mu.Lock()
		defer mu.Unlock()
		cm, ok := obj.(*corev1.ConfigMap)
		if ok && cm.Name != name {
			return // the field selector already filters; be safe anyway
		}
		var data []byte
		if ok && cm != nil {
			data = []byte(cm.Data[ConfigMapKey])
		}
		if seen && bytes.Equal(data, last) {
			return // another key of the ConfigMap changed
		}
		seen, last = true, data
		apply(sink, origin, data)
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    onChange,
		UpdateFunc: func(_, o any) { onChange(o) },
		DeleteFunc: func(any) { onChange(nil) },
	})
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return errors.New("meshNetworks ConfigMap informer did not sync")
	}
	mu.Lock()
	missing := !seen
	mu.Unlock()
	if missing {
		onChange(nil) // no ConfigMap: no networks, but a defined state
	}
	return nil
}
