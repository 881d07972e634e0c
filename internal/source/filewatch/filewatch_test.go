package filewatch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// calls records every load and rejection, in order, on one channel.
type calls chan string

func (c calls) load(fail map[string]error) Loader {
	return func(s Snapshot) error {
		if err := fail[string(s.Data)]; err != nil {
			c <- "load-failed " + string(s.Data)
			return err
		}
		c <- "loaded " + string(s.Data)
		return nil
	}
}

func (c calls) rejected(err error) { c <- "rejected " + err.Error() }

// next returns the next call, failing the test after a timeout.
func (c calls) next(t *testing.T) string {
	t.Helper()
	select {
	case s := <-c:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no load or rejection within 5s")
		return ""
	}
}

func expect(t *testing.T, c calls, want ...string) {
	t.Helper()
	for _, w := range want {
		if got := c.next(t); got != w {
			t.Fatalf("got %q, want %q", got, w)
		}
	}
}

// writeFile replaces path atomically, so no test sees a half-written file.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestPollingAloneFindsChanges(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	path := filepath.Join(t.TempDir(), "f")
	writeFile(t, path, "v1")
	c := make(calls, 100)
	opts := Options{Poll: 10 * time.Millisecond, Settle: 20 * time.Millisecond, pollOnly: true}
	if err := Start(ctx, path, opts, c.load(nil), c.rejected); err != nil {
		t.Fatal(err)
	}
	expect(t, c, "loaded v1")
	writeFile(t, path, "v2")
	expect(t, c, "loaded v2")
}

// A failure is reported once, retried on every poll without being
// reported again, and the path is applied once it is valid.
func TestFailedLoadIsRetriedAndReportedOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	path := filepath.Join(t.TempDir(), "f")
	writeFile(t, path, "v1")
	c := make(calls, 100)
	opts := Options{Poll: 10 * time.Millisecond, Settle: 10 * time.Millisecond}
	if err := Start(ctx, path, opts, c.load(map[string]error{"bad": errors.New("bad content")}), c.rejected); err != nil {
		t.Fatal(err)
	}
	expect(t, c, "loaded v1")
	writeFile(t, path, "bad")
	expect(t, c, "load-failed bad", "rejected bad content", "load-failed bad", "load-failed bad")
	writeFile(t, path, "v2")
	for {
		switch got := c.next(t); got {
		case "load-failed bad": // a retry that was under way
		case "loaded v2":
			return
		default:
			t.Fatalf("got %q", got)
		}
	}
}

// A loader that finds the path changed under it applies nothing; the path
// is read again once quiet, without waiting for a poll.
func TestChangedWhileLoadingIsReadAgain(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	path := filepath.Join(t.TempDir(), "f")
	writeFile(t, path, "v1")
	c := make(calls, 100)
	changedOnce := true
	load := func(s Snapshot) error {
		if string(s.Data) == "v2" && changedOnce {
			changedOnce = false
			c <- "changed"
			return ErrChanged
		}
		return c.load(nil)(s)
	}
	opts := Options{Poll: time.Hour, Settle: 10 * time.Millisecond}
	if err := Start(ctx, path, opts, load, c.rejected); err != nil {
		t.Fatal(err)
	}
	expect(t, c, "loaded v1")
	writeFile(t, path, "v2")
	expect(t, c, "changed", "loaded v2")
}

func TestMissingPathAtStartIsAnError(t *testing.T) {
	c := make(calls, 100)
	err := Start(context.Background(), filepath.Join(t.TempDir(), "nope"), Options{}, func(s Snapshot) error { return s.Err }, c.rejected)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}
