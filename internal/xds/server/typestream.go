package server

// typeStream is one stream's subscription to one view: what it asked for
// (a subscription) and what it has been sent. Only the stream's own
// goroutine touches it, and it reads the view only under the view's lock.
type typeStream struct {
	e       *viewEntry
	typeURL string
	// started: the stream has been brought to version at (sent what it
	// needs of it, or found nothing to send).
	started bool
	at      uint64
	sub     subscription
	// State of the world: the names of the last request as the codec
	// kept them (wire bytes, see codec.go), to tell a change cheaply, and
	// the nonce of the last response.
	rawNames string // shared with the view's nameSets when interned
	// interned: the stream holds a reference to rawNames' set in e's
	// nameSets (see viewEntry.releaseNames).
	interned bool
	nonce    string
}

// releaseNames gives back the stream's reference to its shared name set,
// if it holds one. Called with ts.e.mu held.
func (ts *typeStream) releaseNames() {
	if ts.interned {
		ts.e.releaseNames(ts.rawNames)
		ts.interned = false
	}
}

// setSotwNames applies a state-of-the-world request's resource names, as
// the codec left them, holding them in b. An ACK repeats the names it
// had: the bytes are compared (the same string, when the codec found them
// unchanged), and only a different list is decoded. Called with ts.e.mu
// held.
func (ts *typeStream) setSotwNames(r *sotwRequest, b *nameBudget) error {
	if ts.sub.requested && ((r.same && r.kept == ts.rawNames) || (!r.same && string(r.names) == ts.rawNames)) {
		return nil
	}
	raw := r.rawNames()
	// Bounded before decoding: the wire bytes bound the names' count too
	// (each takes at least 2 bytes).
	if err := b.hold(&ts.sub, ts.typeURL, 0, len(raw)); err != nil {
		return err
	}
	names, err := decodeNames(raw)
	if err != nil {
		return err
	}
	if err := b.hold(&ts.sub, ts.typeURL, len(names), len(raw)); err != nil {
		return err
	}
	key, set, star, interned := ts.e.nameSet(raw, names)
	ts.releaseNames()
	ts.rawNames, ts.interned = key, interned
	ts.sub.setSotw(set, star)
	return nil
}

// setDeltaNames applies a delta request's subscriptions, holding them in
// b. initial are the versions a reconnecting proxy holds (first request
// only): those the view has at that version are not sent again; those
// the view lacks are removed by the first response (planDelta withdraws
// what is held and does not exist), or the proxy would keep them forever.
// Called with ts.e.mu held.
func (ts *typeStream) setDeltaNames(b *nameBudget, subscribe, unsubscribe []string, initial map[string]string) error {
	e := ts.e
	return ts.sub.setDelta(b, ts.typeURL, subscribe, unsubscribe, initial, func(name, version string) (uint64, bool) {
		s, ok := e.res[name]
		switch {
		case !ok:
			return 0, true
		case version == e.resourceVersion(s.ver):
			return s.ver, true
		}
		return 0, false
	})
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
	defer func() { ts.started, ts.at = true, e.version; ts.sub.answered() }()
	switch {
	case !ts.started || ts.sub.resync:
		if ts.sub.wildcard || ts.coversAll() {
			return outgoing{shared: true, kind: sotwAll, version: out.version}, true
		}
		out.resources = ts.existing()
		return out, full || len(out.resources) > 0
	case ts.at == e.version && len(ts.sub.added) == 0:
		return out, false
	}
	changed, removed, ok := e.since(ts.at)
	if full {
		if ts.sub.wildcard {
			return outgoing{shared: true, kind: sotwAll, version: out.version}, true
		}
		if ok && len(ts.sub.added) == 0 && !ts.sub.anySubscribed(changed) && !ts.sub.anySubscribed(removed) {
			return out, false
		}
		out.resources = ts.existing()
		return out, true
	}
	var set []string
	if ok {
		for _, n := range changed {
			if _, exists := e.res[n]; exists && ts.sub.subscribed(n) {
				set = append(set, n)
			}
		}
	} else {
		set = ts.changedAfter(ts.at)
	}
	if len(ts.sub.added) > 0 {
		in := make(map[string]bool, len(set))
		for _, n := range set {
			in[n] = true
		}
		for _, n := range ts.sub.added {
			if _, exists := e.res[n]; exists && !in[n] {
				in[n] = true
				set = append(set, n)
			}
		}
	}
	switch {
	case len(set) == 0:
		return out, false
	case len(ts.sub.added) == 0 && ts.at+1 == e.version && len(set) == len(e.last().changed):
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
	defer func() { ts.started, ts.at = true, e.version; ts.sub.answered() }()
	offer := func(n string) {
		s, exists := e.res[n]
		if !exists || !ts.sub.subscribed(n) {
			return
		}
		if v, held := ts.sub.sent[n]; !held || v != s.ver {
			ts.sub.sent[n] = s.ver
			out.resources = append(out.resources, n)
		}
	}
	withdraw := func(n string) {
		if _, held := ts.sub.sent[n]; !held {
			return
		}
		if _, exists := e.res[n]; !exists {
			delete(ts.sub.sent, n)
			out.removed = append(out.removed, n)
		}
	}
	changed, removed, ok := e.since(ts.at)
	switch {
	case first && len(ts.sub.sent) == 0 && len(e.names) > 0 && (ts.sub.wildcard || ts.coversAll()):
		// A new proxy that wants the whole view (the common start): one
		// response encoded for all such streams of this version.
		for _, n := range e.names {
			ts.sub.sent[n] = e.res[n].ver
		}
		return outgoing{shared: true, kind: deltaAll, version: out.version}, true
	case first || ts.sub.resync || !ok:
		if ts.sub.wildcard {
			for _, n := range e.names {
				offer(n)
			}
		} else {
			for n := range ts.sub.names {
				offer(n)
			}
		}
		for n := range ts.sub.sent {
			withdraw(n)
		}
		// A first wildcard request of clusters or listeners is answered
		// even when the view is empty: the proxy waits for it to warm up.
		return out, len(out.resources)+len(out.removed) > 0 || (first && ts.sub.wildcard && fullState(ts.typeURL))
	case ts.at == e.version && len(ts.sub.added) == 0:
		return out, false
	}
	for _, n := range changed {
		offer(n)
	}
	for _, n := range removed {
		withdraw(n)
	}
	stepOnly := len(out.resources) == len(e.last().changed) && len(out.removed) == len(e.last().removed)
	for _, n := range ts.sub.added {
		offer(n)
	}
	if len(ts.sub.added) == 0 && stepOnly && ts.at+1 == e.version {
		return outgoing{shared: true, kind: deltaStep, version: out.version}, len(out.resources)+len(out.removed) > 0
	}
	return out, len(out.resources)+len(out.removed) > 0
}

// coversAll reports whether every resource of the view is subscribed.
func (ts *typeStream) coversAll() bool {
	if len(ts.sub.names) < len(ts.e.res) {
		return false
	}
	for _, n := range ts.e.names {
		if _, ok := ts.sub.names[n]; !ok {
			return false
		}
	}
	return true
}

// existing lists the subscribed resources the view holds, in its order.
func (ts *typeStream) existing() []string {
	if ts.sub.wildcard || len(ts.sub.names) >= len(ts.e.names) {
		out := make([]string, 0, len(ts.e.names))
		for _, n := range ts.e.names {
			if ts.sub.subscribed(n) {
				out = append(out, n)
			}
		}
		return out
	}
	var out []string
	for n := range ts.sub.names {
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
