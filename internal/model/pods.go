package model

import (
	"hash/maphash"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
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
//
// Its maps are split into shards by hash, and Apply copies only the
// shards it changes: a push that changes one Pod of a large cluster copies
// two small maps and the shard arrays, not the table.
type PodTable struct {
	byRef  [podShards]map[PodRef]*Pod
	byAddr [podShards]map[netip.Addr][]*Pod // each sorted by namespace, name
	n      int
	gen    uint64 // unique per table
	base   uint64 // the gen of the table Apply was called on
	// changed are the addresses whose Pods differ from base's table (and
	// any a batch changed and changed back).
	changed []netip.Addr
}

const podShards = 256

var (
	podTableGen atomic.Uint64
	podSeed     = maphash.MakeSeed()
)

func refShard(r PodRef) int { return int(maphash.Comparable(podSeed, r) % podShards) }

func addrShard(a netip.Addr) int {
	b := a.As16()
	return int(maphash.Bytes(podSeed, b[:]) % podShards)
}

// Len returns the number of Pods in t (nil: none).
func (t *PodTable) Len() int {
	if t == nil {
		return 0
	}
	return t.n
}

// At returns the Pods at addr, sorted by namespace and name (usually one;
// a reused address may briefly be listed for two). They must not be
// modified.
func (t *PodTable) At(addr netip.Addr) []*Pod {
	if t == nil {
		return nil
	}
	return t.byAddr[addrShard(addr)][addr]
}

// Get returns the Pod ref names, or nil.
func (t *PodTable) Get(ref PodRef) *Pod {
	if t == nil {
		return nil
	}
	return t.byRef[refShard(ref)][ref]
}

// Refs returns the references of every Pod in t, in no order.
func (t *PodTable) Refs() []PodRef {
	if t == nil {
		return nil
	}
	out := make([]PodRef, 0, t.n)
	for _, m := range t.byRef {
		for r := range m {
			out = append(out, r)
		}
	}
	return out
}

// Apply returns the table with updates applied (the last update of a Pod
// counts). A Pod equal to the one t holds keeps that one; when no update
// changes anything, t itself is returned. t may be nil (an empty table).
// The cost is that of the updates and the shards they change.
func (t *PodTable) Apply(updates []PodUpdate) *PodTable {
	var next *PodTable
	// The shards next has copied already (the others are t's).
	ownRef, ownAddr := map[int]bool{}, map[int]bool{}
	refs := func(i int) map[PodRef]*Pod {
		if !ownRef[i] {
			ownRef[i] = true
			next.byRef[i] = maps.Clone(next.byRef[i])
			if next.byRef[i] == nil {
				next.byRef[i] = map[PodRef]*Pod{}
			}
		}
		return next.byRef[i]
	}
	addrs := func(i int) map[netip.Addr][]*Pod {
		if !ownAddr[i] {
			ownAddr[i] = true
			next.byAddr[i] = maps.Clone(next.byAddr[i])
			if next.byAddr[i] == nil {
				next.byAddr[i] = map[netip.Addr][]*Pod{}
			}
		}
		return next.byAddr[i]
	}
	changed := map[netip.Addr]bool{}
	for _, u := range updates {
		cur := t
		if next != nil {
			cur = next
		}
		old := cur.Get(u.Ref)
		if old.Equal(u.Pod) {
			continue
		}
		if next == nil {
			next = &PodTable{gen: podTableGen.Add(1)}
			if t != nil {
				next.byRef, next.byAddr, next.n, next.base = t.byRef, t.byAddr, t.n, t.gen
			}
		}
		if old != nil {
			delete(refs(refShard(u.Ref)), u.Ref)
			next.n--
			for _, a := range old.Addresses {
				m := addrs(addrShard(a))
				if at := slices.DeleteFunc(slices.Clone(m[a]), func(p *Pod) bool { return p == old }); len(at) > 0 {
					m[a] = at
				} else {
					delete(m, a)
				}
				changed[a] = true
			}
		}
		if p := u.Pod; p != nil {
			refs(refShard(u.Ref))[u.Ref] = p
			next.n++
			for _, a := range p.Addresses {
				m := addrs(addrShard(a))
				at := append(slices.Clone(m[a]), p)
				slices.SortFunc(at, podCompare)
				m[a] = at
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
	if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// changedSince returns the addresses whose Pods differ between old and t:
// what Apply recorded when t was made from old, else a comparison of both
// (of the shards they do not share).
func (t *PodTable) changedSince(old *PodTable) []netip.Addr {
	switch {
	case t == old:
		return nil
	case t != nil && old != nil && t.base == old.gen:
		return t.changed
	}
	var out []netip.Addr
	for i := range podShards {
		var a, b map[netip.Addr][]*Pod
		if t != nil {
			a = t.byAddr[i]
		}
		if old != nil {
			b = old.byAddr[i]
		}
		if sameMap(a, b) {
			continue // one shard: no change in it
		}
		for addr, pods := range a {
			if !slices.EqualFunc(pods, b[addr], (*Pod).Equal) {
				out = append(out, addr)
			}
		}
		for addr := range b {
			if _, ok := a[addr]; !ok {
				out = append(out, addr)
			}
		}
	}
	return out
}

// sameMap reports whether a and b are one map (or both nil).
func sameMap(a, b map[netip.Addr][]*Pod) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
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
