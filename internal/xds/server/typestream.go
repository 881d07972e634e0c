package server

import (
	"slices"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// typeStream is one stream's subscription to one view: what it asked for
// and what it has been sent. Only the stream's own goroutine touches it,
// and it reads the view only under the view's lock.
type typeStream struct {
	c       *conn
	e       *viewEntry
	typeURL string
	// started: the stream has been brought to version at (sent what it
	// needs of it, or found nothing to send).
	started bool
	at      uint64
	// What the proxy subscribes to: everything (wildcard) and/or names.
	// legacy: its first request named nothing, which means everything
	// until a request names something.
	wildcard, legacy bool
	names            map[string]struct{}
	// added are names subscribed since the last response; resync asks for
	// everything subscribed to be reconsidered (wildcard turned on).
	added  []string
	resync bool
	// State of the world: the names of the last request as the codec
	// kept them (wire bytes, see codec.go), to tell a change cheaply, and
	// the nonce of the last response.
	rawNames string // shared with the view's nameSets when interned
	sotwSeen bool
	nonce    string
	// Delta: the resources the proxy holds, at which version.
	sent map[string]uint64
	// heldNames and heldBytes are this subscription's share of the
	// stream's name limits (conn.holdNames).
	heldNames, heldBytes int
}

func (ts *typeStream) subscribed(name string) bool {
	if ts.wildcard {
		return true
	}
	_, ok := ts.names[name]
	return ok
}

// setSotwNames applies a state-of-the-world request's resource names, as
// the codec left them. An ACK repeats the names it had: the bytes are
// compared (the same string, when the codec found them unchanged), and
// only a different list is decoded. Called with ts.e.mu held.
func (ts *typeStream) setSotwNames(r *sotwRequest) error {
	first := !ts.sotwSeen
	if !first && ((r.same && r.kept == ts.rawNames) || (!r.same && string(r.names) == ts.rawNames)) {
		return nil
	}
	raw := r.rawNames()
	// Bounded before decoding: the wire bytes bound the names' count too
	// (each takes at least 2 bytes).
	if err := ts.c.holdNames(ts, 0, len(raw)); err != nil {
		return err
	}
	names, err := decodeNames(raw)
	if err != nil {
		return err
	}
	if err := ts.c.holdNames(ts, len(names), len(raw)); err != nil {
		return err
	}
	ts.sotwSeen = true
	if first {
		ts.legacy = len(names) == 0
	}
	if len(names) > 0 {
		ts.legacy = false
	}
	old, oldWildcard := ts.names, ts.wildcard
	ts.rawNames, ts.names, ts.wildcard = ts.e.nameSet(raw, names)
	if ts.legacy {
		ts.wildcard = true
	}
	switch {
	case first:
	case ts.wildcard && !oldWildcard:
		ts.resync = true
	case !oldWildcard:
		for n := range ts.names {
			if _, ok := old[n]; !ok {
				ts.added = append(ts.added, n)
			}
		}
	}
	return nil
}

// setDeltaNames applies a delta request's subscriptions. initial are the
// versions a reconnecting proxy holds (first request only). A request that
// would take the stream past its name limits is refused whole.
func (ts *typeStream) setDeltaNames(subscribe, unsubscribe []string, initial map[string]string) error {
	// At most this many more: refused whole before anything is applied.
	cnt, size := ts.heldNames, ts.heldBytes
	if ts.sent == nil {
		cnt, size = cnt+len(initial), size+len(initial)*16 // held versions are kept too
	}
	base, baseSize := cnt, size
	for _, name := range subscribe {
		if _, ok := ts.names[name]; !ok && name != "*" {
			cnt, size = cnt+1, size+len(name)
		}
	}
	if err := ts.c.holdNames(ts, cnt, size); err != nil {
		return err
	}
	cnt, size = base, baseSize
	if ts.sent == nil {
		ts.sent = map[string]uint64{}
		ts.names = map[string]struct{}{}
		ts.legacy = len(subscribe) == 0
		ts.wildcard = ts.legacy
		for name, v := range initial {
			s, ok := ts.e.res[name]
			switch {
			case !ok:
				// Held but gone from the view: the first response
				// removes it (planDelta withdraws what is held and
				// does not exist), or the proxy keeps it forever.
				ts.sent[name] = 0
			case v == ts.e.resourceVersion(s.ver):
				ts.sent[name] = s.ver
			}
		}
	}
	for _, n := range subscribe {
		if n == "*" {
			if !ts.wildcard {
				ts.wildcard, ts.resync = true, true
			}
			continue
		}
		if _, ok := ts.names[n]; !ok {
			ts.names[n] = struct{}{}
			ts.added = append(ts.added, n)
			cnt, size = cnt+1, size+len(n)
		}
	}
	if ts.legacy && len(subscribe) > 0 && !slices.Contains(subscribe, "*") {
		// A first request that named nothing meant everything only until
		// the proxy names what it wants (the xDS protocol's legacy
		// wildcard), as on state-of-the-world streams.
		ts.legacy, ts.wildcard = false, false
	}
	for _, n := range unsubscribe {
		if n == "*" {
			ts.wildcard = false
			for name := range ts.sent {
				if _, ok := ts.names[name]; !ok {
					delete(ts.sent, name)
				}
			}
			continue
		}
		if _, ok := ts.names[n]; ok {
			cnt, size = cnt-1, size-len(n)
		}
		delete(ts.names, n)
		if !ts.wildcard {
			delete(ts.sent, n)
		}
	}
	return ts.c.holdNames(ts, cnt, size) // no more than checked above: cannot fail
}

// outgoing is what a stream is to be sent: a shared response, or its own
// list of resources (and, for delta, removals).
type outgoing struct {
	shared    bool
	kind      sharedKind
	resources []string
	removed   []string
	version   string
}

// planSotw decides what brings a state-of-the-world stream to the view's
// current version. Called with ts.e.mu held.
func (ts *typeStream) planSotw() (out outgoing, send bool) {
	e := ts.e
	full := fullState(ts.typeURL)
	out.version = e.versionInfo()
	defer func() { ts.started, ts.at, ts.added, ts.resync = true, e.version, nil, false }()
	switch {
	case !ts.started || ts.resync:
		if ts.wildcard || ts.coversAll() {
			return outgoing{shared: true, kind: sotwAll, version: out.version}, true
		}
		out.resources = ts.existing()
		return out, full || len(out.resources) > 0
	case ts.at == e.version && len(ts.added) == 0:
		return out, false
	}
	changed, removed, ok := e.since(ts.at)
	if full {
		if ts.wildcard {
			return outgoing{shared: true, kind: sotwAll, version: out.version}, true
		}
		if ok && len(ts.added) == 0 && !ts.anySubscribed(changed) && !ts.anySubscribed(removed) {
			return out, false
		}
		out.resources = ts.existing()
		return out, true
	}
	var set []string
	if ok {
		for _, n := range changed {
			if _, exists := e.res[n]; exists && ts.subscribed(n) {
				set = append(set, n)
			}
		}
	} else {
		set = ts.changedAfter(ts.at)
	}
	if len(ts.added) > 0 {
		in := make(map[string]bool, len(set))
		for _, n := range set {
			in[n] = true
		}
		for _, n := range ts.added {
			if _, exists := e.res[n]; exists && !in[n] {
				in[n] = true
				set = append(set, n)
			}
		}
	}
	switch {
	case len(set) == 0:
		return out, false
	case len(ts.added) == 0 && ts.at+1 == e.version && len(set) == len(e.last().changed):
		return outgoing{shared: true, kind: sotwStep, version: out.version}, true
	case len(set) == len(e.res):
		return outgoing{shared: true, kind: sotwAll, version: out.version}, true
	}
	out.resources = set
	return out, true
}

// planDelta decides what brings a delta stream to the view's current
// version, and records it as sent. Called with ts.e.mu held.
func (ts *typeStream) planDelta() (out outgoing, send bool) {
	e := ts.e
	out.version = e.versionInfo()
	first := !ts.started
	defer func() { ts.started, ts.at, ts.added, ts.resync = true, e.version, nil, false }()
	offer := func(n string) {
		s, exists := e.res[n]
		if !exists || !ts.subscribed(n) {
			return
		}
		if v, held := ts.sent[n]; !held || v != s.ver {
			ts.sent[n] = s.ver
			out.resources = append(out.resources, n)
		}
	}
	withdraw := func(n string) {
		if _, held := ts.sent[n]; !held {
			return
		}
		if _, exists := e.res[n]; !exists {
			delete(ts.sent, n)
			out.removed = append(out.removed, n)
		}
	}
	changed, removed, ok := e.since(ts.at)
	switch {
	case first && len(ts.sent) == 0 && len(e.names) > 0 && (ts.wildcard || ts.coversAll()):
		// A new proxy that wants the whole view (the common start): one
		// response encoded for all such streams of this version.
		for _, n := range e.names {
			ts.sent[n] = e.res[n].ver
		}
		return outgoing{shared: true, kind: deltaAll, version: out.version}, true
	case first || ts.resync || !ok:
		if ts.wildcard {
			for _, n := range e.names {
				offer(n)
			}
		} else {
			for n := range ts.names {
				offer(n)
			}
		}
		for n := range ts.sent {
			withdraw(n)
		}
		// A first wildcard request of clusters or listeners is answered
		// even when the view is empty: the proxy waits for it to warm up.
		return out, len(out.resources)+len(out.removed) > 0 || (first && ts.wildcard && fullState(ts.typeURL))
	case ts.at == e.version && len(ts.added) == 0:
		return out, false
	}
	for _, n := range changed {
		offer(n)
	}
	for _, n := range removed {
		withdraw(n)
	}
	stepOnly := len(out.resources) == len(e.last().changed) && len(out.removed) == len(e.last().removed)
	for _, n := range ts.added {
		offer(n)
	}
	if len(ts.added) == 0 && stepOnly && ts.at+1 == e.version {
		return outgoing{shared: true, kind: deltaStep, version: out.version}, len(out.resources)+len(out.removed) > 0
	}
	return out, len(out.resources)+len(out.removed) > 0
}

// coversAll reports whether every resource of the view is subscribed.
func (ts *typeStream) coversAll() bool {
	if len(ts.names) < len(ts.e.res) {
		return false
	}
	for _, n := range ts.e.names {
		if _, ok := ts.names[n]; !ok {
			return false
		}
	}
	return true
}

// existing lists the subscribed resources the view holds, in its order.
func (ts *typeStream) existing() []string {
	if ts.wildcard || len(ts.names) >= len(ts.e.names) {
		out := make([]string, 0, len(ts.e.names))
		for _, n := range ts.e.names {
			if ts.subscribed(n) {
				out = append(out, n)
			}
		}
		return out
	}
	var out []string
	for n := range ts.names {
		if _, ok := ts.e.res[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

// changedAfter lists the subscribed resources that changed after version
// ver, by scanning (for a stream the log no longer reaches back to).
func (ts *typeStream) changedAfter(ver uint64) []string {
	var out []string
	for _, n := range ts.existing() {
		if ts.e.res[n].ver > ver {
			out = append(out, n)
		}
	}
	return out
}

func (ts *typeStream) anySubscribed(names []string) bool {
	for _, n := range names {
		if ts.subscribed(n) {
			return true
		}
	}
	return false
}

// anys returns the marshalled resources of names. Called with e.mu held.
func (e *viewEntry) anys(names []string) []*anypb.Any {
	out := make([]*anypb.Any, len(names))
	for i, n := range names {
		out[i] = e.res[n].any
	}
	return out
}

// deltaResources returns names as delta resources. Called with e.mu held.
func (e *viewEntry) deltaResources(names []string) []*discovery.Resource {
	out := make([]*discovery.Resource, len(names))
	for i, n := range names {
		s := e.res[n]
		out[i] = &discovery.Resource{Name: n, Version: e.resourceVersion(s.ver), Resource: s.any}
	}
	return out
}
