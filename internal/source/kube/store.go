// Package kube converts Kubernetes objects (Namespaces, Services,
// EndpointSlices, Pods, Nodes) of one cluster into a model.ClusterSnapshot.
//
// Both the offline manifest loader and the live informers fill a Store and
// call Convert, so a cluster means the same thing whichever way it is read.
package kube

import (
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Options tune the conversion.
type Options struct {
	// DomainSuffix ends service hostnames (cluster.local by default). The
	// model computes hostnames; the field is here for the live source.
	DomainSuffix string
	// SystemNamespace is the namespace whose network label names the
	// cluster's network (istio-system by default).
	SystemNamespace string
}

func (o Options) systemNamespace() string {
	if o.SystemNamespace == "" {
		return DefaultSystemNS
	}
	return o.SystemNamespace
}

// objectKey names an object within its kind.
type objectKey struct{ namespace, name string }

// entry is a stored object with where it came from (a file, or "" live).
type entry[T any] struct {
	obj    T
	origin string
}

// Store holds the objects of one cluster that matter to Horizon. It is safe
// for concurrent use.
type Store struct {
	mu         sync.RWMutex
	namespaces map[objectKey]entry[*corev1.Namespace]
	services   map[objectKey]entry[*corev1.Service]
	slices     map[objectKey]entry[*discoveryv1.EndpointSlice]
	pods       map[objectKey]entry[*corev1.Pod]
	nodes      map[objectKey]entry[*corev1.Node]
	changes    changes
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{
		namespaces: map[objectKey]entry[*corev1.Namespace]{},
		services:   map[objectKey]entry[*corev1.Service]{},
		slices:     map[objectKey]entry[*discoveryv1.EndpointSlice]{},
		pods:       map[objectKey]entry[*corev1.Pod]{},
		nodes:      map[objectKey]entry[*corev1.Node]{},
		changes:    newChanges(),
	}
}

// Supported reports whether the store keeps objects of obj's type.
func Supported(obj runtime.Object) bool {
	switch obj.(type) {
	case *corev1.Namespace, *corev1.Service, *discoveryv1.EndpointSlice, *corev1.Pod, *corev1.Node:
		return true
	}
	return false
}

// Upsert adds or replaces an object and reports whether its type is
// supported. The store keeps the pointer: callers must not modify the object
// afterwards (informer objects are never modified).
func (s *Store) Upsert(obj runtime.Object, origin string) bool {
	if isNil(obj) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch o := obj.(type) {
	case *corev1.Namespace:
		s.namespaces[objectKey{"", o.Name}] = entry[*corev1.Namespace]{o, origin}
	case *corev1.Service:
		k := objectKey{o.Namespace, o.Name}
		if _, ok := s.services[k]; !ok {
			s.changes.serviceSet++
		}
		s.services[k] = entry[*corev1.Service]{o, origin}
	case *discoveryv1.EndpointSlice:
		s.slices[objectKey{o.Namespace, o.Name}] = entry[*discoveryv1.EndpointSlice]{o, origin}
	case *corev1.Pod:
		s.pods[objectKey{o.Namespace, o.Name}] = entry[*corev1.Pod]{o, origin}
	case *corev1.Node:
		s.nodes[objectKey{"", o.Name}] = entry[*corev1.Node]{o, origin}
	default:
		return false
	}
	s.changes.record(obj, false)
	s.changes.trimPodLog(len(s.pods))
	return true
}

// Origin returns where an already stored object of the same kind, namespace
// and name came from, and whether there is one.
func (s *Store) Origin(obj runtime.Object) (string, bool) {
	if isNil(obj) {
		return "", false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	switch o := obj.(type) {
	case *corev1.Namespace:
		return origin(s.namespaces, objectKey{"", o.Name})
	case *corev1.Service:
		return origin(s.services, objectKey{o.Namespace, o.Name})
	case *discoveryv1.EndpointSlice:
		return origin(s.slices, objectKey{o.Namespace, o.Name})
	case *corev1.Pod:
		return origin(s.pods, objectKey{o.Namespace, o.Name})
	case *corev1.Node:
		return origin(s.nodes, objectKey{"", o.Name})
	}
	return "", false
}

func origin[T any](m map[objectKey]entry[T], k objectKey) (string, bool) {
	e, ok := m[k]
	return e.origin, ok
}

// Delete removes the object of obj's kind, namespace and name, if stored.
func (s *Store) Delete(obj runtime.Object) {
	if isNil(obj) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch o := obj.(type) {
	case *corev1.Namespace:
		delete(s.namespaces, objectKey{"", o.Name})
	case *corev1.Service:
		s.changes.serviceSet++
		k := objectKey{o.Namespace, o.Name}
		delete(s.services, k)
		defer s.forgetService(k)
	case *discoveryv1.EndpointSlice:
		k := objectKey{o.Namespace, o.Name}
		delete(s.slices, k)
		if svc, ok := s.changes.sliceSvc[k]; ok {
			defer s.forgetService(svc)
		}
	case *corev1.Pod:
		delete(s.pods, objectKey{o.Namespace, o.Name})
	case *corev1.Node:
		delete(s.nodes, objectKey{"", o.Name})
	default:
		return
	}
	s.changes.record(obj, true)
	s.changes.trimPodLog(len(s.pods))
}

// forgetService drops what the change tracking holds of service k once
// neither its Service nor any slice of it is stored (called after the
// deletion is recorded): services that come and go do not grow it. A
// conversion caches only stored Services, and one that comes back is
// touched anew.
func (s *Store) forgetService(k objectKey) {
	if _, ok := s.services[k]; !ok && len(s.changes.svcSlices[k]) == 0 {
		delete(s.changes.svcGen, k)
	}
}

// isNil reports whether obj is nil or a nil pointer of a supported type, so
// that odd input never panics.
func isNil(obj runtime.Object) bool {
	switch o := obj.(type) {
	case nil:
		return true
	case *corev1.Namespace:
		return o == nil
	case *corev1.Service:
		return o == nil
	case *discoveryv1.EndpointSlice:
		return o == nil
	case *corev1.Pod:
		return o == nil
	case *corev1.Node:
		return o == nil
	}
	return false
}
