package dnscache

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"
)

type counting struct {
	calls int
	addr  string
}

func (c *counting) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	c.calls++
	if c.addr == "" {
		return nil, errors.New("no such host")
	}
	return []netip.Addr{netip.MustParseAddr(c.addr)}, nil
}

func TestTTL(t *testing.T) {
	next := &counting{addr: "192.0.2.1"}
	r := New(next, time.Minute)
	now := time.Unix(1000, 0)
	r.now = func() time.Time { return now }
	ctx := context.Background()
	for range 3 {
		if a, err := r.LookupNetIP(ctx, "ip", "gw.example"); err != nil || a[0].String() != "192.0.2.1" {
			t.Fatalf("lookup = %v, %v", a, err)
		}
	}
	if next.calls != 1 {
		t.Fatalf("calls within TTL = %d, want 1", next.calls)
	}
	next.addr = "192.0.2.2"
	now = now.Add(61 * time.Second)
	if a, _ := r.LookupNetIP(ctx, "ip", "gw.example"); a[0].String() != "192.0.2.2" || next.calls != 2 {
		t.Fatalf("after TTL: %v (calls %d)", a, next.calls)
	}
	next.addr = ""
	now = now.Add(61 * time.Second)
	if _, err := r.LookupNetIP(ctx, "ip", "gw.example"); err == nil {
		t.Fatal("a failure must be returned")
	}
	if _, err := r.LookupNetIP(ctx, "ip", "gw.example"); err == nil || next.calls != 3 {
		t.Fatalf("failures are cached too: calls %d", next.calls)
	}
}
