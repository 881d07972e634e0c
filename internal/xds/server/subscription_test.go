package server

import (
	"maps"
	"slices"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
)

// subState is what a test compares of a subscription: names sorted, nil
// for none.
type subState struct {
	wildcard, legacy bool
	names, added     []string
	resync           bool
	sent             []string // delta: what the proxy holds
}

func stateOf(s *subscription) subState {
	sorted := func(in []string) []string {
		if len(in) == 0 {
			return nil
		}
		return slices.Sorted(slices.Values(in))
	}
	return subState{wildcard: s.wildcard, legacy: s.legacy, resync: s.resync,
		names: sorted(slices.Collect(maps.Keys(s.names))), added: sorted(s.added),
		sent: sorted(slices.Collect(maps.Keys(s.sent)))}
}

// applySotw applies a state-of-the-world request listing names, as
// typeStream.setSotwNames does with the view's name set.
func applySotw(s *subscription, names []string) {
	set, star := map[string]struct{}{}, false
	for _, n := range names {
		if n == wildcardName {
			star = true
			continue
		}
		set[n] = struct{}{}
	}
	s.setSotw(set, star)
}

func roomyBudget() *nameBudget { return &nameBudget{maxNames: 1 << 20, maxBytes: 1 << 30} }

// The state-of-the-world rules: each request lists every name the proxy
// wants. Every request but the last is answered (the stream was sent what
// it asked for), so want is what the last request leaves to send.
func TestSubscriptionSotw(t *testing.T) {
	tests := []struct {
		name     string
		requests [][]string
		want     subState
	}{
		{"a first request naming nothing is a legacy wildcard",
			[][]string{nil}, subState{wildcard: true, legacy: true}},
		{"a legacy wildcard stays while requests name nothing",
			[][]string{nil, nil, nil}, subState{wildcard: true, legacy: true}},
		{"a legacy wildcard ends when a request names something; nothing is added (the proxy had everything)",
			[][]string{nil, {"a"}}, subState{names: []string{"a"}}},
		{"once the legacy wildcard ended, a request naming nothing asks for nothing",
			[][]string{nil, {"a"}, nil}, subState{}},
		{"a first request naming some names",
			[][]string{{"a", "b"}}, subState{names: []string{"a", "b"}}},
		{"a first request listing \"*\" is a wildcard, not a legacy one",
			[][]string{{"*"}}, subState{wildcard: true}},
		{"\"*\" with names is a wildcard that also names them",
			[][]string{{"*", "a"}}, subState{wildcard: true, names: []string{"a"}}},
		{"names a later request adds are added",
			[][]string{{"a"}, {"a", "b", "c"}}, subState{names: []string{"a", "b", "c"}, added: []string{"b", "c"}}},
		{"names a later request drops are dropped, nothing added",
			[][]string{{"a", "b"}, {"a"}}, subState{names: []string{"a"}}},
		{"a wildcard turned on later resyncs",
			[][]string{{"a"}, {"*", "a"}}, subState{wildcard: true, names: []string{"a"}, resync: true}},
		{"a wildcard turned off adds nothing (the proxy had everything)",
			[][]string{{"*"}, {"a"}}, subState{names: []string{"a"}}},
		{"an empty list after \"*\" asks for nothing: only a first request is a legacy wildcard",
			[][]string{{"*"}, nil}, subState{}},
		{"the same list again (an ACK) changes nothing",
			[][]string{{"a", "b"}, {"b", "a"}}, subState{names: []string{"a", "b"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s subscription
			for i, names := range tc.requests {
				if i > 0 {
					s.answered()
				}
				applySotw(&s, names)
			}
			if got := stateOf(&s); !equalState(got, tc.want) {
				t.Fatalf("after %q:\n got %+v\nwant %+v", tc.requests, got, tc.want)
			}
			if !s.requested {
				t.Fatal("not marked requested")
			}
			if s.grew() != (len(tc.want.added) > 0 || tc.want.resync) {
				t.Fatalf("grew() = %v", s.grew())
			}
		})
	}
}

func equalState(a, b subState) bool {
	return a.wildcard == b.wildcard && a.legacy == b.legacy && a.resync == b.resync &&
		slices.Equal(a.names, b.names) && slices.Equal(a.added, b.added) && slices.Equal(a.sent, b.sent)
}

// deltaReq is one delta request; before it, the proxy is taken to have
// been sent held (as a response records them).
type deltaReq struct {
	held                   []string
	subscribe, unsubscribe []string
}

// The delta rules: requests subscribe and unsubscribe names, and what the
// proxy holds follows what it unsubscribes from. Every request but the
// last is answered.
func TestSubscriptionDelta(t *testing.T) {
	tests := []struct {
		name  string
		steps []deltaReq
		want  subState
	}{
		{"a first request subscribing nothing is a legacy wildcard",
			[]deltaReq{{}}, subState{wildcard: true, legacy: true}},
		{"a legacy wildcard stays while requests subscribe nothing, even unsubscribing",
			[]deltaReq{{}, {unsubscribe: []string{"a"}}}, subState{wildcard: true, legacy: true}},
		{"a legacy wildcard ends when a request subscribes a name: then only that name",
			[]deltaReq{{}, {held: []string{"a", "b"}, subscribe: []string{"a"}}},
			subState{names: []string{"a"}, added: []string{"a"}, sent: []string{"a", "b"}}},
		{"a first request subscribing names",
			[]deltaReq{{subscribe: []string{"a", "b"}}}, subState{names: []string{"a", "b"}, added: []string{"a", "b"}}},
		{"a first request subscribing \"*\" is a wildcard, not a legacy one",
			[]deltaReq{{subscribe: []string{"*"}}}, subState{wildcard: true, resync: true}},
		{"\"*\" subscribed later resyncs, names stay",
			[]deltaReq{{subscribe: []string{"a"}}, {subscribe: []string{"*"}}},
			subState{wildcard: true, names: []string{"a"}, resync: true}},
		{"\"*\" subscribed again changes nothing",
			[]deltaReq{{subscribe: []string{"*"}}, {subscribe: []string{"*"}}}, subState{wildcard: true}},
		{"a name subscribed again is not added again",
			[]deltaReq{{subscribe: []string{"a"}}, {subscribe: []string{"a", "b"}}},
			subState{names: []string{"a", "b"}, added: []string{"b"}}},
		{"unsubscribing a name drops it and, outside a wildcard, what the proxy holds of it",
			[]deltaReq{{subscribe: []string{"a", "b"}}, {held: []string{"a", "b"}, unsubscribe: []string{"a"}}},
			subState{names: []string{"b"}, sent: []string{"b"}}},
		{"unsubscribing a name under a wildcard keeps what the proxy holds (it still wants it)",
			[]deltaReq{{subscribe: []string{"*", "a"}}, {held: []string{"a", "b"}, unsubscribe: []string{"a"}}},
			subState{wildcard: true, sent: []string{"a", "b"}}},
		{"unsubscribing \"*\" ends the wildcard; the proxy no longer holds what it did not name",
			[]deltaReq{{subscribe: []string{"*", "a"}}, {held: []string{"a", "b", "c"}, unsubscribe: []string{"*"}}},
			subState{names: []string{"a"}, sent: []string{"a"}}},
		// legacy then only records that no name was subscribed yet.
		{"unsubscribing \"*\" ends a legacy wildcard too",
			[]deltaReq{{}, {held: []string{"a"}, unsubscribe: []string{"*"}}},
			subState{legacy: true}},
		{"subscribe and unsubscribe of one name in one request: unsubscribed",
			[]deltaReq{{subscribe: []string{"a"}, unsubscribe: []string{"a"}}}, subState{added: []string{"a"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s subscription
			b := roomyBudget()
			for i, st := range tc.steps {
				if i > 0 {
					s.answered()
				}
				for _, n := range st.held {
					s.sent[n] = 1
				}
				if err := s.setDelta(b, resource.EndpointType, st.subscribe, st.unsubscribe, nil, nil); err != nil {
					t.Fatal(err)
				}
			}
			if got := stateOf(&s); !equalState(got, tc.want) {
				t.Fatalf("after %+v:\n got %+v\nwant %+v", tc.steps, got, tc.want)
			}
			if b.names != s.heldNames || b.names != len(s.names) {
				t.Fatalf("budget holds %d names, the subscription %d, names %d", b.names, s.heldNames, len(s.names))
			}
		})
	}
}

// A reconnecting delta proxy's first request says what it holds: what the
// view has at that version is held, what the view lacks is held at 0 (to
// be removed), the rest is not held (sent again). Only the first request's
// are read.
func TestSubscriptionDeltaInitialVersions(t *testing.T) {
	view := map[string]struct {
		ver uint64
		tag string
	}{"x": {3, "v3"}, "y": {5, "v5"}}
	held := func(name, version string) (uint64, bool) {
		r, ok := view[name]
		switch {
		case !ok:
			return 0, true
		case version == r.tag:
			return r.ver, true
		}
		return 0, false
	}
	var s subscription
	b := roomyBudget()
	initial := map[string]string{"x": "v3", "y": "v4", "gone": "v1"}
	if err := s.setDelta(b, resource.ClusterType, nil, nil, initial, held); err != nil {
		t.Fatal(err)
	}
	if want := map[string]uint64{"x": 3, "gone": 0}; !maps.Equal(s.sent, want) {
		t.Fatalf("held %v, want %v", s.sent, want)
	}
	// Held versions count against the stream's names (16 bytes each).
	if b.names != 3 || b.bytes != 48 {
		t.Fatalf("budget holds %d names, %d bytes; want 3, 48", b.names, b.bytes)
	}
	if err := s.setDelta(b, resource.ClusterType, nil, nil, map[string]string{"z": "v1"}, held); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.sent["z"]; ok || b.names != 3 {
		t.Fatalf("a later request's initial versions were read: held %v, %d names", s.sent, b.names)
	}
}

// A stream's names are bounded over all its types together; a request
// that would pass the bound is refused whole and changes nothing, and
// unsubscribing gives the room back.
func TestNameBudget(t *testing.T) {
	b := &nameBudget{maxNames: 3, maxBytes: 1 << 10}
	var eds, cds subscription
	if err := eds.setDelta(b, resource.EndpointType, []string{"a", "b"}, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	before := stateOf(&cds)
	err := cds.setDelta(b, resource.ClusterType, []string{"c", "d"}, nil, nil, nil)
	wantCode(t, err, codes.ResourceExhausted)
	if b.names != 2 || cds.requested || !equalState(stateOf(&cds), before) {
		t.Fatalf("a refused request changed things: budget %d names, requested %v, %+v", b.names, cds.requested, stateOf(&cds))
	}
	if err := eds.setDelta(b, resource.EndpointType, []string{"*"}, []string{"a"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if b.names != 1 || eds.heldNames != 1 {
		t.Fatalf("after unsubscribing a: budget %d names, eds holds %d; want 1, 1", b.names, eds.heldNames)
	}
	if err := cds.setDelta(b, resource.ClusterType, []string{"c", "d"}, nil, nil, nil); err != nil {
		t.Fatalf("with the room given back: %v", err)
	}
	if b.names != 3 {
		t.Fatalf("budget %d names, want 3", b.names)
	}
	// Names already subscribed, and "*", take no room.
	if err := cds.setDelta(b, resource.ClusterType, []string{"c", "*"}, nil, nil, nil); err != nil {
		t.Fatal(err)
	}

	// Bytes too; a state-of-the-world share is replaced, not added to.
	b = &nameBudget{maxNames: 100, maxBytes: 10}
	var lds, rds subscription
	if err := b.hold(&lds, resource.ListenerType, 2, 8); err != nil {
		t.Fatal(err)
	}
	if err := b.hold(&lds, resource.ListenerType, 1, 4); err != nil || b.bytes != 4 || b.names != 1 {
		t.Fatalf("a replaced share: %v, budget %d names, %d bytes; want 1, 4", err, b.names, b.bytes)
	}
	wantCode(t, b.hold(&rds, resource.RouteType, 1, 7), codes.ResourceExhausted)
	if b.bytes != 4 || rds.heldBytes != 0 {
		t.Fatalf("a refused share was held: budget %d bytes, rds %d", b.bytes, rds.heldBytes)
	}
	if err := b.hold(&rds, resource.RouteType, 1, 6); err != nil {
		t.Fatal(err)
	}
}

// A subscription moved to another view has nothing pending and holds
// every resource at a version the new view never had.
func TestSubscriptionMoved(t *testing.T) {
	var s subscription
	if err := s.setDelta(roomyBudget(), resource.ClusterType, []string{"a"}, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	s.sent["a"], s.resync = 4, true
	s.moved()
	if s.grew() || s.sent["a"] != heldUnknown {
		t.Fatalf("after a move: grew %v, a held at %d", s.grew(), s.sent["a"])
	}
}
