package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

func TestBackoffDelayIsExponentialCappedAndJittered(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Jitter: 0.2}
	for _, tt := range []struct {
		attempt int
		r       float64
		want    time.Duration
	}{
		{1, 0.5, 100 * time.Millisecond},
		{2, 0.5, 200 * time.Millisecond},
		{4, 0.5, 800 * time.Millisecond},
		{5, 0.5, time.Second}, // capped
		{60, 0.5, time.Second},
		{1, 0, 80 * time.Millisecond},
		{1, 1, 120 * time.Millisecond},
		{60, 1, 1200 * time.Millisecond},
	} {
		if got := b.Delay(tt.attempt, tt.r); got != tt.want {
			t.Errorf("Delay(%d, %v) = %s, want %s", tt.attempt, tt.r, got, tt.want)
		}
	}
}

// fakeClock is the Renewer's time: every wait is handed to the test, which
// fires it; firing advances the clock by the wait.
type fakeClock struct {
	ctx   context.Context
	waits chan fakeWait
	mu    sync.Mutex
	now   time.Time
}

type fakeWait struct {
	d    time.Duration
	fire func()
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	w := fakeWait{d: d, fire: func() {
		c.mu.Lock()
		c.now = c.now.Add(max(d, 0))
		now := c.now
		c.mu.Unlock()
		ch <- now
	}}
	select {
	case c.waits <- w:
	case <-c.ctx.Done():
	}
	return ch
}

// next returns the Renewer's next wait (it is blocked on it until fired).
func (c *fakeClock) next(t *testing.T) fakeWait {
	t.Helper()
	select {
	case w := <-c.waits:
		return w
	case <-time.After(10 * time.Second):
		t.Fatal("the renewer never waited")
		return fakeWait{}
	}
}

// flakyCA fails the first `failures` requests (the CA is unreachable),
// then signs.
type flakyCA struct {
	mu       sync.Mutex
	failures int
	calls    int
	next     *Identity
}

func (f *flakyCA) Fetch(ctx context.Context) (*Identity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls <= f.failures {
		return nil, errors.New("CSR: rpc error: code = Unavailable desc = connection refused")
	}
	return f.next, nil
}

func (f *flakyCA) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func testIdentity(name string, notBefore, notAfter time.Time) *Identity {
	return &Identity{KeyPEM: []byte("key-" + name), ChainPEM: []byte("chain-" + name), RootPEM: []byte("root"), NotAfter: notAfter,
		Leaf: &x509.Certificate{NotBefore: notBefore, NotAfter: notAfter, URIs: []*url.URL{{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/sample/sa/sleep"}}}}
}

// sdsEnvoy is Envoy's side of the SDS socket: one stream asking for the
// certificate and the root, acknowledging each response.
type sdsEnvoy struct {
	conn   *grpc.ClientConn
	stream secretv3.SecretDiscoveryService_StreamSecretsClient
}

func connectSDS(t *testing.T, ctx context.Context, sock string) *sdsEnvoy {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		stream, err := secretv3.NewSecretDiscoveryServiceClient(conn).StreamSecrets(ctx)
		if err == nil {
			err = stream.Send(&discovery.DiscoveryRequest{Node: &corev3.Node{Id: "envoy"}, TypeUrl: resource.SecretType,
				ResourceNames: []string{"default", "ROOTCA"}})
		}
		if err == nil {
			t.Cleanup(func() { conn.Close() })
			return &sdsEnvoy{conn: conn, stream: stream}
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // the socket is not there yet
	}
}

// recv returns the certificate chain of the next response and ACKs it.
func (e *sdsEnvoy) recv(t *testing.T) string {
	t.Helper()
	r, err := e.stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var chain string
	var names []string
	for _, a := range r.Resources {
		s := &tlsv3.Secret{}
		if err := a.UnmarshalTo(s); err != nil {
			t.Fatal(err)
		}
		names = append(names, s.Name)
		if s.Name == "default" {
			chain = string(s.GetTlsCertificate().GetCertificateChain().GetInlineBytes())
		}
	}
	if len(names) != 2 {
		t.Errorf("SDS response with secrets %v, want default and ROOTCA", names)
	}
	if err := e.stream.Send(&discovery.DiscoveryRequest{TypeUrl: resource.SecretType, ResourceNames: []string{"default", "ROOTCA"},
		VersionInfo: r.VersionInfo, ResponseNonce: r.Nonce}); err != nil {
		t.Fatal(err)
	}
	return chain
}

// TestRenewalRetriesWhileTheCAIsUnreachable is the fault "CA unreachable
// when a certificate is due": the renewal fails several times; meanwhile
// Envoy's stream receives nothing and a newly connecting Envoy still gets
// the current certificate; the retries wait longer and longer (capped);
// once the CA answers, the new certificate is pushed on the same stream.
func TestRenewalRetriesWhileTheCAIsUnreachable(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name     string
		current  *Identity
		firstTTL time.Duration // the wait before the first renewal attempt
		failures int
		expired  bool
	}{
		{"due at half life", testIdentity("1", t0.Add(-30*time.Minute), t0.Add(90*time.Minute)), 30 * time.Minute, 6, false},
		{"already expired", testIdentity("1", t0.Add(-2*time.Hour), t0.Add(-time.Second)), 0, 4, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			clock := &fakeClock{ctx: ctx, waits: make(chan fakeWait), now: t0}
			renewed := testIdentity("2", t0, t0.Add(2*time.Hour))
			ca := &flakyCA{failures: tt.failures, next: renewed}
			sds := NewSDS()
			if err := sds.Update(tt.current); err != nil {
				t.Fatal(err)
			}
			sock := filepath.Join(t.TempDir(), "sds.sock")
			go func() { _ = sds.Serve(ctx, sock) }()
			envoy := connectSDS(t, ctx, sock)
			if got := envoy.recv(t); got != "chain-1" {
				t.Fatalf("Envoy starts with %q", got)
			}

			var logs testkit.SyncBuffer
			backoff := Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Jitter: 0.2}
			r := &Renewer{Certs: ca, SDS: sds, Backoff: backoff, Now: clock.Now, After: clock.After,
				Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))}
			done := make(chan struct{})
			go func() { r.Run(ctx, tt.current); close(done) }()

			w := clock.next(t)
			if w.d != tt.firstTTL && !(tt.firstTTL == 0 && w.d <= 0) {
				t.Errorf("first renewal after %s, want %s (half life)", w.d, tt.firstTTL)
			}
			if ca.Calls() != 0 {
				t.Fatal("the CA was asked before the certificate was due")
			}
			w.fire()
			var delays []time.Duration
			for i := 1; i <= tt.failures; i++ {
				w := clock.next(t) // the renewer waits to retry after failure i
				if got := ca.Calls(); got != i {
					t.Fatalf("retry wait %d after %d CA calls", i, got)
				}
				delays = append(delays, w.d)
				// A newly connecting Envoy still gets the current certificate.
				if got := connectSDS(t, ctx, sock).recv(t); got != "chain-1" {
					t.Fatalf("after failure %d a new SDS stream gets %q, want the current certificate", i, got)
				}
				w.fire()
			}
			// The next thing on Envoy's original stream is the new certificate:
			// nothing was withdrawn or pushed in between.
			if got := envoy.recv(t); got != "chain-2" {
				t.Fatalf("after renewal Envoy got %q, want chain-2", got)
			}
			if got := ca.Calls(); got != tt.failures+1 {
				t.Errorf("%d CA calls, want %d", got, tt.failures+1)
			}
			// Then the next renewal is scheduled at the new certificate's half life.
			w = clock.next(t)
			if want := renewed.RenewAt().Sub(clock.Now()); w.d != want {
				t.Errorf("next renewal in %s, want %s", w.d, want)
			}
			cancel()
			<-done

			// The delays grow (exponential, jittered) until the cap and never exceed it.
			for i, d := range delays {
				nominal := min(backoff.Initial<<i, backoff.Max)
				lo, hi := time.Duration(float64(nominal)*0.8), time.Duration(float64(nominal)*1.2)
				if d < lo || d > hi {
					t.Errorf("retry %d waited %s, want %s ±20%%", i+1, d, nominal)
				}
				if i > 0 && nominal < backoff.Max && d <= delays[i-1] {
					t.Errorf("retry %d waited %s, not longer than retry %d (%s): %v", i+1, d, i, delays[i-1], delays)
				}
			}
			t.Logf("retry delays: %v", delays)

			// One log line per failure on attempts 1, 2, 4, ... — not one per retry.
			out := logs.String()
			failLines := strings.Count(out, "certificate renewal failed")
			want := 0
			for a := 1; a <= tt.failures; a++ {
				if a&(a-1) == 0 {
					want++
				}
			}
			if failLines != want {
				t.Errorf("%d failure lines for %d failures, want %d:\n%s", failLines, tt.failures, want, out)
			}
			if !strings.Contains(out, "Unavailable") || !strings.Contains(out, fmt.Sprintf("failedAttempts=%d", tt.failures)) ||
				!strings.Contains(out, "certificate rotated") {
				t.Errorf("log lacks the error or the recovery:\n%s", out)
			}
			if got := strings.Count(out, "level=ERROR"); tt.expired != (got == 1) || got > 1 {
				t.Errorf("%d ERROR lines (expired: %v):\n%s", got, tt.expired, out)
			}
			if !tt.expired && !strings.Contains(out, "the current certificate keeps serving") {
				t.Errorf("the failure line does not say the current certificate keeps serving:\n%s", out)
			}
		})
	}
}

// flakySDS fails its first update.
type flakySDS struct {
	mu      sync.Mutex
	updates int
	served  *Identity
}

func (s *flakySDS) Update(id *Identity) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.updates++
	if s.updates == 1 {
		return errors.New("cache closed")
	}
	s.served = id
	return nil
}

// TestFirstCertificateRetriesAreCappedLower: before the first certificate
// the proxy does not run, so retries stay at StartMax; once a certificate
// serves, renewals back off up to Max.
func TestFirstCertificateRetriesAreCappedLower(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := &fakeClock{ctx: ctx, waits: make(chan fakeWait), now: t0}
	ca := &flakyCA{failures: 8, next: testIdentity("1", t0, t0.Add(time.Hour))}
	r := &Renewer{Certs: ca, SDS: NewSDS(), Now: clock.Now, After: clock.After,
		Backoff: Backoff{Initial: time.Second, Max: time.Minute, StartMax: 4 * time.Second},
		Log:     testkit.Logger()}
	got := make(chan *Identity, 1)
	go func() { id, _ := r.First(ctx); got <- id }()
	var waits []time.Duration
	for range 8 {
		w := clock.next(t)
		waits = append(waits, w.d)
		w.fire()
	}
	if id := <-got; id == nil || ca.Calls() != 9 {
		t.Fatalf("first certificate %v after %d calls", id, ca.Calls())
	}
	want := []int{1, 2, 4, 4, 4, 4, 4, 4}
	for i := range want {
		if waits[i] != time.Duration(want[i])*time.Second {
			t.Fatalf("waits before the first certificate %v, want %v seconds", waits, want)
		}
	}

	// A renewal against the same outage backs off past StartMax.
	ca.mu.Lock()
	ca.calls, ca.failures = 0, 8
	ca.mu.Unlock()
	go func() { id, _ := r.obtain(ctx, testIdentity("1", t0, t0.Add(time.Hour))); got <- id }()
	waits = waits[:0]
	for range 8 {
		w := clock.next(t)
		waits = append(waits, w.d)
		w.fire()
	}
	<-got
	if waits[7] != time.Minute {
		t.Errorf("renewal waits %v, want them to reach Max (1m)", waits)
	}
}

// TestRenewalBacksOffWhenPublishingFails: a certificate that cannot be
// published is retried after a back-off, not in a tight loop.
func TestRenewalBacksOffWhenPublishingFails(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := &fakeClock{ctx: ctx, waits: make(chan fakeWait), now: t0}
	ca := &flakyCA{next: testIdentity("2", t0, t0.Add(2*time.Hour))}
	sds := &flakySDS{}
	var logs testkit.SyncBuffer
	r := &Renewer{Certs: ca, SDS: sds, Now: clock.Now, After: clock.After, Backoff: Backoff{Initial: time.Second, Max: time.Minute},
		Log: slog.New(slog.NewTextHandler(&logs, nil))}
	done := make(chan struct{})
	go func() { r.Run(ctx, testIdentity("1", t0.Add(-time.Hour), t0.Add(time.Hour))); close(done) }()
	clock.next(t).fire() // due now
	w := clock.next(t)
	if w.d != time.Second || ca.Calls() != 1 {
		t.Fatalf("after a failed publish: wait %s after %d CA calls; want a 1s back-off after 1", w.d, ca.Calls())
	}
	w.fire()
	clock.next(t) // the next renewal, an hour on
	cancel()
	<-done
	if sds.served == nil || string(sds.served.ChainPEM) != "chain-2" || ca.Calls() != 2 {
		t.Errorf("served %v after %d CA calls", sds.served, ca.Calls())
	}
	if !strings.Contains(logs.String(), "SDS update: cache closed") {
		t.Errorf("log:\n%s", logs.String())
	}
}

// TestShortLivedBackdatedCertificateIsNotRenewedAtOnce: the CA backdates
// NotBefore by a minute, so a 30s certificate's half life (counted from
// NotBefore) is already past when it arrives; it is renewed half-way
// through what is left of its life instead — and a CA that keeps handing
// out such certificates is not asked again at once.
func TestShortLivedBackdatedCertificateIsNotRenewedAtOnce(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := &fakeClock{ctx: ctx, waits: make(chan fakeWait), now: t0}
	ca := &flakyCA{next: testIdentity("2", t0.Add(-time.Minute), t0.Add(30*time.Second))}
	r := &Renewer{Certs: ca, SDS: &flakySDS{updates: 1}, Now: clock.Now, After: clock.After,
		Backoff: Backoff{Initial: time.Second, Max: time.Minute}, Log: testkit.Logger()}
	first, err := r.First(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { r.Run(ctx, first); close(done) }()
	w := clock.next(t)
	if w.d != 15*time.Second {
		t.Errorf("a certificate valid for 30s more is renewed in %s, want 15s", w.d)
	}
	w.fire()
	// The CA hands out the same (now already expired) certificate again.
	if w := clock.next(t); w.d < time.Second {
		t.Errorf("after renewing to a certificate already due, the next renewal is in %s: a tight loop", w.d)
	}
	cancel()
	<-done
}
