package dnscache

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeDNS answers from a map it lets tests change; slow names block until
// released.
type fakeDNS struct {
	mu      sync.Mutex
	answers map[string]string
	calls   map[string]int
	slow    map[string]chan struct{}
}

func (f *fakeDNS) LookupNetIP(ctx context.Context, _, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	f.calls[host]++
	a, ok := f.answers[host]
	wait := f.slow[host]
	f.mu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if !ok {
		return nil, errors.New("no such host")
	}
	return []netip.Addr{netip.MustParseAddr(a)}, nil
}

func (f *fakeDNS) set(host, addr string) {
	f.mu.Lock()
	f.answers[host] = addr
	f.mu.Unlock()
}

func newFake() *fakeDNS {
	return &fakeDNS{answers: map[string]string{}, calls: map[string]int{}, slow: map[string]chan struct{}{}}
}

func TestTableResolvesWantedNamesInTheBackground(t *testing.T) {
	dns := newFake()
	dns.set("gw.example.com", "192.0.2.1")
	changed := make(chan struct{}, 10)
	tab := NewTable(dns, time.Hour, func() { changed <- struct{}{} })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tab.Run(ctx)

	if _, _, known := tab.Lookup("gw.example.com"); known {
		t.Fatal("a name nobody wanted is known")
	}
	tab.Want([]string{"gw.example.com", "missing.example.com"})
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("no change reported after the first answers")
	}
	addrs, err, known := tab.Lookup("gw.example.com")
	if !known || err != nil || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("gw.example.com: %v %v %v", addrs, err, known)
	}
	if _, err, known := tab.Lookup("missing.example.com"); !known || err == nil {
		t.Errorf("a failed lookup is known with its error: %v %v", err, known)
	}

	// Refresh: an unchanged answer is no change; a changed one is.
	tab.refresh(ctx, true) // nothing is older than the hour-long ttl yet
	select {
	case <-changed:
		t.Fatal("a refresh with nothing due reported a change")
	default:
	}
	tab.ttl = 0
	tab.refresh(ctx, true)
	select {
	case <-changed:
		t.Fatal("the same answers again reported a change")
	default:
	}
	dns.set("gw.example.com", "192.0.2.2")
	tab.refresh(ctx, true)
	select {
	case <-changed:
	default:
		t.Fatal("a changed answer was not reported")
	}
	if addrs, _, _ := tab.Lookup("gw.example.com"); len(addrs) != 1 || addrs[0] != netip.MustParseAddr("192.0.2.2") {
		t.Errorf("after the change: %v", addrs)
	}

	// Names no longer wanted are forgotten.
	tab.Want([]string{"missing.example.com"})
	if _, _, known := tab.Lookup("gw.example.com"); known {
		t.Error("an unwanted name is still known")
	}
}

// A slow name does not hold up Lookup (the push's read) nor other names.
func TestSlowNameBlocksNothing(t *testing.T) {
	dns := newFake()
	dns.set("slow.example.com", "192.0.2.9")
	dns.set("fast.example.com", "192.0.2.8")
	release := make(chan struct{})
	dns.slow["slow.example.com"] = release
	tab := NewTable(dns, time.Hour, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tab.Want([]string{"slow.example.com", "fast.example.com"})
	done := make(chan struct{})
	go func() { tab.refresh(ctx, false); close(done) }()
	if _, _, known := tab.Lookup("slow.example.com"); known {
		t.Error("the slow name is known before it answered")
	}
	close(release)
	<-done
	if _, _, known := tab.Lookup("slow.example.com"); !known {
		t.Error("the slow name is unknown after it answered")
	}
}

func TestResolveAll(t *testing.T) {
	dns := newFake()
	dns.set("a.example.com", "192.0.2.1")
	got := ResolveAll(context.Background(), dns, []string{"a.example.com", "b.example.com"})
	if a := got["a.example.com"]; a.Err != nil || len(a.Addrs) != 1 {
		t.Errorf("a: %+v", a)
	}
	if b := got["b.example.com"]; b.Err == nil {
		t.Errorf("b: %+v", b)
	}
	if _, _, known := got.Lookup("c.example.com"); known {
		t.Error("an unasked name is known")
	}
}

// A name that resolved keeps its last good answer when the resolver later
// fails for it; a new good answer replaces it.
func TestTableKeepsLastGoodAnswer(t *testing.T) {
	dns := newFake()
	dns.set("gw.example.com", "192.0.2.1")
	changes := 0
	tab := NewTable(dns, time.Hour, func() { changes++ })
	ctx := context.Background()
	tab.Want([]string{"gw.example.com"})
	tab.refresh(ctx, false)
	dns.mu.Lock()
	delete(dns.answers, "gw.example.com") // the resolver now fails for it
	dns.mu.Unlock()
	tab.ttl = 0
	tab.refresh(ctx, true)
	addrs, err, known := tab.Lookup("gw.example.com")
	if !known || err != nil || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("after a failed refresh: %v %v %v, want the last good answer", addrs, err, known)
	}
	if changes != 1 {
		t.Errorf("%d changes reported, want 1 (the first answer only)", changes)
	}
	dns.set("gw.example.com", "192.0.2.2")
	tab.refresh(ctx, true)
	if addrs, _, _ := tab.Lookup("gw.example.com"); len(addrs) != 1 || addrs[0] != netip.MustParseAddr("192.0.2.2") {
		t.Errorf("a new good answer did not replace it: %v", addrs)
	}
}
