package kube

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Contact follows the answers of a real client-go client: a 5xx or a
// refused connection makes the API server unreachable (once, however many
// requests fail), the next good answer reachable again.
func TestContactTransitions(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if s := int(status.Load()); s != http.StatusOK {
			http.Error(w, "down", s)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"major":"1","minor":"37","gitVersion":"v1.37.2"}`))
	}))
	var mu sync.Mutex
	var events []string
	c := NewContact(func(ok bool, msg string) {
		mu.Lock()
		defer mu.Unlock()
		if ok {
			events = append(events, "reachable")
		} else {
			events = append(events, "unreachable: "+msg)
		}
	})
	cfg := &rest.Config{Host: srv.URL}
	cfg.Wrap(c.Wrap)
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	version := func() { _, _ = client.Discovery().ServerVersion() }
	got := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), events...)
	}

	version()
	if ok, _, _ := c.State(); !ok || len(got()) != 0 {
		t.Fatalf("a good answer: reachable=%v events=%q, want reachable and no event", ok, got())
	}
	status.Store(http.StatusServiceUnavailable)
	version()
	version()
	if ok, _, msg := c.State(); ok || !strings.Contains(msg, "503") {
		t.Errorf("after 503s: reachable=%v msg=%q", ok, msg)
	}
	status.Store(http.StatusOK)
	version()
	srv.Close()
	version()
	ev := got()
	if len(ev) != 3 || !strings.HasPrefix(ev[0], "unreachable: API server unreachable since ") || ev[1] != "reachable" ||
		!strings.Contains(ev[2], "connection refused") {
		t.Errorf("events = %q, want unreachable (503), reachable, unreachable (connection refused)", ev)
	}

	// A request the caller cancels says nothing about the API server.
	c2 := NewContact(func(bool, string) { t.Error("a cancelled request changed the contact") })
	rt := c2.Wrap(http.DefaultTransport)
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(cctx, http.MethodGet, srv.URL, nil)
	if resp, err := rt.RoundTrip(req); err == nil {
		resp.Body.Close()
		t.Error("a cancelled request succeeded")
	}
}

// A Source reports its Contact's unreachability: since when, zero while
// the API server answers and without a Contact.
func TestSourceUnreachableSince(t *testing.T) {
	if got := (&Source{}).UnreachableSince(); !got.IsZero() {
		t.Errorf("without a Contact: %v", got)
	}
	c := NewContact(nil)
	s := &Source{Contact: c}
	if got := s.UnreachableSince(); !got.IsZero() {
		t.Errorf("answering: %v", got)
	}
	c.observe(false, "connection refused")
	_, since, _ := c.State()
	if got := s.UnreachableSince(); got.IsZero() || !got.Equal(since) {
		t.Errorf("unreachable: %v, want %v", got, since)
	}
	c.observe(true, "")
	if got := s.UnreachableSince(); !got.IsZero() {
		t.Errorf("answering again: %v", got)
	}
}
