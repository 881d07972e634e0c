package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// fixture is a Tracker over a ViewCache whose views are keyed by network
// (EDS, CDS) and whose builds are counted.
type fixture struct {
	t         *testing.T
	tr        *Tracker
	port      adsPort
	vc        *ViewCache
	logs      *testkit.SyncBuffer
	mu        sync.Mutex
	connected map[string]int
}

func newFixture(t *testing.T, maxViews int, limits Limits) *fixture {
	f := &fixture{t: t, logs: &testkit.SyncBuffer{}, connected: map[string]int{}}
	classify := func(typeURL string, p Proxy) (translate.View, bool, error) {
		if typeURL != resource.EndpointType && typeURL != resource.ClusterType {
			return translate.View{}, false, UnsupportedType(typeURL)
		}
		if p.Network == "refused" {
			return translate.View{}, false, status.Error(codes.FailedPrecondition, "network refused")
		}
		// A network named "located" stands for a sidecar EDS view of a
		// workload the mesh located (in r1/z1).
		if p.Network == "located" && typeURL == resource.EndpointType {
			return translate.View{Network: p.Network, Cluster: "c1", Located: true, Locality: model.Locality{Region: "r1", Zone: "z1"}}, false, nil
		}
		// A network named "claimed-..." stands for a view keyed by what
		// the proxy claims.
		return translate.View{Network: p.Network}, strings.HasPrefix(p.Network, "claimed-"), nil
	}
	build := func(View) map[string]types.Resource { return map[string]types.Resource{} }
	f.vc = NewViewCache(build, classify, maxViews)
	f.tr = NewTracker(Hooks{Connected: func(n string, d int) {
		f.mu.Lock()
		f.connected[n] += d
		f.mu.Unlock()
	}}, f.vc, limits, slog.New(slog.NewTextHandler(f.logs, nil)))
	f.port = newADSPort(f.tr)
	return f
}

// adsPort drives the Tracker as one gRPC server's ADS streams do (ads.go,
// conn.go): every stream key carries the server's number, and a request
// is authorised as the stream's goroutine asks, its node replaced by the
// stream's own.
type adsPort struct {
	t      *Tracker
	server uint32
}

func newADSPort(t *Tracker) adsPort { return adsPort{t: t, server: t.servers.Add(1)} }

func (p adsPort) key(id int64, delta bool) streamKey {
	return streamKey{server: p.server, delta: delta, id: id}
}

func (p adsPort) open(ctx context.Context, id int64) error { return p.t.open(ctx, p.key(id, false)) }

func (p adsPort) openDelta(ctx context.Context, id int64) error {
	return p.t.open(ctx, p.key(id, true))
}

func (p adsPort) close(id int64) { p.t.closed(p.key(id, false)) }

func (p adsPort) closeDelta(id int64) { p.t.closed(p.key(id, true)) }

// request and deltaRequest pass a request's fields as conn.sotwRequest
// and conn.deltaRequest do (delta has no version_info: the nonce stands
// for it).
func (p adsPort) request(id int64, r *discovery.DiscoveryRequest) error {
	return p.t.request(p.key(id, false), &r.Node, r.GetTypeUrl(), r.GetVersionInfo(), r.GetResponseNonce(), r.GetErrorDetail().GetMessage())
}

func (p adsPort) deltaRequest(id int64, r *discovery.DeltaDiscoveryRequest) error {
	return p.t.request(p.key(id, true), &r.Node, r.GetTypeUrl(), r.GetResponseNonce(), r.GetResponseNonce(), r.GetErrorDetail().GetMessage())
}

func node(id, network, ns, sa string) *corev3.Node {
	fields := map[string]*structpb.Value{"NETWORK": structpb.NewStringValue(network)}
	if ns != "" {
		fields["NAMESPACE"] = structpb.NewStringValue(ns)
		fields["SERVICE_ACCOUNT"] = structpb.NewStringValue(sa)
	}
	return &corev3.Node{Id: id, Metadata: &structpb.Struct{Fields: fields}}
}

// tlsPeer is the context of a TLS stream whose verified client certificate
// names spiffeID ("" for a TLS client without a certificate).
func tlsPeer(spiffeID string) context.Context {
	state := tls.ConnectionState{}
	if spiffeID != "" {
		u, _ := url.Parse(spiffeID)
		state.VerifiedChains = [][]*x509.Certificate{{{URIs: []*url.URL{u}}}}
	}
	return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{State: state}})
}

func sotw(n *corev3.Node, typeURL string) *discovery.DiscoveryRequest {
	return &discovery.DiscoveryRequest{Node: n, TypeUrl: typeURL}
}

func delta(n *corev3.Node, typeURL string) *discovery.DeltaDiscoveryRequest {
	return &discovery.DeltaDiscoveryRequest{Node: n, TypeUrl: typeURL}
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if status.Code(err) != want {
		t.Fatalf("error %v: code %s, want %s", err, status.Code(err), want)
	}
}

// A delta stream and a state-of-the-world stream share the ID 1 (two
// counters): the delta client, with another workload's certificate, must
// not inherit the verified identity of the other, and both must be
// tracked.
func TestStreamsOfBothKindsWithTheSameIDAreSeparate(t *testing.T) {
	f := newFixture(t, 0, Limits{})
	// The attacker's delta stream opens first, then a verified client's
	// state-of-the-world stream gets the same number and is served.
	if err := f.port.openDelta(tlsPeer("spiffe://cluster.local/ns/evil/sa/evil"), 1); err != nil {
		t.Fatal(err)
	}
	if err := f.port.open(tlsPeer("spiffe://cluster.local/ns/sample/sa/sleep"), 1); err != nil {
		t.Fatal(err)
	}
	if err := f.port.request(1, sotw(node("good", "", "sample", "sleep"), resource.ClusterType)); err != nil {
		t.Fatalf("verified stream refused: %v", err)
	}
	// Claiming the verified client's identity is refused.
	err := f.port.deltaRequest(1, delta(node("evil", "", "sample", "sleep"), resource.ClusterType))
	wantCode(t, err, codes.PermissionDenied)
	if got := len(f.tr.Streams()); got != 2 {
		t.Fatalf("%d streams tracked, want 2", got)
	}
	// Another port's server numbers its streams from 1 too.
	other := newADSPort(f.tr)
	if err := other.open(tlsPeer("spiffe://cluster.local/ns/evil/sa/evil"), 1); err != nil {
		t.Fatal(err)
	}
	err = other.request(1, sotw(node("evil", "", "sample", "sleep"), resource.ClusterType))
	wantCode(t, err, codes.PermissionDenied)
	other.close(1)
	f.port.closeDelta(1)
	f.port.close(1)
	if f.connected[""] != 0 {
		t.Fatalf("connected proxies = %d after every stream closed, want 0", f.connected[""])
	}
	if len(f.tr.Streams()) != 0 || len(f.vc.Views()) != 0 {
		t.Fatalf("left behind: %d streams, %d views", len(f.tr.Streams()), len(f.vc.Views()))
	}
}

// Every request of a stream is checked, not only the first: a later
// request may not switch to another node or identity.
func TestEveryRequestIsAuthorised(t *testing.T) {
	f := newFixture(t, 0, Limits{})
	ctx := tlsPeer("spiffe://cluster.local/ns/sample/sa/sleep")
	if err := f.port.open(ctx, 7); err != nil {
		t.Fatal(err)
	}
	n := node("sleep", "", "sample", "sleep")
	if err := f.port.request(7, sotw(n, resource.ClusterType)); err != nil {
		t.Fatal(err)
	}
	// The same node again (Envoy resends it) is fine, as is none.
	if err := f.port.request(7, sotw(node("sleep", "", "sample", "sleep"), resource.EndpointType)); err != nil {
		t.Fatal(err)
	}
	err := f.port.request(7, sotw(node("sleep", "", "istio-system", "admin"), resource.ClusterType))
	wantCode(t, err, codes.PermissionDenied)
	err = f.port.request(7, sotw(node("sleep", "other-network", "sample", "sleep"), resource.ClusterType))
	wantCode(t, err, codes.PermissionDenied)
}

func TestViewsAreFreedWithTheirLastStream(t *testing.T) {
	f := newFixture(t, 0, Limits{})
	for id := int64(1); id <= 3; id++ {
		if err := f.port.open(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		network := "n1"
		if id == 3 {
			network = "n2"
		}
		for _, typ := range []string{resource.ClusterType, resource.EndpointType} {
			if err := f.port.request(id, sotw(node("p", network, "", ""), typ)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := len(f.vc.Views()); got != 4 {
		t.Fatalf("%d views, want 4 (cds and eds of n1 and n2)", got)
	}
	f.port.close(3)
	f.port.close(1)
	if got := f.vc.Views(); len(got) != 2 || got[0].Key.Network != "n1" {
		t.Fatalf("views %v, want n1's two (stream 2 still has them)", got)
	}
	f.port.close(2)
	if got := f.vc.Views(); len(got) != 0 {
		t.Fatalf("views %v after every stream closed, want none", got)
	}
}

func TestViewsAndStreamsAreBounded(t *testing.T) {
	f := newFixture(t, 2, Limits{MaxStreams: 3, MaxTypesPerStream: 2})
	for id := int64(1); id <= 3; id++ {
		if err := f.port.open(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	wantCode(t, f.port.open(context.Background(), 4), codes.ResourceExhausted)
	for id, network := range map[int64]string{1: "a", 2: "b"} {
		if err := f.port.request(id, sotw(node("p", network, "", ""), resource.EndpointType)); err != nil {
			t.Fatal(err)
		}
	}
	err := f.port.request(3, sotw(node("p", "c", "", ""), resource.EndpointType))
	wantCode(t, err, codes.ResourceExhausted)
	// A refused network is refused with the classifier's status.
	f.port.close(2)
	if err := f.port.open(context.Background(), 4); err != nil {
		t.Fatal(err)
	}
	err = f.port.request(4, sotw(node("p", "refused", "", ""), resource.EndpointType))
	wantCode(t, err, codes.FailedPrecondition)
	// Types per stream: two, served or not.
	if err := f.port.request(1, sotw(nil, "type.googleapis.com/istio.networking.nds.v1.NameTable")); err != nil {
		t.Fatal(err)
	}
	err = f.port.request(1, sotw(nil, "type.googleapis.com/other"))
	wantCode(t, err, codes.ResourceExhausted)
}

// A type Horizon does not serve leaves the stream up and unanswered, and is
// logged once however many streams ask.
func TestUnsupportedTypeKeepsTheStream(t *testing.T) {
	f := newFixture(t, 0, Limits{})
	const nds = "type.googleapis.com/istio.networking.nds.v1.NameTable"
	for id := int64(1); id <= 5; id++ {
		if err := f.port.open(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		req := sotw(node("istio-agent", "", "", ""), nds)
		if err := f.port.request(id, req); err != nil {
			t.Fatalf("stream %d: %v", id, err)
		}
		if e, err := f.vc.bound(req.GetNode(), nds, nil); err != nil || e != nil {
			t.Fatalf("the stream is bound to %v for %s (%v); want no view", e, nds, err)
		}
		// The same stream still gets what is served.
		if err := f.port.request(id, sotw(nil, resource.ClusterType)); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.logs.Count("does not serve"); n != 1 {
		t.Fatalf("%d log lines for the unsupported type, want 1:\n%s", n, f.logs.String())
	}
	if st := f.tr.Streams()[0].Types[nds]; st == nil || !st.Unsupported {
		t.Fatalf("syncz does not show the unsupported type: %+v", f.tr.Streams()[0].Types)
	}
}

// A NACK flood is one log line per distinct error, and at most one per
// client per interval however many errors it invents; every NACK is
// counted.
func TestNACKsAreLoggedOncePerError(t *testing.T) {
	f := newFixture(t, 0, Limits{})
	nacks := 0
	f.tr.hooks.NACK = func(Proxy, string, string) { nacks++ }
	if err := f.port.open(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	n := node("p", "", "", "")
	if err := f.port.request(1, sotw(n, resource.ClusterType)); err != nil {
		t.Fatal(err)
	}
	nack := func(msg string) {
		r := sotw(nil, resource.ClusterType)
		r.ResponseNonce, r.ErrorDetail = "1", &statuspb.Status{Message: msg}
		if err := f.port.request(1, r); err != nil {
			t.Fatal(err)
		}
	}
	for range 1000 {
		nack("bad cluster")
	}
	for i := range 20000 {
		nack("another problem " + strconv.Itoa(i) + strings.Repeat("x", 1024))
	}
	if got := f.logs.Count("proxy rejected config"); got != 1 {
		t.Fatalf("%d NACK log lines, want 1 (one per client per interval)", got)
	}
	if nacks != 21000 {
		t.Fatalf("%d NACKs counted, want 21000", nacks)
	}
	// Another client's first NACK is still logged.
	if err := f.port.open(peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 9), Port: 1}}), 2); err != nil {
		t.Fatal(err)
	}
	if err := f.port.request(2, sotw(node("q", "", "", ""), resource.ClusterType)); err != nil {
		t.Fatal(err)
	}
	r := sotw(nil, resource.ClusterType)
	r.ResponseNonce, r.ErrorDetail = "1", &statuspb.Status{Message: "bad cluster"}
	if err := f.port.request(2, r); err != nil {
		t.Fatal(err)
	}
	if got := f.logs.Count("proxy rejected config"); got != 2 {
		t.Fatalf("%d NACK log lines, want 2 (the other client's too)", got)
	}
	if st := f.tr.Streams()[0].Types[resource.ClusterType]; st.NACKs != 21000 {
		t.Fatalf("syncz NACKs = %d", st.NACKs)
	}
}
