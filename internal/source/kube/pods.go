package kube

import (
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/horizonmesh/horizon/internal/model"
)

// podsCache is what the last conversion made of the store's Pods, for the
// next one to apply only the Pods changed since (changes.podsSince).
type podsCache struct {
	table *model.PodTable
	gen   uint64 // the store's changes.gen when converted
	// diags are the problems of the Pods that have some, by Pod.
	diags map[objectKey]model.Diagnostics
}

// convertPods returns the Pod table of the store (model.PodTable): every
// Pod that runs a workload at addresses of its own, with its Node's
// locality. From a cache of this store it converts only the Pods changed
// since, so a push costs the Pods that changed (and, when some did, one
// copy of the table's maps); a Node change, or a cache too old for the
// change log, converts every Pod (still keeping the equal ones, so
// ChangedPodAddrs names only the Pods that really changed). Called with
// s.mu held.
func (c *converter) convertPods(cache *podsCache) (podsCache, model.Diagnostics) {
	var prev podsCache
	var changed map[objectKey]struct{}
	if cache != nil {
		prev = *cache
		if ch, ok := c.s.changes.podsSince(cache.gen); ok {
			changed = ch
		}
	}
	next := podsCache{gen: c.s.changes.gen, diags: map[objectKey]model.Diagnostics{}}
	var updates []model.PodUpdate
	update := func(k objectKey) {
		var p *model.Pod
		if e, ok := c.s.pods[k]; ok {
			var diags model.Diagnostics
			p, diags = c.workloadPod(e.obj, e.origin)
			if len(diags) > 0 {
				next.diags[k] = diags
			}
		}
		updates = append(updates, model.PodUpdate{Ref: model.PodRef{Namespace: k.namespace, Name: k.name}, Pod: p})
	}
	if changed != nil {
		for k, d := range prev.diags {
			if _, redo := changed[k]; !redo {
				next.diags[k] = d
			}
		}
		for k := range changed {
			update(k)
		}
	} else {
		for k := range c.s.pods {
			update(k)
		}
		for _, ref := range prev.table.Refs() {
			if _, ok := c.s.pods[objectKey{ref.Namespace, ref.Name}]; !ok {
				updates = append(updates, model.PodUpdate{Ref: ref})
			}
		}
	}
	next.table = prev.table.Apply(updates)
	var diags model.Diagnostics
	for _, k := range sortedKeys(next.diags) {
		diags = append(diags, next.diags[k]...)
	}
	return next, diags
}

// workloadPod converts a Pod that runs a workload at addresses of its own:
// not finished (its address may already be another Pod's), not on the
// host's network (its address is the Node's, shared), with an IP. Others
// are nil. Labels are shared with the stored object, not copied.
func (c *converter) workloadPod(p *corev1.Pod, origin string) (*model.Pod, model.Diagnostics) {
	if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return nil, nil
	}
	var diags model.Diagnostics
	var addrs []netip.Addr
	add := func(field, ip string) {
		a, err := netip.ParseAddr(ip)
		if err != nil || a.Zone() != "" {
			diags.AddError(origin, objName("Pod", p.Namespace, p.Name), field, fmt.Sprintf("invalid IP %q; address ignored", ip))
			return
		}
		if a = a.Unmap(); !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	if len(p.Status.PodIPs) > 0 {
		for i, ip := range p.Status.PodIPs {
			add(fmt.Sprintf("status.podIPs[%d].ip", i), ip.IP)
		}
	} else if p.Status.PodIP != "" {
		add("status.podIP", p.Status.PodIP)
	}
	if len(addrs) == 0 {
		return nil, diags
	}
	sa := p.Spec.ServiceAccountName
	if sa == "" {
		sa = DefaultServiceAcct
	}
	return &model.Pod{Namespace: p.Namespace, Name: p.Name, ServiceAccount: sa, Labels: p.Labels,
		Addresses: addrs, Locality: c.locality(p.Spec.NodeName)}, diags
}
