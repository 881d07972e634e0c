package testkit

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// Events is an ordered log of what a component under test reported (a
// sink's calls, each written as a string), every event handed to the test
// as it happens: a test waits for the next event instead of polling state.
type Events struct {
	mu  sync.Mutex
	all []string
	ch  chan string
}

// NewEvents returns an empty log; Add blocks once 1000 events wait unread.
func NewEvents() *Events { return &Events{ch: make(chan string, 1000)} }

// Add records ev.
func (e *Events) Add(ev string) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
	e.ch <- ev
}

// All is every event recorded so far, in order.
func (e *Events) All() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.all...)
}

// Expect waits for the next events, failing t unless each comes within
// eventTimeout and starts with its want, in order; it returns the last.
func (e *Events) Expect(t testing.TB, want ...string) string {
	t.Helper()
	var got string
	for _, w := range want {
		select {
		case got = <-e.ch:
		case <-time.After(eventTimeout):
			t.Fatalf("no event within %s, want %q; so far %q", eventTimeout, w, e.All())
		}
		if !strings.HasPrefix(got, w) {
			t.Fatalf("event %q, want %q; all events %q", got, w, e.All())
		}
	}
	return got
}

// ExpectReached waits for the event want, passing over intermediate ones
// (a writer's intermediate states may be refused); an event that starts
// with final, another final state reached before want, fails t.
func (e *Events) ExpectReached(t testing.TB, want, final string) {
	t.Helper()
	for {
		got := e.Expect(t, "")
		if got == want {
			return
		}
		if strings.HasPrefix(got, final) {
			t.Fatalf("%q before %q; all events %q", got, want, e.All())
		}
	}
}

// eventTimeout bounds the wait for one event.
const eventTimeout = 5 * time.Second
