package server

import (
	"sort"
	"strconv"
	"sync"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// logSteps is how many past changes a view remembers by name. A stream at
// most this far behind learns what to send from the log in O(changed); one
// further behind scans its subscription.
const logSteps = 64

// viewEntry is one view: its resources, each marshalled once, the version
// at which each last changed, a short log of changes, and the streams
// subscribed to it. Streams read it under mu; Update replaces what it holds
// and tells their subscribers.
type viewEntry struct {
	view View
	refs int // bindings, guarded by ViewCache.mu
	// tag is unique to this view of this process (see ViewCache.instance);
	// prefix is the version_info prefix, the view's key and tag.
	tag, prefix string

	mu sync.Mutex
	// current is what the view holds (replaced, never mutated, by Update).
	current map[string]types.Resource
	res     map[string]served
	names   []string                   // of res, sorted: responses list resources in this order
	version uint64                     // 0 when built, +1 per Update that changed something
	log     []step                     // the last changes, oldest first, log[len-1].ver == version
	subs    map[*typeStream]subscriber // each with whom to tell of changes
	// shared are responses encoded once for the current version and sent
	// as they are to every stream they fit; reset by Update.
	shared map[sharedKind]*sharedMsg
	// nameSets are the state-of-the-world subscriptions of the view's
	// streams by their wire bytes: proxies of a view mostly ask for the
	// same names, and share one read-only set (1,000 streams of 1,000
	// names held one million map entries). What a client asks for is
	// client input: at most maxNameSets distinct sets of at most
	// maxNameSetBytes in all are kept, each only while a stream holds it
	// (refs), so that sets a client invented and left do not take the
	// places of the view's other streams for as long as the view lives;
	// past that a stream holds its own, freed with it.
	nameSets     map[string]*nameSet
	nameSetBytes int
	// share holds the marshalled resources every view holds by the same
	// pointer (nil: marshal each); freed is set once the view is gone.
	share *anyShare
	freed bool
}

// nameSet is a subscription's names (without "*") and whether it has "*";
// raw is its key, the names' wire bytes; refs the streams holding it.
type nameSet struct {
	raw      string
	names    map[string]struct{}
	wildcard bool
	refs     int
}

const (
	maxNameSets     = 64
	maxNameSetBytes = 1 << 20
)

// nameSet returns the read-only set of a subscription and its key, shared
// by the view's streams that asked for the same bytes; interned reports
// that the caller holds one reference to it in the view, to give back with
// releaseNames. Called with e.mu held.
func (e *viewEntry) nameSet(raw []byte, names []string) (key string, set map[string]struct{}, wildcard, interned bool) {
	if s, ok := e.nameSets[string(raw)]; ok {
		s.refs++
		return s.raw, s.names, s.wildcard, true
	}
	s := &nameSet{raw: string(raw), names: make(map[string]struct{}, len(names))}
	for _, n := range names {
		if n == wildcardName {
			s.wildcard = true
			continue
		}
		s.names[n] = struct{}{}
	}
	if len(e.nameSets) < maxNameSets && e.nameSetBytes+len(raw) <= maxNameSetBytes {
		if e.nameSets == nil {
			e.nameSets = map[string]*nameSet{}
		}
		s.refs = 1
		e.nameSets[s.raw] = s
		e.nameSetBytes += len(raw)
		interned = true
	}
	return s.raw, s.names, s.wildcard, interned
}

// releaseNames gives back one reference to the set of key, forgetting it
// with its last. Called with e.mu held.
func (e *viewEntry) releaseNames(key string) {
	s, ok := e.nameSets[key]
	if !ok {
		return
	}
	if s.refs--; s.refs <= 0 {
		delete(e.nameSets, key)
		e.nameSetBytes -= len(key)
	}
}

// served is one resource as sent: marshalled, and the view version at
// which it last changed (also its version in delta responses).
type served struct {
	any *anypb.Any
	ver uint64
	src types.Resource // what any was marshalled from, to give back to share
}

// step is one Update: the names it changed (added or modified) and removed.
type step struct {
	ver              uint64
	changed, removed []string
}

func newViewEntry(v View, tag string, res map[string]types.Resource) *viewEntry {
	e := emptyViewEntry(v, tag)
	e.fill(res)
	return e
}

// emptyViewEntry is a view before its first build (see ViewCache.Bind,
// which builds it under its own lock rather than the cache's).
func emptyViewEntry(v View, tag string) *viewEntry {
	return &viewEntry{view: v, tag: tag, prefix: v.Key.String() + "@" + tag + "-", subs: map[*typeStream]subscriber{}}
}

// fill sets a new view's first resources. Called with e.mu held, before
// any stream reads the view.
func (e *viewEntry) fill(res map[string]types.Resource) {
	e.current, e.res = res, make(map[string]served, len(res))
	for name, r := range res {
		e.res[name] = served{any: e.share.get(r), ver: 0, src: r}
	}
	e.names = sortedKeys(e.res)
}

// mustAny marshals a resource the control plane built. Marshalling a valid
// message in memory cannot fail short of a bug, and a half-built view must
// never be served: panic rather than drop the resource silently.
func mustAny(r types.Resource) *anypb.Any {
	a, err := anypb.New(r)
	if err != nil {
		panic("xds/server: marshalling a built resource: " + err.Error())
	}
	return a
}

func sortedKeys(m map[string]served) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// versionInfo is the view's current version_info. Called with e.mu held.
func (e *viewEntry) versionInfo() string { return e.prefix + strconv.FormatUint(e.version, 10) }

// resourceVersion is a resource's version in delta responses.
func (e *viewEntry) resourceVersion(ver uint64) string {
	return e.tag + "-" + strconv.FormatUint(ver, 10)
}

// apply records one update: the resources that changed (new or different)
// and those removed. Called with e.mu held; it returns the subscribers
// to tell.
func (e *viewEntry) apply(all map[string]types.Resource, changed map[string]types.Resource, removed []string) []subscriber {
	e.version++
	e.current = all
	// e.res is read only under e.mu: updated in place, in O(changed).
	st := step{ver: e.version, removed: removed}
	renamed := len(removed) > 0 // the set of names changes: e.names too
	for name, r := range changed {
		if _, ok := e.res[name]; !ok {
			renamed = true
		}
		if old, ok := e.res[name]; ok {
			e.share.put(old.src)
		}
		e.res[name] = served{any: e.share.get(r), ver: e.version, src: r}
		st.changed = append(st.changed, name)
	}
	for _, name := range removed {
		e.share.put(e.res[name].src)
		delete(e.res, name)
	}
	sort.Strings(st.changed)
	sort.Strings(st.removed)
	if renamed {
		e.names = sortedKeys(e.res)
	}
	if len(e.log) == logSteps {
		copy(e.log, e.log[1:])
		e.log = e.log[:logSteps-1]
	}
	e.log = append(e.log, st)
	e.shared = nil
	out := make([]subscriber, 0, len(e.subs))
	for _, s := range e.subs {
		out = append(out, s)
	}
	return out
}

// since returns the names changed and removed after version ver, from the
// log; ok is false when the log does not reach back that far. A name may
// be in both (changed, then removed): the caller checks what exists.
// Called with e.mu held.
func (e *viewEntry) since(ver uint64) (changed, removed []string, ok bool) {
	if ver >= e.version {
		return nil, nil, true
	}
	if len(e.log) == 0 || e.log[0].ver > ver+1 {
		return nil, nil, false
	}
	first := len(e.log) - int(e.version-ver)
	if first == len(e.log)-1 {
		return e.log[first].changed, e.log[first].removed, true
	}
	seen := map[string]bool{}
	for _, st := range e.log[first:] {
		for _, n := range st.changed {
			if !seen[n] {
				seen[n] = true
				changed = append(changed, n)
			}
		}
		removed = append(removed, st.removed...)
	}
	return changed, removed, true
}

// last is the step of the current version (zero before any Update).
// Called with e.mu held.
func (e *viewEntry) last() step {
	if len(e.log) == 0 {
		return step{}
	}
	return e.log[len(e.log)-1]
}

// fullState reports whether a state-of-the-world response of the type must
// list every resource (the proxy drops what is missing): listeners and
// clusters. Endpoints and routes may be sent a few at a time.
func fullState(typeURL string) bool {
	return typeURL == resource.ClusterType || typeURL == resource.ListenerType
}

// anyShare marshals a resource once however many views hold it: the
// control plane hands the EDS views of one network's localities the same
// load assignment (the same pointer) for every service without a locality
// policy, and each view would otherwise marshal its own copy on every
// change. Entries are counted by the views holding them and dropped with
// the last.
type anyShare struct {
	mu sync.Mutex
	m  map[types.Resource]*sharedAny
}

type sharedAny struct {
	any  *anypb.Any
	refs int
}

func newAnyShare() *anyShare { return &anyShare{m: map[types.Resource]*sharedAny{}} }

// get returns r marshalled, counting one more holder.
func (s *anyShare) get(r types.Resource) *anypb.Any {
	if s == nil {
		return mustAny(r)
	}
	s.mu.Lock()
	if x := s.m[r]; x != nil {
		x.refs++
		s.mu.Unlock()
		return x.any
	}
	s.mu.Unlock()
	a := mustAny(r) // outside the lock: views marshal in parallel
	s.mu.Lock()
	defer s.mu.Unlock()
	if x := s.m[r]; x != nil { // another view was quicker
		x.refs++
		return x.any
	}
	s.m[r] = &sharedAny{any: a, refs: 1}
	return a
}

// put gives back one holder of r.
func (s *anyShare) put(r types.Resource) {
	if s == nil || r == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if x := s.m[r]; x != nil {
		if x.refs--; x.refs <= 0 {
			delete(s.m, r)
		}
	}
}

// free gives back every resource of a view that is gone; an Update that
// still reaches it afterwards changes nothing.
func (e *viewEntry) free() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.freed {
		return
	}
	e.freed = true
	// The marshalled bytes stay: a stream that has not yet learnt of its
	// move may still read them.
	for _, r := range e.res {
		e.share.put(r.src)
	}
}
