package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTest(opts Options) (*slog.Logger, *bytes.Buffer, *clock) {
	var buf bytes.Buffer
	c := &clock{t: time.Unix(1000, 0)}
	opts.Now = c.now
	return New(slog.New(slog.NewTextHandler(&buf, nil)), opts), &buf, c
}

func lines(b *bytes.Buffer) []string {
	s := strings.TrimSpace(b.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestOneLinePerKeyPerInterval(t *testing.T) {
	log, buf, c := newTest(Options{Every: time.Second, KeyAttrs: []string{"peer"}})
	for range 1000 {
		log.Warn("refused", "peer", "10.0.0.1", "detail", "junk")
	}
	log.Warn("refused", "peer", "10.0.0.2") // another peer still gets its line
	if got := lines(buf); len(got) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(got), buf)
	}
	c.t = c.t.Add(time.Second)
	log.Warn("refused", "peer", "10.0.0.1")
	got := lines(buf)
	if len(got) != 3 || !strings.Contains(got[2], "suppressed=999") {
		t.Fatalf("after the interval want one line counting 999 suppressed, got:\n%s", buf)
	}
}

func TestKeysAreBounded(t *testing.T) {
	log, buf, c := newTest(Options{Every: time.Second, MaxKeys: 4, KeyAttrs: []string{"peer"}})
	for i := range 10000 {
		log.Warn("refused", "peer", string(rune('a'+i%26))+strings.Repeat("x", i))
	}
	// 4 keys, then one overflow line.
	if got := lines(buf); len(got) != 5 {
		t.Fatalf("got %d lines, want 5", len(got))
	}
	h := log.Handler().(*Handler)
	if n := len(h.l.keys); n > 5 {
		t.Fatalf("%d keys remembered, want at most MaxKeys+1", n)
	}
	// Quiet keys are forgotten once their interval has passed, making room.
	c.t = c.t.Add(2 * time.Second)
	log.Warn("other", "peer", "new")
	if got := lines(buf); len(got) != 6 || !strings.Contains(got[5], "msg=other") {
		t.Fatalf("a new key after the interval should log:\n%s", buf)
	}
}

func TestWithAttrsSharesLimits(t *testing.T) {
	log, buf, _ := newTest(Options{Every: time.Minute})
	a, b := log.With("stream", 1), log.With("stream", 2)
	a.Info("nack")
	b.Info("nack")
	if got := lines(buf); len(got) != 1 {
		t.Fatalf("derived loggers must share the limiter, got:\n%s", buf)
	}
}
