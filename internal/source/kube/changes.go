package kube

import (
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// changes tracks which services a store change can affect, so that a
// conversion redoes only those (Source.Snapshot). Every mutation bumps gen;
// svcGen[k] is the gen of the last one that may change service k's
// conversion (its Service, its EndpointSlices, the Pods they name);
// everything is that of the last one that may change them all (a Node: the
// localities; a Namespace: the system namespace's network). Called with
// Store.mu held for writing.
type changes struct {
	gen        uint64
	everything uint64
	serviceSet uint64 // bumped when a Service key appears or goes
	svcGen     map[objectKey]uint64
	sliceSvc   map[objectKey]objectKey              // slice → the service its label names
	svcSlices  map[objectKey]map[objectKey]struct{} // service → its slices
	// podSvcs: pod → the services whose slices name it, with how many of
	// each service's slices do; slicePods: slice → the pods it names. Both
	// hold only what the current slices say, so Pod churn does not grow
	// them.
	podSvcs   map[objectKey]map[objectKey]int
	slicePods map[objectKey][]objectKey
	// podLog lists the Pods changed, in gen order, for the Pod table's
	// incremental conversion (convertPods); podLogFrom is the gen of the
	// newest change trimmed from it; podsAll that of the last change that
	// may change every Pod's conversion (a Node: their localities).
	podLog     []podChange
	podLogFrom uint64
	podsAll    uint64
}

type podChange struct {
	gen uint64
	pod objectKey
}

// minPodLog is the length the Pod log may always reach before trimming.
const minPodLog = 1024

func newChanges() changes {
	return changes{svcGen: map[objectKey]uint64{}, sliceSvc: map[objectKey]objectKey{},
		svcSlices: map[objectKey]map[objectKey]struct{}{}, podSvcs: map[objectKey]map[objectKey]int{},
		slicePods: map[objectKey][]objectKey{}}
}

func (c *changes) touch(k objectKey) { c.svcGen[k] = c.gen }

func (c *changes) all() { c.everything = c.gen }

// slice records an EndpointSlice upserted (sl) or deleted (sl nil) under k.
func (c *changes) slice(k objectKey, sl *discoveryv1.EndpointSlice) {
	c.gen++
	if old, ok := c.sliceSvc[k]; ok {
		c.touch(old)
		delete(c.svcSlices[old], k)
		if len(c.svcSlices[old]) == 0 {
			delete(c.svcSlices, old)
		}
		delete(c.sliceSvc, k)
		for _, pk := range c.slicePods[k] {
			if c.podSvcs[pk][old]--; c.podSvcs[pk][old] <= 0 {
				delete(c.podSvcs[pk], old)
			}
			if len(c.podSvcs[pk]) == 0 {
				delete(c.podSvcs, pk)
			}
		}
		delete(c.slicePods, k)
	}
	if sl == nil {
		return
	}
	svc := objectKey{sl.Namespace, sl.Labels[LabelServiceName]}
	c.sliceSvc[k] = svc
	if c.svcSlices[svc] == nil {
		c.svcSlices[svc] = map[objectKey]struct{}{}
	}
	c.svcSlices[svc][k] = struct{}{}
	c.touch(svc)
	named := make(map[objectKey]struct{}, len(sl.Endpoints))
	for i := range sl.Endpoints {
		ref := sl.Endpoints[i].TargetRef
		if ref == nil || (ref.Kind != "" && ref.Kind != "Pod") {
			continue
		}
		ns := ref.Namespace
		if ns == "" {
			ns = sl.Namespace
		}
		pk := objectKey{ns, ref.Name}
		if _, dup := named[pk]; dup {
			continue // named twice by one slice: counted once
		}
		named[pk] = struct{}{}
		c.slicePods[k] = append(c.slicePods[k], pk)
		if c.podSvcs[pk] == nil {
			c.podSvcs[pk] = map[objectKey]int{}
		}
		c.podSvcs[pk][svc]++
	}
}

// pod records a Pod changed: the services whose slices name it, and the
// Pod itself for the Pod table.
func (c *changes) pod(k objectKey) {
	c.gen++
	for svc := range c.podSvcs[k] {
		c.touch(svc)
	}
	c.podLog = append(c.podLog, podChange{c.gen, k})
}

// trimPodLog keeps the Pod log within twice the number of Pods (pods), at
// least minPodLog: a conversion older than what it keeps converts every
// Pod again, which costs about as much as reading that many changes.
func (c *changes) trimPodLog(pods int) {
	if len(c.podLog) <= max(minPodLog, 2*pods) {
		return
	}
	half := len(c.podLog) / 2
	c.podLogFrom = c.podLog[half-1].gen
	c.podLog = append([]podChange(nil), c.podLog[half:]...) // frees the dropped half
}

// podsSince returns the Pods changed after gen, and false when those are
// not all known (trimmed, or a change that may change every Pod).
func (c *changes) podsSince(gen uint64) (map[objectKey]struct{}, bool) {
	if gen < c.podsAll || gen < c.podLogFrom {
		return nil, false
	}
	i := sort.Search(len(c.podLog), func(i int) bool { return c.podLog[i].gen > gen })
	out := make(map[objectKey]struct{}, len(c.podLog)-i)
	for _, pc := range c.podLog[i:] {
		out[pc.pod] = struct{}{}
	}
	return out, true
}

// service records a Service changed.
func (c *changes) service(k objectKey) {
	c.gen++
	c.touch(k)
}

// global records a change that may affect every service.
func (c *changes) global() {
	c.gen++
	c.all()
}

// record dispatches an upsert (obj set) or deletion of obj.
func (c *changes) record(obj any, deleted bool) {
	switch o := obj.(type) {
	case *corev1.Namespace:
		c.global()
	case *corev1.Node:
		c.global()
		c.podsAll = c.gen
	case *corev1.Service:
		c.service(objectKey{o.Namespace, o.Name})
	case *discoveryv1.EndpointSlice:
		if deleted {
			c.slice(objectKey{o.Namespace, o.Name}, nil)
		} else {
			c.slice(objectKey{o.Namespace, o.Name}, o)
		}
	case *corev1.Pod:
		c.pod(objectKey{o.Namespace, o.Name})
	}
}
