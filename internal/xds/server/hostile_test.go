package server

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// These tests are the hostile-client review's findings (issue 17), each
// from the client's side: what one client sends must not become shared
// state, nor cost another client its service.

func peerAt(ip string) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}})
}

// One peer may hold at most MaxStreamsPerClient streams; another peer, and
// a proved identity, still get theirs; a closed stream gives its slot back.
func TestStreamsArePerClientBounded(t *testing.T) {
	f := newFixture(t, 0, Limits{MaxStreams: 100, MaxStreamsPerClient: 3})
	for id := int64(1); id <= 3; id++ {
		if err := f.port.open(peerAt("10.0.0.1"), id); err != nil {
			t.Fatal(err)
		}
	}
	wantCode(t, f.port.open(peerAt("10.0.0.1"), 4), codes.ResourceExhausted)
	wantCode(t, f.port.openDelta(peerAt("10.0.0.1"), 4), codes.ResourceExhausted)
	if err := f.port.open(peerAt("10.0.0.2"), 5); err != nil {
		t.Fatalf("another peer refused: %v", err)
	}
	if err := f.port.open(tlsPeer("spiffe://cluster.local/ns/sample/sa/sleep"), 6); err != nil {
		t.Fatalf("a workload identity refused: %v", err)
	}
	f.port.close(1)
	if err := f.port.open(peerAt("10.0.0.1"), 7); err != nil {
		t.Fatalf("a slot given back is not reusable: %v", err)
	}
	if d := (Limits{MaxStreams: 300}).withDefaults().MaxStreamsPerClient; d != 75 {
		t.Fatalf("default per-client streams of 300 = %d, want a quarter", d)
	}
}

// A TLS stream with neither a certificate nor a token is refused before it
// counts: 300 of them leave every slot to legitimate proxies.
func TestUnauthenticatedTLSStreamsTakeNoSlot(t *testing.T) {
	f := newFixture(t, 0, Limits{MaxStreams: 10})
	for id := int64(1); id <= 300; id++ {
		wantCode(t, f.port.open(tlsPeer(""), id), codes.Unauthenticated)
	}
	if err := f.port.open(tlsPeer("spiffe://cluster.local/ns/sample/sa/sleep"), 301); err != nil {
		t.Fatalf("a legitimate proxy refused after the flood: %v", err)
	}
}

// A stream that sends no request is closed after FirstRequestTimeout and
// its slot goes back; a stream that asks stays.
func TestSilentStreamIsClosed(t *testing.T) {
	w := newVCWorld(0)
	w.set(edsView("a"), map[string]types.Resource{"x": cla("x", "10.0.0.1")})
	env := newADSWith(t, w, Limits{MaxStreams: 1, FirstRequestTimeout: 200 * time.Millisecond})
	silent, err := env.openSotw("silent", "a")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.close()
	err = silent.end(t)
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "no request within") {
		t.Fatalf("silent stream ended with %v, want DeadlineExceeded", err)
	}
	testkit.WaitFor(t, "the silent stream's slot to be freed", func() bool { return len(env.tr.Streams()) == 0 })
	s := env.sotw(t, "p", "a")
	s.sub(t, resource.EndpointType)
	s.recv(t, resource.EndpointType)
	s.ack(t, resource.EndpointType)
	s.mustBlock(t) // still served well after the timeout would have fired
}

// Type URLs are bounded at the edge: a long one ends the stream, and the
// 16-types rule counts unserved types by the same key the lookup uses.
func TestTypeURLsAreBounded(t *testing.T) {
	f := newFixture(t, 0, Limits{})
	if err := f.port.open(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	n := node("p", "", "", "")
	long := "type.googleapis.com/" + strings.Repeat("x", 4<<20)
	wantCode(t, f.port.request(1, sotw(n, long)), codes.InvalidArgument)
	types := 0
	var err error
	for i := range 2000 {
		url := "type.googleapis.com/" + strconv.Itoa(i) + strings.Repeat("y", 200)
		if err = f.port.request(1, sotw(n, url)); err != nil {
			break
		}
		types++
	}
	wantCode(t, err, codes.ResourceExhausted)
	if types != 16 {
		t.Fatalf("%d types accepted on one stream, want 16", types)
	}
	for _, tc := range []struct{ in, want string }{
		{resource.EndpointType, "eds"}, {resource.ClusterType, "cds"}, {long, "other"}, {"type.googleapis.com/x", "other"},
	} {
		if got := MetricType(tc.in); got != tc.want {
			t.Errorf("MetricType(%.40q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// A stream keeps only the node fields Horizon reads: megabytes of other
// metadata go with the request, and later requests may repeat the node
// whole.
func TestStreamKeepsOnlyTheNodeFieldsItReads(t *testing.T) {
	f := newFixture(t, 0, Limits{})
	if err := f.port.open(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	n := node("p", "", "sample", "sleep")
	n.Metadata.Fields["JUNK"] = structpb.NewStringValue(strings.Repeat("j", 900<<10))
	if err := f.port.request(1, sotw(n, resource.ClusterType)); err != nil {
		t.Fatal(err)
	}
	f.tr.mu.Lock()
	var kept []*corev3.Node
	for _, s := range f.tr.streams {
		kept = append(kept, s.first, s.node)
	}
	f.tr.mu.Unlock()
	for _, k := range kept {
		if size := proto.Size(k); size > 1024 {
			t.Fatalf("the stream keeps %d bytes of its node", size)
		}
	}
	if err := f.port.request(1, sotw(proto.Clone(n).(*corev3.Node), resource.EndpointType)); err != nil {
		t.Fatalf("the same node again: %v", err)
	}
	changed := proto.Clone(n).(*corev3.Node)
	changed.Metadata.Fields["NAMESPACE"] = structpb.NewStringValue("other")
	wantCode(t, f.port.request(1, sotw(changed, resource.EndpointType)), codes.PermissionDenied)
	// A node over MaxNodeBytes is refused outright.
	if err := f.port.open(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	huge := node("q", "", "", "")
	huge.Metadata.Fields["JUNK"] = structpb.NewStringValue(strings.Repeat("j", MaxNodeBytes))
	wantCode(t, f.port.request(2, sotw(huge, resource.ClusterType)), codes.InvalidArgument)
}

// Views keyed by a client's claims are bounded per client: one client
// filling its share leaves the rest of the cache to others.
func TestClaimedViewsArePerClientBounded(t *testing.T) {
	w := newVCWorld(0)
	bind := func(client, network string, i int) error {
		n := &corev3.Node{Id: "r" + strconv.Itoa(i)}
		_, err := w.vc.Bind(n, resource.ClusterType, Proxy{ID: n.Id, Network: network, Client: client})
		return err
	}
	var err error
	held := 0
	for i := range 100 {
		if err = bind("peer 10.0.0.1", "claimed-"+strconv.Itoa(i), i); err != nil {
			break
		}
		held++
	}
	wantCode(t, err, codes.ResourceExhausted)
	if held != MaxClaimedViewsPerClient {
		t.Fatalf("one client made %d claimed views, want %d", held, MaxClaimedViewsPerClient)
	}
	// Binding a view it already holds is fine; so are verified views and
	// another client's claims.
	if err := bind("peer 10.0.0.1", "claimed-0", 1000); err != nil {
		t.Fatalf("a held claimed view: %v", err)
	}
	if err := bind("peer 10.0.0.1", "verified", 1001); err != nil {
		t.Fatalf("a verified view: %v", err)
	}
	if err := bind("peer 10.0.0.2", "claimed-x", 1002); err != nil {
		t.Fatalf("another client: %v", err)
	}
}

// Names a stream subscribes to are bounded over all its types, state of
// the world and delta; the refused request changes nothing.
func TestSubscribedNamesAreBounded(t *testing.T) {
	w := newVCWorld(0)
	w.set(edsView("a"), map[string]types.Resource{"x": cla("x", "10.0.0.1")})
	env := newADSWith(t, w, Limits{MaxNamesPerStream: 1000, MaxNameBytesPerStream: 64 << 10})
	many := func(prefix string, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = prefix + strconv.Itoa(i)
		}
		return out
	}
	// Delta: subscriptions add up until the limit.
	d := env.delta(t, "d", "a")
	d.sub(t, resource.EndpointType, []string{"x"}, nil)
	d.recv(t, resource.EndpointType)
	// Names the view lacks get no response: the requests just add up.
	for i := 0; i < 100; i++ {
		if d.trySend(d.subOf(resource.EndpointType, many("n"+strconv.Itoa(i)+"-", 300), nil)) != nil {
			break // the server ended the stream
		}
	}
	if _, err := d.next(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("delta stream past the names limit ended with %v, want ResourceExhausted", err)
	}
	// State of the world: one request over the bytes limit.
	s := env.sotw(t, "s", "a")
	s.names[resource.EndpointType] = many(strings.Repeat("n", 100), 1000)
	s.ack(t, resource.EndpointType)
	if err := s.end(t); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("sotw stream past the names limit ended with %v, want ResourceExhausted", err)
	}
	// Unsubscribing gives the room back (delta).
	d2 := env.delta(t, "d2", "a")
	for i := range 10 {
		d2.send(t, d2.subOf(resource.EndpointType, many("m", 900), nil))
		d2.send(t, d2.subOf(resource.EndpointType, nil, many("m", 900)))
		_ = i
	}
	d2.send(t, &discovery.DeltaDiscoveryRequest{TypeUrl: probeType(1)})
	for {
		r, err := d2.next()
		if err != nil {
			t.Fatalf("subscribe/unsubscribe within the limit ended the stream: %v", err)
		}
		if r.GetTypeUrl() == probeType(1) {
			break
		}
	}
}

// A request larger than MaxRequestBytes is refused by gRPC from its length
// prefix, before the server reads it; the stream ends, others go on.
func TestOversizedRequestIsRefusedUnread(t *testing.T) {
	w := newVCWorld(0)
	w.set(edsView("a"), map[string]types.Resource{"x": cla("x", "10.0.0.1")})
	env := newADSWith(t, w, Limits{MaxRequestBytes: 64 << 10})
	s := env.sotw(t, "big", "a")
	s.send(t, &discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: []string{strings.Repeat("n", 100<<10)}})
	if err := s.end(t); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("an oversized request ended the stream with %v, want ResourceExhausted", err)
	}
	ok := env.sotw(t, "small", "a")
	ok.sub(t, resource.EndpointType, "x")
	ok.recv(t, resource.EndpointType)
}

// A stream's requests are read no faster than RequestsPerSecond (after a
// burst): a NACK flood waits on flow control instead of being decoded as
// fast as it is sent. Only an upper bound is asserted (a slow machine only
// reads fewer), and that every request is read in the end.
func TestRequestsArePaced(t *testing.T) {
	w := newVCWorld(0)
	w.set(edsView("a"), map[string]types.Resource{"x": cla("x", "10.0.0.1")})
	const perSecond, burst, total = 20, 10, 40
	env := newADSWith(t, w, Limits{RequestsPerSecond: perSecond, RequestBurst: burst})
	s := env.sotw(t, "flood", "a")
	s.sub(t, resource.EndpointType, "x")
	r := s.recv(t, resource.EndpointType)
	start := time.Now()
	for i := range total {
		s.send(t, &discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: []string{"x"},
			VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce(), ErrorDetail: &statuspb.Status{Message: "bad " + strconv.Itoa(i)}})
	}
	nacks := func() int {
		for _, st := range env.tr.Streams() {
			if ts := st.Types[resource.EndpointType]; ts != nil {
				return ts.NACKs
			}
		}
		return 0
	}
	for {
		n, elapsed := nacks(), time.Since(start)
		// The first request of the stream took one token.
		if limit := burst + int(elapsed.Seconds()*perSecond) + 1; n > limit {
			t.Fatalf("%d requests read after %v, more than the pace allows (%d)", n, elapsed, limit)
		}
		if n == total {
			return
		}
		if elapsed > testTimeout {
			t.Fatalf("only %d of %d requests read in %v", n, total, testTimeout)
		}
		time.Sleep(10 * time.Millisecond) // polling an observable count, bounded by testTimeout
	}
}

// A workload is one client however it proves itself: its client
// certificate (of any trust domain) and its service-account token share
// one per-client budget, or one workload would hold a quarter of every
// slot per way of proving itself.
func TestOneWorkloadIsOneClientByCertificateOrToken(t *testing.T) {
	rv := &fakeReviewer{tokens: map[string][3]string{"sleep-token": {"cluster1", "sample", "sleep"}}}
	f := newFixture(t, 0, Limits{MaxStreams: 100, MaxStreamsPerClient: 2})
	f.tr.AcceptTokens(&TokenAuth{Review: rv.review, LocalCluster: "cluster1"})
	if err := f.port.open(tlsPeer("spiffe://cluster.local/ns/sample/sa/sleep"), 1); err != nil {
		t.Fatal(err)
	}
	if err := f.port.open(tlsPeer("spiffe://cluster.local/ns/sample/sa/sleep"), 2); err != nil {
		t.Fatal(err)
	}
	wantCode(t, f.port.open(tokenPeer("authorization", "Bearer sleep-token", ClusterIDHeader, "cluster1"), 3), codes.ResourceExhausted)
	wantCode(t, f.port.open(tlsPeer("spiffe://other.example/ns/sample/sa/sleep"), 4), codes.ResourceExhausted)
	if err := f.port.open(tlsPeer("spiffe://cluster.local/ns/sample/sa/other"), 5); err != nil {
		t.Fatalf("another workload refused: %v", err)
	}
}

// A view's first build runs under the view's own lock, not the cache's or
// the tracker's: while one stream's new view builds (tens of milliseconds
// in a large mesh — and a client can make a view be built again and again
// by opening and closing the only stream of a shape), other streams are
// bound, served and closed. Before, every request of every stream waited.
func TestAViewBuildBlocksNoOtherStream(t *testing.T) {
	w := newVCWorld(0)
	slow, fast := edsView("slow"), edsView("fast")
	w.set(slow, map[string]types.Resource{"s": cla("s", "10.0.0.1")})
	w.set(fast, map[string]types.Resource{"f": cla("f", "10.0.0.2")})
	env := newADS(t, w)
	entered, release := make(chan struct{}), make(chan struct{})
	build := w.vc.build
	w.vc.build = func(v View) map[string]types.Resource {
		if v == slow {
			close(entered)
			<-release
		}
		return build(v)
	}
	s := env.sotw(t, "p-slow", "slow")
	s.sub(t, resource.EndpointType)
	<-entered // the slow view is being built
	f := env.sotw(t, "p-fast", "fast")
	f.sub(t, resource.EndpointType)
	if got := names(sotwContent(t, f.recv(t, resource.EndpointType))); len(got) != 1 || got[0] != "f" {
		t.Fatalf("the other stream got %v while a view was being built", got)
	}
	f.close()
	testkit.WaitFor(t, "the other stream's view freed", func() bool { return w.vc.Version(fast) == "" })
	close(release)
	if got := names(sotwContent(t, s.recv(t, resource.EndpointType))); len(got) != 1 || got[0] != "s" {
		t.Fatalf("the slow view's stream got %v", got)
	}
}
