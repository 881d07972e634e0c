package authn

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// stub is a Backend counting its reviews: tokens in good are accepted,
// others refused; with gate set, refusals wait for it to close.
type stub struct {
	mu      sync.Mutex
	calls   map[string]int
	good    map[string]Identity
	gate    chan struct{}
	started chan string // each review's token, when set
	err     error       // returned (unmarked: no answer) for tokens not in good, when set
}

func newStub() *stub {
	return &stub{calls: map[string]int{}, good: map[string]Identity{"legit": {Namespace: "sample", ServiceAccount: "sleep"}}}
}

func (s *stub) Authenticate(ctx context.Context, _ model.ClusterID, token string) (Identity, error) {
	s.mu.Lock()
	s.calls[token]++
	id, ok := s.good[token]
	gate, started, err := s.gate, s.started, s.err
	s.mu.Unlock()
	if started != nil {
		started <- token
	}
	if ok {
		return id, nil
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return Identity{}, ctx.Err()
		}
	}
	if err != nil {
		return Identity{}, err
	}
	return Identity{}, Refused(errors.New("invalid bearer token"))
}

func (s *stub) count(token string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[token]
}

func (s *stub) total(prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for t, c := range s.calls {
		if strings.HasPrefix(t, prefix) {
			n += c
		}
	}
	return n
}

// clock is an injectable clock: tests move it, never sleep.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func fromPeer(ip string) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}})
}

type harness struct {
	r     *Reviewer
	b     *stub
	clk   *clock
	reg   *prometheus.Registry
	log   *bytes.Buffer
	logMu *lockedWriter
}

type lockedWriter struct {
	mu  sync.Mutex
	buf *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *lockedWriter) lines() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := strings.TrimSpace(w.buf.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{b: newStub(), clk: &clock{t: time.Unix(1_000_000, 0)}, reg: prometheus.NewRegistry(), log: &bytes.Buffer{}}
	h.logMu = &lockedWriter{buf: h.log}
	cfg.Now = h.clk.now
	h.r = NewReviewer(h.b, cfg, h.reg, slog.New(slog.NewTextHandler(h.logMu, nil)))
	return h
}

func (h *harness) results(result string) float64 {
	var m dto.Metric
	if err := h.r.results.WithLabelValues(result).Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// (a) 60 junk-token authentications at once from one peer, and a
// legitimate one from another: the legitimate one is answered while every
// junk review is still stuck, and the junk peer gets a bounded number of
// reviews before it is backed off. Before the fix every review shared one
// client at 5/s and the legitimate token waited behind all 60.
func TestJunkFloodFromOnePeerDoesNotStarveAnother(t *testing.T) {
	h := newHarness(t, Config{})
	h.b.gate = make(chan struct{})
	h.b.started = make(chan string, 200)
	cfg := h.r.cfg
	var wg sync.WaitGroup
	codesSeen := make(chan codes.Code, 60)
	for i := range 60 {
		wg.Go(func() {
			_, err := h.r.Authenticate(fromPeer("10.0.0.1"), "cluster1", fmt.Sprintf("junk-%d", i))
			if err == nil {
				t.Errorf("junk token %d accepted", i)
			}
			codesSeen <- Code(err)
		})
	}
	for range cfg.MaxConcurrentPerPeer { // the junk peer holds all its slots
		<-h.b.started
	}
	done := make(chan error, 1)
	go func() {
		id, err := h.r.Authenticate(fromPeer("10.0.0.2"), "cluster1", "legit")
		if err == nil && id.ServiceAccount != "sleep" {
			err = fmt.Errorf("identity %+v", id)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("legitimate token: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the legitimate token was not answered while junk reviews were stuck")
	}
	close(h.b.gate)
	wg.Wait()
	close(codesSeen)
	throttled := 0
	for c := range codesSeen {
		if c == codes.ResourceExhausted {
			throttled++
		}
	}
	limit := cfg.FailuresBeforeBackoff - 1 + cfg.MaxConcurrentPerPeer
	if n := h.b.total("junk-"); n > limit || n < cfg.FailuresBeforeBackoff {
		t.Errorf("%d junk reviews, want between %d and %d", n, cfg.FailuresBeforeBackoff, limit)
	}
	if throttled < 60-limit {
		t.Errorf("%d junk attempts throttled (ResourceExhausted), want at least %d", throttled, 60-limit)
	}
	if got := h.results(ResultBackoff) + h.results(ResultBusy); int(got) != throttled {
		t.Errorf("backoff+busy counted %v, want %d", got, throttled)
	}
}

// (b) The same token twice is one review; a refusal is cached for
// RefuseTTL and reviewed again after; an acceptance for AcceptTTL.
func TestResultsAreCached(t *testing.T) {
	h := newHarness(t, Config{})
	ctx := fromPeer("10.0.0.1")
	for range 2 {
		if _, err := h.r.Authenticate(ctx, "cluster1", "legit"); err != nil {
			t.Fatal(err)
		}
	}
	if n := h.b.count("legit"); n != 1 {
		t.Fatalf("legit reviewed %d times, want 1", n)
	}
	// Another cluster is another key: a token accepted by one cluster says
	// nothing about another.
	if _, err := h.r.Authenticate(ctx, "cluster2", "legit"); err != nil || h.b.count("legit") != 2 {
		t.Fatalf("cluster2: %v, %d reviews", err, h.b.count("legit"))
	}
	h.clk.advance(time.Minute - time.Second)
	_, _ = h.r.Authenticate(ctx, "cluster1", "legit")
	if n := h.b.count("legit"); n != 2 {
		t.Fatalf("within AcceptTTL: %d reviews, want 2", n)
	}
	h.clk.advance(time.Second)
	_, _ = h.r.Authenticate(ctx, "cluster1", "legit")
	if n := h.b.count("legit"); n != 3 {
		t.Fatalf("after AcceptTTL: %d reviews, want 3", n)
	}

	for range 2 {
		if _, err := h.r.Authenticate(ctx, "cluster1", "junk"); !IsRefused(err) {
			t.Fatalf("junk: %v, want a refusal", err)
		}
	}
	if n := h.b.count("junk"); n != 1 {
		t.Fatalf("refused token reviewed %d times within RefuseTTL, want 1", n)
	}
	h.clk.advance(5 * time.Second)
	_, _ = h.r.Authenticate(ctx, "cluster1", "junk")
	if n := h.b.count("junk"); n != 2 {
		t.Fatalf("after RefuseTTL: %d reviews, want 2", n)
	}
	if h.results(ResultCachedAccepted) != 2 || h.results(ResultCachedRefused) != 1 {
		t.Errorf("cached_accepted %v, cached_refused %v; want 2, 1", h.results(ResultCachedAccepted), h.results(ResultCachedRefused))
	}
}

// An accepted token is never trusted past its own exp claim.
func TestAcceptedNotCachedPastTokenExpiry(t *testing.T) {
	h := newHarness(t, Config{})
	payload := base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, `{"exp":%d,"sub":"x"}`, h.clk.now().Add(20*time.Second).Unix()))
	tok := "eyJhbGciOiJSUzI1NiJ9." + payload + ".sig"
	h.b.good[tok] = Identity{Namespace: "sample", ServiceAccount: "sleep"}
	ctx := fromPeer("10.0.0.1")
	_, _ = h.r.Authenticate(ctx, "c", tok)
	h.clk.advance(19 * time.Second)
	_, _ = h.r.Authenticate(ctx, "c", tok)
	if n := h.b.count(tok); n != 1 {
		t.Fatalf("before exp: %d reviews, want 1", n)
	}
	h.clk.advance(time.Second)
	_, _ = h.r.Authenticate(ctx, "c", tok)
	if n := h.b.count(tok); n != 2 {
		t.Fatalf("at exp: %d reviews, want 2", n)
	}
}

// Concurrent authentications of one token are one review.
func TestConcurrentReviewsOfOneTokenCollapse(t *testing.T) {
	h := newHarness(t, Config{})
	h.b.gate = make(chan struct{})
	h.b.started = make(chan string, 100)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() { _, _ = h.r.Authenticate(fromPeer(fmt.Sprintf("10.0.1.%d", i)), "c", "junk") })
	}
	<-h.b.started
	close(h.b.gate) // whoever has not joined yet finds the result cached
	wg.Wait()
	if n := h.b.count("junk"); n != 1 {
		t.Fatalf("%d reviews, want 1", n)
	}
}

// (c) A peer that keeps failing is backed off — refused at once, with no
// review — for a window that doubles; other peers are unaffected, and a
// token already accepted still passes.
func TestBackoffPerPeer(t *testing.T) {
	h := newHarness(t, Config{})
	a, b := fromPeer("10.0.0.1"), fromPeer("10.0.0.2")
	if _, err := h.r.Authenticate(b, "c", "legit"); err != nil { // cached for later
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := h.r.Authenticate(a, "c", fmt.Sprintf("junk-%d", i)); !IsRefused(err) {
			t.Fatalf("junk %d: %v", i, err)
		}
	}
	_, err := h.r.Authenticate(a, "c", "junk-5")
	if !errors.Is(err, ErrThrottled) || Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "backed off") {
		t.Fatalf("6th attempt: %v, want backed off (ResourceExhausted)", err)
	}
	if n := h.b.total("junk-"); n != 5 {
		t.Fatalf("%d reviews, want 5: the backed-off attempt was reviewed", n)
	}
	if _, err := h.r.Authenticate(b, "c", "junk-b"); !IsRefused(err) {
		t.Fatalf("another peer: %v, want its token reviewed", err)
	}
	if _, err := h.r.Authenticate(a, "c", "legit"); err != nil {
		t.Fatalf("an accepted token from a backed-off peer: %v", err)
	}
	h.clk.advance(time.Second) // first window: 1 s
	if _, err := h.r.Authenticate(a, "c", "junk-6"); !IsRefused(err) {
		t.Fatalf("after the window: %v, want a review", err)
	}
	h.clk.advance(1500 * time.Millisecond) // second window: 2 s
	if _, err := h.r.Authenticate(a, "c", "junk-7"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("within the doubled window: %v", err)
	}
	h.clk.advance(500 * time.Millisecond)
	h.b.good["legit-a"] = Identity{Namespace: "ns", ServiceAccount: "a"}
	if _, err := h.r.Authenticate(a, "c", "legit-a"); err != nil {
		t.Fatal(err)
	}
	// A fresh acceptance clears the peer's failures.
	if _, err := h.r.Authenticate(a, "c", "junk-8"); !IsRefused(err) {
		t.Fatalf("after an acceptance: %v, want a review", err)
	}
	if h.results(ResultBackoff) != 2 {
		t.Errorf("backoff counted %v, want 2", h.results(ResultBackoff))
	}
}

// The API server not answering is not the peer's fault: not cached, no
// back-off.
func TestReviewErrorsAreNeitherCachedNorHeldAgainstThePeer(t *testing.T) {
	h := newHarness(t, Config{})
	h.b.err = errors.New("connection refused")
	ctx := fromPeer("10.0.0.1")
	for range 10 {
		if _, err := h.r.Authenticate(ctx, "c", "t"); err == nil || IsRefused(err) || errors.Is(err, ErrThrottled) {
			t.Fatalf("%v, want the review error", err)
		}
	}
	if n := h.b.count("t"); n != 10 {
		t.Fatalf("%d reviews, want 10", n)
	}
}

// At most MaxConcurrentPerPeer reviews of one peer run, MaxWaitingPerPeer
// wait, the rest are refused at once.
func TestConcurrencyPerPeer(t *testing.T) {
	h := newHarness(t, Config{MaxConcurrentPerPeer: 2, MaxWaitingPerPeer: 1})
	h.b.gate = make(chan struct{})
	h.b.started = make(chan string, 10)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() { _, _ = h.r.Authenticate(fromPeer("10.0.0.1"), "c", fmt.Sprintf("junk-%d", i)) })
	}
	<-h.b.started
	<-h.b.started
	testkit.WaitFor(t, "the condition", func() bool {
		h.r.mu.Lock()
		defer h.r.mu.Unlock()
		return h.r.peers.m["10.0.0.1"].waiting == 1
	})
	_, err := h.r.Authenticate(fromPeer("10.0.0.1"), "c", "junk-x")
	if !errors.Is(err, ErrThrottled) || !strings.Contains(err.Error(), "2 token reviews running and 1 waiting") {
		t.Fatalf("4th: %v, want busy", err)
	}
	// A caller that gives up while waiting leaves its place.
	ctx, cancel := context.WithCancel(fromPeer("10.0.0.2"))
	cancel()
	if _, err := h.r.Authenticate(ctx, "c", "legit-never"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", err)
	}
	close(h.b.gate)
	wg.Wait()
	if h.results(ResultBusy) != 1 {
		t.Errorf("busy counted %v, want 1", h.results(ResultBusy))
	}
}

// Callers that arrive together while their peer has free slots all get
// one: only a caller that finds every slot taken counts as waiting (a
// caller about to take a free slot was counted, and others arriving at
// that moment refused as busy).
func TestFreeSlotsAreNotBusy(t *testing.T) {
	const n = 8
	for round := range 50 {
		h := newHarness(t, Config{MaxConcurrentPerPeer: n, MaxWaitingPerPeer: 1})
		h.b.gate = make(chan struct{})
		h.b.started = make(chan string, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				_, _ = h.r.Authenticate(fromPeer("10.0.0.1"), "c", fmt.Sprintf("junk-%d", i))
			})
		}
		close(start)
		testkit.WaitFor(t, "every caller reviewed or refused", func() bool {
			return len(h.b.started)+int(h.results(ResultBusy)) >= n
		})
		busy := h.results(ResultBusy)
		close(h.b.gate)
		wg.Wait()
		if busy != 0 {
			t.Fatalf("round %d: %v of %d callers refused as busy with %d slots free", round, busy, n, n)
		}
	}
}

// (d) Refusals are logged at most once per peer per interval, however
// many; the next line counts what was suppressed.
func TestRefusalLogsAreBounded(t *testing.T) {
	h := newHarness(t, Config{})
	for i := range 500 {
		_, _ = h.r.Authenticate(fromPeer("10.0.0.1"), "c", fmt.Sprintf("junk-%d", i))
	}
	_, _ = h.r.Authenticate(fromPeer("10.0.0.2"), "c", "junk")
	if got := h.logMu.lines(); len(got) != 2 || !strings.Contains(got[0], "peer=10.0.0.1") || !strings.Contains(got[1], "peer=10.0.0.2") {
		t.Fatalf("%d lines, want one per peer:\n%s", len(got), strings.Join(got, "\n"))
	}
	h.clk.advance(10 * time.Second)
	_, _ = h.r.Authenticate(fromPeer("10.0.0.1"), "c", "junk-again")
	got := h.logMu.lines()
	if len(got) != 3 || !strings.Contains(got[2], "suppressed=499") {
		t.Fatalf("after the interval, want one line counting 499 suppressed:\n%s", strings.Join(got, "\n"))
	}
}

// Junk cannot grow the state: peers and cached results are bounded, and
// refusals never push out accepted tokens.
func TestStateIsBounded(t *testing.T) {
	h := newHarness(t, Config{MaxPeers: 8, MaxEntries: 16})
	if _, err := h.r.Authenticate(fromPeer("10.0.0.1"), "c", "legit"); err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		_, _ = h.r.Authenticate(fromPeer(fmt.Sprintf("10.1.%d.%d", i/256, i%256)), "c", fmt.Sprintf("junk-%d", i))
	}
	h.r.mu.Lock()
	peers, accepted, refused := len(h.r.peers.m), len(h.r.cache.accepted), len(h.r.cache.refused)
	h.r.mu.Unlock()
	if peers > 8 || refused > 16 || accepted != 1 {
		t.Fatalf("%d peers, %d refused, %d accepted; want <= 8, <= 16, 1", peers, refused, accepted)
	}
	_, _ = h.r.Authenticate(fromPeer("10.0.0.9"), "c", "legit")
	if n := h.b.count("legit"); n != 1 {
		t.Fatalf("the accepted token was reviewed again (%d) after the junk", n)
	}
	// Peers past the bound share an entry that is never backed off.
	for i := range 20 {
		if _, err := h.r.Authenticate(fromPeer("10.2.0.1"), "c", fmt.Sprintf("more-%d", i)); errors.Is(err, ErrThrottled) {
			t.Fatalf("overflow peer throttled at %d: %v", i, err)
		}
	}
}

// Tokens longer than MaxTokenBytes are refused unreviewed.
func TestOverlongTokenIsRefusedUnreviewed(t *testing.T) {
	h := newHarness(t, Config{MaxTokenBytes: 100})
	long := strings.Repeat("x", 101)
	if _, err := h.r.Authenticate(fromPeer("10.0.0.1"), "c", long); !IsRefused(err) {
		t.Fatalf("%v, want a refusal", err)
	}
	if n := h.b.count(long); n != 0 {
		t.Fatalf("reviewed %d times", n)
	}
}

func TestPeerAddr(t *testing.T) {
	for _, tt := range []struct {
		ctx  context.Context
		want string
	}{
		{context.Background(), "unknown"},
		{fromPeer("10.0.0.1"), "10.0.0.1"},
		{fromPeer("fd00::1"), "fd00::1"},
		{peer.NewContext(context.Background(), &peer.Peer{Addr: &net.UnixAddr{Name: "@sock", Net: "unix"}}), "@sock"},
	} {
		if got := PeerAddr(tt.ctx); got != tt.want {
			t.Errorf("PeerAddr = %q, want %q", got, tt.want)
		}
	}
}

// BenchmarkAuthenticate compares a review (a stub answering at once:
// the Reviewer's own cost) with a cached answer.
func BenchmarkAuthenticate(b *testing.B) {
	run := func(b *testing.B, cached bool) {
		s := newStub()
		r := NewReviewer(s, Config{AcceptTTL: time.Hour, MaxEntries: 1 << 20}, nil, nil)
		ctx := fromPeer("10.0.0.1")
		tok := strings.Repeat("t", 1000) // a service-account token's size
		s.good[tok] = Identity{Namespace: "ns", ServiceAccount: "sa"}
		i := 0
		for b.Loop() {
			t := tok
			if !cached {
				i++
				t = fmt.Sprint(tok, i)
				s.good[t] = Identity{Namespace: "ns", ServiceAccount: "sa"}
			}
			if _, err := r.Authenticate(ctx, "c", t); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("uncached", func(b *testing.B) { run(b, false) })
	b.Run("cached", func(b *testing.B) { run(b, true) })
}
