package meshnetworks

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/internal/model"
)

// recorder is a Sink that records every call in order ("applied ..." with
// the networks, "rejected ..." with the error) and hands each to the test.
type recorder struct {
	mu     sync.Mutex
	events []string
	ch     chan string
}

func newRecorder() *recorder { return &recorder{ch: make(chan string, 1000)} }

func (r *recorder) SetMeshNetworks(n *model.MeshNetworks, _ model.Diagnostics) {
	r.add("applied " + describeNetworks(n))
}

func (r *recorder) MeshNetworksRejected(err error) { r.add("rejected " + err.Error()) }

func (r *recorder) add(e string) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	r.ch <- e
}

// expect waits for the next events and checks that each starts with its
// want, in order; it returns the last one.
func (r *recorder) expect(t *testing.T, want ...string) string {
	t.Helper()
	var got string
	for _, w := range want {
		select {
		case got = <-r.ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("no event within 5s, want %q; so far %q", w, r.all())
		}
		if !strings.HasPrefix(got, w) {
			t.Fatalf("event %q, want %q; all events %q", got, w, r.all())
		}
	}
	return got
}

// expectApplied waits for want to be applied, passing over rejections (a
// writer's intermediate states may be refused) but failing on any other
// state applied first.
func (r *recorder) expectApplied(t *testing.T, want string) {
	t.Helper()
	for {
		got := r.expect(t, "")
		if got == want {
			return
		}
		if !strings.HasPrefix(got, "rejected ") {
			t.Fatalf("applied %q before %q; all events %q", got, want, r.all())
		}
	}
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

// describe summarises networks as "name[registries] gw addr:port; ...".
func describeNetworks(n *model.MeshNetworks) string {
	if len(n.Networks) == 0 {
		return "(no networks)"
	}
	var parts []string
	for _, net := range n.Networks {
		s := fmt.Sprintf("%s%v", net.Name, net.Registries)
		for _, g := range net.Gateways {
			s += fmt.Sprintf(" gw %s:%d", g.Address, g.Port)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}
