package server

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// wildcardName subscribes to (or unsubscribes from) every resource of a
// type, besides any names.
const wildcardName = "*"

// subscription is what one stream asks for of one resource type, by the
// xDS protocol's rules ("How the client specifies what resources to
// return"), and, on a delta stream, which resources the proxy holds. It
// is a value: its rules need neither a view nor a gRPC stream
// (subscription_test.go). A typeStream holds one and reads it against
// its view.
//
// The rules:
//   - "*" subscribes to every resource (wildcard), besides any names;
//   - a first request naming nothing is a legacy wildcard: everything,
//     until a request names something (then only what it names);
//   - state of the world: every request lists all the names the proxy
//     wants and replaces the last (after a legacy wildcard ended, an empty
//     list is nothing);
//   - delta: a request subscribes and unsubscribes names; unsubscribing
//     "*" ends the wildcard, and the proxy no longer holds what it did not
//     name; unsubscribing a name outside a wildcard drops it from what
//     the proxy holds.
//
// Names a stream adds are sent at once (added); a wildcard turned on has
// the whole subscription reconsidered (resync).
type subscription struct {
	// requested: a request was applied; the next one is not the first.
	requested        bool
	wildcard, legacy bool
	// names are the names subscribed to, without "*". On a state-of-the-
	// world stream the set may be shared with the view's other streams
	// (viewEntry.nameSet) and is never modified: a request replaces it.
	names map[string]struct{}
	// added are names subscribed to since the last response; resync asks
	// for everything subscribed to be reconsidered (wildcard turned on).
	added  []string
	resync bool
	// sent (delta): the resources the proxy holds, at which view version.
	sent map[string]uint64
	// heldNames and heldBytes are this subscription's share of its
	// stream's nameBudget.
	heldNames, heldBytes int
}

func (s *subscription) subscribed(name string) bool {
	if s.wildcard {
		return true
	}
	_, ok := s.names[name]
	return ok
}

func (s *subscription) anySubscribed(names []string) bool {
	for _, n := range names {
		if s.subscribed(n) {
			return true
		}
	}
	return false
}

// grew reports whether the subscription asks for more than it was last
// answered for: names added, or the wildcard turned on.
func (s *subscription) grew() bool { return len(s.added) > 0 || s.resync }

// answered records that the stream has been brought up to date with
// everything it subscribes to.
func (s *subscription) answered() { s.added, s.resync = nil, false }

// moved records that the subscription now reads another view: nothing is
// pending against the old one, and every resource the proxy holds is at
// a version the new view never had (heldUnknown), so it is sent again or
// removed.
func (s *subscription) moved() {
	s.answered()
	for n := range s.sent {
		s.sent[n] = heldUnknown
	}
}

// resend asks for the subscribed ones of names to be sent again with the
// next response, though they did not change: a cluster Envoy received
// again (changed) warms until its load assignment arrives, unchanged or
// not.
func (s *subscription) resend(names []string) {
	for _, n := range names {
		if !s.subscribed(n) {
			continue
		}
		s.added = append(s.added, n)
		if _, held := s.sent[n]; held {
			s.sent[n] = heldUnknown
		}
	}
}

// heldUnknown marks, on a delta stream that moved to another view, a
// resource the proxy holds at a version of the old view: never equal to a
// version of the new one.
const heldUnknown = ^uint64(0)

// setSotw applies a state-of-the-world request: names are the names it
// lists without "*" (a set the subscription keeps and never modifies),
// star whether it lists "*".
func (s *subscription) setSotw(names map[string]struct{}, star bool) {
	first := !s.requested
	s.requested = true
	named := star || len(names) > 0
	if first {
		s.legacy = !named
	} else if named {
		s.legacy = false
	}
	old, oldWildcard := s.names, s.wildcard
	s.names, s.wildcard = names, star || s.legacy
	switch {
	case first:
	case s.wildcard && !oldWildcard:
		s.resync = true
	case !oldWildcard:
		for n := range s.names {
			if _, ok := old[n]; !ok {
				s.added = append(s.added, n)
			}
		}
	}
}

// setDelta applies a delta request's subscriptions, holding the names in
// b. On the first request, initial are the versions a reconnecting proxy
// says it holds; held tells which of those it holds at which version of
// the view (keep false: not at any, to be sent again). A request that
// would take the stream past its limits is refused whole, changing
// nothing.
func (s *subscription) setDelta(b *nameBudget, typeURL string, subscribe, unsubscribe []string,
	initial map[string]string, held func(name, version string) (ver uint64, keep bool)) error {
	first := !s.requested
	// At most this many more: refused whole before anything is applied.
	cnt, size := s.heldNames, s.heldBytes
	if first {
		cnt, size = cnt+len(initial), size+len(initial)*16 // held versions are kept too
	}
	base, baseSize := cnt, size
	for _, name := range subscribe {
		if _, ok := s.names[name]; !ok && name != wildcardName {
			cnt, size = cnt+1, size+len(name)
		}
	}
	if err := b.hold(s, typeURL, cnt, size); err != nil {
		return err
	}
	cnt, size = base, baseSize
	if first {
		s.requested = true
		s.sent = map[string]uint64{}
		s.names = map[string]struct{}{}
		s.legacy = len(subscribe) == 0
		s.wildcard = s.legacy
		for name, v := range initial {
			if ver, keep := held(name, v); keep {
				s.sent[name] = ver
			}
		}
	}
	star := false
	for _, n := range subscribe {
		if n == wildcardName {
			star = true
			if !s.wildcard {
				s.wildcard, s.resync = true, true
			}
			continue
		}
		if _, ok := s.names[n]; !ok {
			s.names[n] = struct{}{}
			s.added = append(s.added, n)
			cnt, size = cnt+1, size+len(n)
		}
	}
	if s.legacy && len(subscribe) > 0 && !star {
		// A first request that named nothing meant everything only until
		// the proxy names what it wants (the xDS protocol's legacy
		// wildcard), as on state-of-the-world streams.
		s.legacy, s.wildcard = false, false
	}
	for _, n := range unsubscribe {
		if n == wildcardName {
			s.wildcard = false
			for name := range s.sent {
				if _, ok := s.names[name]; !ok {
					delete(s.sent, name)
				}
			}
			continue
		}
		if _, ok := s.names[n]; ok {
			cnt, size = cnt-1, size-len(n)
		}
		delete(s.names, n)
		if !s.wildcard {
			delete(s.sent, n)
		}
	}
	return b.hold(s, typeURL, cnt, size) // no more than checked above: cannot fail
}

// nameBudget bounds the resource names one stream subscribes to over all
// its types (Limits.MaxNamesPerStream, MaxNameBytesPerStream). Each of
// the stream's subscriptions holds a share of it.
type nameBudget struct {
	maxNames, maxBytes int
	names, bytes       int // held by the stream's subscriptions together
}

// hold makes s's share names names of nameBytes bytes, or refuses it
// (ResourceExhausted), changing nothing, when the stream would pass its
// limits.
func (b *nameBudget) hold(s *subscription, typeURL string, names, nameBytes int) error {
	n, size := b.names-s.heldNames+names, b.bytes-s.heldBytes+nameBytes
	if n > b.maxNames || size > b.maxBytes {
		return status.Errorf(codes.ResourceExhausted, "%s: a stream may subscribe to at most %d resource names of %d bytes in all (this request: %d names, %d bytes)",
			TypeName(typeURL), b.maxNames, b.maxBytes, n, size)
	}
	b.names, b.bytes, s.heldNames, s.heldBytes = n, size, names, nameBytes
	return nil
}
