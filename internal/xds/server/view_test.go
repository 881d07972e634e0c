package server

import (
	"fmt"
	"strings"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/encoding/protowire"
)

// What streams ask for is client input: the subscriptions a view keeps
// for sharing are bounded in number and bytes, whatever clients send; a
// set past the bounds still works, it is just not shared.
func TestViewNameSetsAreBounded(t *testing.T) {
	e := newViewEntry(edsView("a"), "t", map[string]types.Resource{})
	encode := func(names ...string) []byte {
		var b []byte
		for _, n := range names {
			b = protowire.AppendTag(b, resourceNamesField, protowire.BytesType)
			b = protowire.AppendString(b, n)
		}
		return b
	}
	big := strings.Repeat("x", 100<<10)
	for i := range 200 {
		names := []string{fmt.Sprint("n", i), big}
		_, set, _, _ := e.nameSet(encode(names...), names)
		if len(set) != 2 {
			t.Fatalf("set %d has %d names, want 2", i, len(set))
		}
	}
	if len(e.nameSets) > maxNameSets || e.nameSetBytes > maxNameSetBytes {
		t.Fatalf("%d sets, %d bytes kept; bounds %d, %d", len(e.nameSets), e.nameSetBytes, maxNameSets, maxNameSetBytes)
	}
	if len(e.nameSets) == 0 {
		t.Fatal("no set shared at all")
	}
	// Small sets are still shared up to the count bound.
	e2 := newViewEntry(edsView("a"), "t", map[string]types.Resource{})
	for i := range 100 {
		n := fmt.Sprint("n", i)
		e2.nameSet(encode(n), []string{n})
	}
	if len(e2.nameSets) != maxNameSets {
		t.Fatalf("%d small sets kept, want %d", len(e2.nameSets), maxNameSets)
	}
}

// A resource two views hold by the same pointer is marshalled once; a new
// pointer is marshalled anew; the share forgets a resource with its last
// holder.
func TestViewsShareMarshalledResources(t *testing.T) {
	share := newAnyShare()
	shared := &endpointv3.ClusterLoadAssignment{ClusterName: "c"}
	mk := func(key string) *viewEntry {
		e := emptyViewEntry(edsView(key), "t")
		e.share = share
		e.fill(map[string]types.Resource{"c": shared})
		return e
	}
	a, b := mk("a"), mk("b")
	if a.res["c"].any != b.res["c"].any {
		t.Fatal("two views of one resource pointer marshalled it twice")
	}
	changed := &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{{}}}
	a.mu.Lock()
	a.apply(map[string]types.Resource{"c": changed}, map[string]types.Resource{"c": changed}, nil)
	a.mu.Unlock()
	if a.res["c"].any == b.res["c"].any || len(share.m) != 2 {
		t.Fatalf("after a change: %d shared entries, want 2 (the old one still held by b)", len(share.m))
	}
	a.free()
	b.free()
	if len(share.m) != 0 {
		t.Fatalf("%d entries left once both views are gone", len(share.m))
	}
}
