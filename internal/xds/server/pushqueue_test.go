package server

import (
	"strconv"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/horizonmesh/horizon/internal/xds/translate"
)

func pending(q *pushQueue) bool {
	select {
	case <-q.ready:
		return true
	default:
		return false
	}
}

// Any number of changes queued before the stream takes them are one push.
func TestPushQueueMergesChanges(t *testing.T) {
	q := newPushQueue()
	if pending(q) {
		t.Fatal("a new queue has a push pending")
	}
	for range 100 {
		q.viewChanged()
	}
	if !pending(q) {
		t.Fatal("no push pending after changes")
	}
	if pending(q) {
		t.Fatal("100 changes are more than one push")
	}
	q.viewChanged()
	if !pending(q) {
		t.Fatal("a change after the push was taken is lost")
	}
}

// Moves are merged by type, the last one counting, and taken once.
func TestPushQueueMergesMoves(t *testing.T) {
	q := newPushQueue()
	e1, e2, e3 := &viewEntry{}, &viewEntry{}, &viewEntry{}
	q.viewMoved(resource.ClusterType, e1)
	q.viewChanged()
	q.viewMoved(resource.ClusterType, e2)
	q.viewMoved(resource.ListenerType, e3)
	if !pending(q) || pending(q) {
		t.Fatal("want exactly one push pending")
	}
	m := q.takeMoves()
	if len(m) != 2 || m[resource.ClusterType] != e2 || m[resource.ListenerType] != e3 {
		t.Fatalf("moves %v, want clusters to e2 and listeners to e3", m)
	}
	if m := q.takeMoves(); m != nil {
		t.Fatalf("moves taken twice: %v", m)
	}
}

// Producers racing the consumer lose nothing: once they are done, the
// consumer ends up with each type's last move.
func TestPushQueueLosesNoMove(t *testing.T) {
	q := newPushQueue()
	const types, moves = 4, 500
	entries := make([]*viewEntry, moves)
	for i := range entries {
		entries[i] = &viewEntry{}
	}
	var mu sync.Mutex
	got := map[string]*viewEntry{}
	stop := make(chan struct{})
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for {
			select {
			case <-stop:
				return
			case <-q.ready:
				m := q.takeMoves()
				mu.Lock()
				for typeURL, e := range m {
					got[typeURL] = e
				}
				mu.Unlock()
			}
		}
	}()
	var wg sync.WaitGroup
	for p := range types {
		wg.Go(func() {
			for _, e := range entries {
				q.viewMoved("type"+strconv.Itoa(p), e)
				q.viewChanged()
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(testTimeout)
	for {
		mu.Lock()
		done := len(got) == types
		for _, e := range got {
			done = done && e == entries[moves-1]
		}
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the consumer did not see every type's last move in %s", testTimeout)
		}
		time.Sleep(time.Millisecond) // polling the consumer's state, bounded by testTimeout
	}
	close(stop)
	<-consumed
}

// recordingSubscriber is a stream as the cache sees it, without gRPC.
type recordingSubscriber struct {
	mu      sync.Mutex
	changed int
	moves   map[string]*viewEntry
}

func (r *recordingSubscriber) viewChanged() {
	r.mu.Lock()
	r.changed++
	r.mu.Unlock()
}

func (r *recordingSubscriber) viewMoved(typeURL string, to *viewEntry) {
	r.mu.Lock()
	if r.moves == nil {
		r.moves = map[string]*viewEntry{}
	}
	r.moves[typeURL] = to
	r.mu.Unlock()
}

func (r *recordingSubscriber) counts() (changed, moved int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed, len(r.moves)
}

// The cache tells a stream's subscriber what happens to its views —
// changes (not updates that change nothing) and moves — and forgets it
// when the stream is unbound.
func TestViewCacheTellsSubscribers(t *testing.T) {
	w := newVCWorld(0)
	a, b := cdsView("a"), cdsView("b")
	w.set(a, map[string]types.Resource{"x": cluster("x", time.Second)})
	w.set(b, map[string]types.Resource{"y": cluster("y", time.Second)})
	node := &corev3.Node{Id: "p"}
	if _, err := w.vc.Bind(node, resource.ClusterType, Proxy{ID: "p", Network: "a"}); err != nil {
		t.Fatal(err)
	}
	rec := &recordingSubscriber{}
	e, err := w.vc.bound(node, resource.ClusterType, rec)
	if err != nil || e == nil || e.view != a {
		t.Fatalf("bound to %v, %v; want view a", e, err)
	}
	ts := &typeStream{e: e, typeURL: resource.ClusterType}
	e.mu.Lock()
	e.subs[ts] = rec
	e.mu.Unlock()

	if _, err := w.vc.Update(a, map[string]types.Resource{"x": cluster("x", 2*time.Second)}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.vc.Update(a, map[string]types.Resource{"x": cluster("x", 2*time.Second)}); err != nil {
		t.Fatal(err)
	}
	if changed, moved := rec.counts(); changed != 1 || moved != 0 {
		t.Fatalf("told of %d changes, %d moves; want 1 change (the second update changed nothing)", changed, moved)
	}

	classify := w.vc.classify
	w.vc.classify = func(typeURL string, p Proxy) (translate.View, bool, error) {
		p.Network = "b"
		return classify(typeURL, p)
	}
	if n := w.vc.Reclassify(func(Proxy) bool { return true }); n != 1 {
		t.Fatalf("Reclassify moved %d bindings, want 1", n)
	}
	if to := rec.moves[resource.ClusterType]; to == nil || to.view != b {
		t.Fatalf("told of moves %v; want clusters to view b", rec.moves)
	}

	w.vc.Unbind(node)
	w.vc.classify = classify
	w.vc.Reclassify(func(Proxy) bool { return true })
	if _, moved := rec.counts(); moved != 1 {
		t.Fatalf("an unbound stream was told of %d moves, want the 1 from before", moved)
	}
}
