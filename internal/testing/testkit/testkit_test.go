package testkit

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a testing.TB that records a Fatalf instead of ending the
// test, so that a failing wait can be checked.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = format
	panic(r)
}

func TestEventually(t *testing.T) {
	n := 0
	Eventually(t, time.Second, "three polls", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("polled %d times", n)
	}
	r := &recorder{TB: t}
	func() {
		defer func() {
			if p := recover(); p != r {
				t.Fatalf("want the recorder's Fatalf, got %v", p)
			}
		}()
		Eventually(r, 20*time.Millisecond, "never", func() bool { return false })
	}()
	if !strings.Contains(r.failed, "timed out") {
		t.Fatalf("failure %q", r.failed)
	}
}

func TestFreePort(t *testing.T) {
	p := FreePort(t)
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatalf("port %d is not free: %v", p, err)
	}
	l.Close()
	Logger().Info("nothing is written")
}

// fails reports how f failed r (its Fatalf format), "" if it did not.
func fails(t *testing.T, f func(r *recorder)) string {
	t.Helper()
	r := &recorder{TB: t}
	func() {
		defer func() {
			if p := recover(); p != nil && p != r {
				panic(p)
			}
		}()
		f(r)
	}()
	return r.failed
}

func TestEvents(t *testing.T) {
	e := NewEvents()
	all := []string{"set a", "error x", "clear", "set b", "error y", "set c"}
	for _, ev := range all {
		e.Add(ev)
	}
	if got := e.Expect(t, "set", "error"); got != "error x" {
		t.Fatalf("Expect returned %q, want the last event awaited", got)
	}
	e.ExpectReached(t, "set b", "set ") // passes over "clear"
	if f := fails(t, func(r *recorder) { e.Expect(r, "set") }); !strings.Contains(f, "want %q") {
		t.Fatalf(`Expect("set") of "error y": failure %q`, f)
	}
	if f := fails(t, func(r *recorder) { e.ExpectReached(r, "set d", "set ") }); !strings.Contains(f, "before") {
		t.Fatalf(`ExpectReached("set d") of "set c": failure %q`, f)
	}
	if got := e.All(); !slices.Equal(got, all) {
		t.Fatalf("All() = %q, want %q", got, all)
	}
}

func TestSyncBuffer(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				_, _ = b.Write([]byte("line\n"))
			}
		}()
	}
	for range 10 { // reads while the writers write: -race checks the lock
		if n := b.Count("line"); n > 800 {
			t.Fatalf("Count = %d of at most 800 writes", n)
		}
	}
	wg.Wait()
	if n := b.Count("line"); n != 800 {
		t.Fatalf("Count = %d after 800 writes", n)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), strings.Repeat("line\n", 800); got != want {
		t.Fatalf("String() has %d bytes, want %d", len(got), len(want))
	}
}
