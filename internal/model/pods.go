package model

import (
	"maps"
	"net/netip"
	"slices"
	"sync/atomic"
)

// Pod is a Pod of a cluster that runs (or will run) a workload at its
// addresses: not finished, with an IP of its own (not hostNetwork). Many
// proxies run in Pods no Service selects (clients, CronJobs, batch Jobs);
// WorkloadAt falls back to their Pod so that such a sidecar still gets its
// Node's locality (and its namespace and labels), as Istio gives it.
type Pod struct {
	Namespace      string
	Name           string
	ServiceAccount string
	// Labels are shared with the source's object (never modified): a
	// Pod costs no copy of its labels.
	Labels    map[string]string
	Addresses []netip.Addr
	// Locality is its Node's.
	Locality Locality
}

// Equal reports whether p and o are the same Pod in every field.
func (p *Pod) Equal(o *Pod) bool {
	if p == o {
		return true
	}
	if p == nil || o == nil {
		return false
	}
	return p.Namespace == o.Namespace && p.Name == o.Name && p.ServiceAccount == o.ServiceAccount &&
		p.Locality == o.Locality && slices.Equal(p.Addresses, o.Addresses) && maps.Equal(p.Labels, o.Labels)
}

// PodRef names a Pod in its cluster.
type PodRef struct{ Namespace, Name string }

// PodUpdate is what Apply does for one Pod: Pod is its new state, nil when
// it is gone (or no longer runs a workload).
type PodUpdate struct {
	Ref PodRef
	Pod *Pod
}

// PodTable is one cluster's Pods by address. It is immutable: Apply
// returns a new table (or the same one when nothing changed), which
// remembers the addresses whose Pods differ from its base's, so that the
// control plane finds the proxies a Pod change concerns without comparing
// whole tables (ChangedPodAddrs).
type PodTable struct {
	byRef  map[PodRef]*Pod
	byAddr map[netip.Addr][]*Pod // each sorted by namespace, name
	gen    uint64                // unique per table
	base   uint64                // the gen of the table Apply was called on
	// changed are the addresses whose Pods differ from base's table.
	changed []netip.Addr
}

var podTableGen atomic.Uint64

// Len returns the number of Pods in t (nil: none).
func (t *PodTable) Len() int {
	if t == nil {
		return 0
	}
	return len(t.byRef)
}

// At returns the Pods at addr, sorted by namespace and name (usually one;
// a reused address may briefly be listed for two). They must not be
// modified.
func (t *PodTable) At(addr netip.Addr) []*Pod {
	if t == nil {
		return nil
	}
	return t.byAddr[addr]
}

// Apply returns the table with updates applied (the last update of a Pod
// counts). A Pod equal to the one t holds keeps that one; when no update
// changes anything, t itself is returned. t may be nil (an empty table).
// The cost is that of the updates plus, when something changed, one copy
// of t's maps.
func (t *PodTable) Apply(updates []PodUpdate) *PodTable {
	var next *PodTable
	changed := map[netip.Addr]bool{}
	for _, u := range updates {
		var old *Pod
		if next != nil {
			old = next.byRef[u.Ref]
		} else if t != nil {
			old = t.byRef[u.Ref]
		}
		if old.Equal(u.Pod) {
			continue
		}
		if next == nil {
			next = t.clone()
		}
		if old != nil {
			delete(next.byRef, u.Ref)
			for _, a := range old.Addresses {
				next.byAddr[a] = slices.DeleteFunc(slices.Clone(next.byAddr[a]), func(p *Pod) bool { return p == old })
				if len(next.byAddr[a]) == 0 {
					delete(next.byAddr, a)
				}
				changed[a] = true
			}
		}
		if p := u.Pod; p != nil {
			next.byRef[u.Ref] = p
			for _, a := range p.Addresses {
				at := append(slices.Clone(next.byAddr[a]), p)
				slices.SortFunc(at, podCompare)
				next.byAddr[a] = at
				changed[a] = true
			}
		}
	}
	if next == nil {
		return t
	}
	next.changed = slices.SortedFunc(maps.Keys(changed), netip.Addr.Compare)
	return next
}

func podCompare(a, b *Pod) int {
	if a.Namespace != b.Namespace {
		if a.Namespace < b.Namespace {
			return -1
		}
		return 1
	}
	if a.Name < b.Name {
		return -1
	}
	if a.Name > b.Name {
		return 1
	}
	return 0
}

// clone returns a new table holding t's Pods, based on t.
func (t *PodTable) clone() *PodTable {
	n := &PodTable{gen: podTableGen.Add(1)}
	if t == nil {
		n.byRef, n.byAddr = map[PodRef]*Pod{}, map[netip.Addr][]*Pod{}
		return n
	}
	n.byRef, n.byAddr, n.base = maps.Clone(t.byRef), maps.Clone(t.byAddr), t.gen
	return n
}

// Get returns the Pod ref names, or nil.
func (t *PodTable) Get(ref PodRef) *Pod {
	if t == nil {
		return nil
	}
	return t.byRef[ref]
}

// Refs returns the references of every Pod in t, in no order.
func (t *PodTable) Refs() []PodRef {
	if t == nil {
		return nil
	}
	return slices.Collect(maps.Keys(t.byRef))
}

// changedSince returns the addresses whose Pods differ between old and t:
// what Apply recorded when t was made from old, else a comparison of both.
func (t *PodTable) changedSince(old *PodTable) []netip.Addr {
	switch {
	case t == old:
		return nil
	case t != nil && old != nil && t.base == old.gen:
		return t.changed
	}
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, pair := range [2][2]*PodTable{{t, old}, {old, t}} {
		if pair[0] == nil {
			continue
		}
		for a, pods := range pair[0].byAddr {
			if !seen[a] && !slices.EqualFunc(pods, pair[1].At(a), (*Pod).Equal) {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}

// Pods returns the Pod table of cluster (nil: none).
func (m *Mesh) Pods(cluster ClusterID) *PodTable { return m.pods[cluster] }

// ChangedPodAddrs calls f with every (cluster, address) whose Pods differ
// between prev and m: what a proxy there is classified by when no
// endpoint has its address. It costs the Pods that changed, unless a
// cluster's table is not the successor of its previous one (a cluster
// that joined, left or was skipped), which is compared whole.
func ChangedPodAddrs(prev, m *Mesh, f func(ClusterID, netip.Addr)) {
	for id, t := range m.pods {
		for _, a := range t.changedSince(prev.pods[id]) {
			f(id, a)
		}
	}
	for id, old := range prev.pods {
		if _, ok := m.pods[id]; !ok {
			for _, a := range (*PodTable)(nil).changedSince(old) {
				f(id, a)
			}
		}
	}
}

// podAt is WorkloadAt's fallback: the Pod of cluster at the first of ips
// that one has, running as namespace/serviceAccount when they are set;
// of Pods at one address, the first by namespace and name.
func (m *Mesh) podAt(cluster ClusterID, ips []netip.Addr, namespace, serviceAccount string) (Workload, bool) {
	t := m.pods[cluster]
	if t == nil {
		return Workload{}, false
	}
	for _, ip := range ips {
		for _, p := range t.At(ip) {
			if namespace != "" && (p.Namespace != namespace || p.ServiceAccount != serviceAccount) {
				continue
			}
			// No ports: its sidecar has no inbound side (as for a proxy
			// whose workload the mesh does not know), but its locality,
			// namespace and labels are the Pod's.
			return Workload{Namespace: p.Namespace, PodName: p.Name, ServiceAccount: p.ServiceAccount,
				Labels: p.Labels, Locality: p.Locality}, true
		}
	}
	return Workload{}, false
}
