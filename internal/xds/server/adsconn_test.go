package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
)

// This file is a test harness: the real ADS server (NewGRPC over a
// ViewCache and a Tracker) served on an in-memory listener, and raw ADS
// clients, state of the world and delta, that send exactly the requests a
// test writes and hand back every response in the order the server sent it.
//
// Proving that nothing was sent (mustBlock), without sleeping: a stream
// handles its requests one at a time, in order, and sends its responses in
// order. So after the request that must not be answered, mustBlock sends a
// request for a probe type (a type of its own, new to the stream, whose
// first request is always answered, see probeType) on the same stream; if
// the first response that arrives is the probe's, the server handled the
// earlier request and sent nothing for it. This holds for what requests
// cause; what an Update causes arrives through another path (the stream is
// woken), so the tests prove an Update sent nothing by the next response of
// the type being a later change.

// testTimeout bounds every wait for an observable event: a missing response
// fails the test instead of hanging it.
const testTimeout = 10 * time.Second

// probeTypePrefix names the probe types vcWorld serves: any type URL with
// this prefix has a view per network holding one resource, "probe", so that
// a stream's first request of it is answered (state of the world and delta
// alike).
const probeTypePrefix = "type.googleapis.com/horizon.test.Probe"

func probeType(n int) string { return probeTypePrefix + strconv.Itoa(n) }

// adsEnv is a running ADS server over a vcWorld and a client connection
// to it.
type adsEnv struct {
	w      *vcWorld
	tr     *Tracker
	client discovery.AggregatedDiscoveryServiceClient
	conn   *grpc.ClientConn // client's, for the server's other services
	// stop ends the context given to NewGRPC; served reports Serve's end.
	stop       context.CancelFunc
	served     chan error
	serveEnded bool
	serveErr   error
}

func newADS(t *testing.T, w *vcWorld) *adsEnv {
	t.Helper()
	return newADSWith(t, w, Limits{MaxTypesPerStream: 64})
}

// newADSWith is newADS with the tracker's limits.
func newADSWith(t *testing.T, w *vcWorld, limits Limits) *adsEnv {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	tr := NewTracker(Hooks{}, w.vc, limits, slog.New(slog.DiscardHandler))
	g := NewGRPC(ctx, w.vc, tr)
	lis := bufconn.Listen(1 << 20)
	env := &adsEnv{w: w, tr: tr, stop: stop, served: make(chan error, 1)}
	go func() { env.served <- Serve(ctx, g, lis) }()
	cc, err := grpc.NewClient("passthrough:///ads",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Fixed, small flow-control windows (no BDP growth): a client
		// that does not read makes the server wait in SendMsg, which is
		// how TestViewCacheLaggingStreamConverges makes a stream lag.
		grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	if err != nil {
		t.Fatal(err)
	}
	env.client, env.conn = discovery.NewAggregatedDiscoveryServiceClient(cc), cc
	t.Cleanup(func() {
		stop()
		cc.Close()
		if err := env.serveResult(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return env
}

// serveResult waits for Serve to return (once stop was called) and
// returns its error.
func (e *adsEnv) serveResult() error {
	if !e.serveEnded {
		select {
		case e.serveErr = <-e.served:
		case <-time.After(testTimeout):
			e.serveErr = errors.New("the server did not stop in " + testTimeout.String())
		}
		e.serveEnded = true
	}
	return e.serveErr
}

// next waits for the next value of in, or the stream's end, or the
// timeout.
func next[T any](in <-chan T, errc <-chan error) (T, error) {
	var zero T
	select {
	case r := <-in:
		return r, nil
	case err := <-errc:
		return zero, err
	case <-time.After(testTimeout):
		return zero, errors.New("no response in " + testTimeout.String())
	}
}

// sotwStream is a raw state-of-the-world ADS client. It sends its node on
// its first request only, as Envoy does, and remembers per type the last
// response and the resource names it subscribes to.
type sotwStream struct {
	st     grpc.BidiStreamingClient[discovery.DiscoveryRequest, discovery.DiscoveryResponse]
	cancel context.CancelFunc
	node   *corev3.Node
	began  bool
	in     <-chan *discovery.DiscoveryResponse
	errc   <-chan error
	last   map[string]*discovery.DiscoveryResponse
	names  map[string][]string
	probes int
}

// sotw opens a state-of-the-world stream for proxy id on network.
func (e *adsEnv) sotw(t *testing.T, id, network string, opts ...grpc.CallOption) *sotwStream {
	t.Helper()
	s, err := e.openSotw(id, network, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	return s
}

// openSotw opens a stream without a test (for goroutines); close it.
func (e *adsEnv) openSotw(id, network string, opts ...grpc.CallOption) (*sotwStream, error) {
	ctx, cancel := context.WithCancel(context.Background())
	st, err := e.client.StreamAggregatedResources(ctx, opts...)
	if err != nil {
		cancel()
		return nil, err
	}
	s := &sotwStream{st: st, cancel: cancel, node: node(id, network, "", ""),
		last: map[string]*discovery.DiscoveryResponse{}, names: map[string][]string{}}
	s.in, s.errc = receive(ctx, nil, st.Recv) // unbuffered: an untaken response holds the reader, so the server waits on flow control as for a slow proxy
	return s, nil
}

func (s *sotwStream) close() { s.cancel() }

// send sends req as it is, adding the node to the stream's first request.
func (s *sotwStream) send(t *testing.T, req *discovery.DiscoveryRequest) {
	t.Helper()
	if err := s.trySend(req); err != nil {
		t.Fatalf("Send: %v", err)
	}
}

func (s *sotwStream) trySend(req *discovery.DiscoveryRequest) error {
	if !s.began {
		req.Node, s.began = s.node, true
	}
	return s.st.Send(req)
}

// sub subscribes to names of typeURL (none: the legacy wildcard of a first
// request), acknowledging the last response of the type if any.
func (s *sotwStream) sub(t *testing.T, typeURL string, names ...string) {
	t.Helper()
	s.names[typeURL] = names
	s.ack(t, typeURL)
}

// ack acknowledges the last response of typeURL (the first request of a
// type if there was none), with the names the stream subscribes to.
func (s *sotwStream) ack(t *testing.T, typeURL string) {
	t.Helper()
	s.send(t, s.ackOf(typeURL))
}

func (s *sotwStream) ackOf(typeURL string) *discovery.DiscoveryRequest {
	req := &discovery.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: s.names[typeURL]}
	if r := s.last[typeURL]; r != nil {
		req.VersionInfo, req.ResponseNonce = r.GetVersionInfo(), r.GetNonce()
	}
	return req
}

// next returns the next response, recording it as the last of its type.
func (s *sotwStream) next() (*discovery.DiscoveryResponse, error) {
	r, err := next(s.in, s.errc)
	if err != nil {
		return nil, err
	}
	s.last[r.GetTypeUrl()] = r
	return r, nil
}

// recv returns the next response, which must be of typeURL.
func (s *sotwStream) recv(t *testing.T, typeURL string) *discovery.DiscoveryResponse {
	t.Helper()
	r, err := s.next()
	if err != nil {
		t.Fatalf("waiting for a %s response: %v", TypeName(typeURL), err)
	}
	if r.GetTypeUrl() != typeURL {
		t.Fatalf("got a %s response (version %q, %d resources), want %s", TypeName(r.GetTypeUrl()), r.GetVersionInfo(), len(r.GetResources()), TypeName(typeURL))
	}
	return r
}

// mustBlock proves that nothing is to be sent for the requests sent so far
// (see the top of this file): the probe's response comes first.
func (s *sotwStream) mustBlock(t *testing.T) {
	t.Helper()
	s.probes++
	probe := probeType(s.probes)
	s.send(t, &discovery.DiscoveryRequest{TypeUrl: probe})
	r, err := s.next()
	if err != nil {
		t.Fatalf("waiting for the probe's response: %v", err)
	}
	if r.GetTypeUrl() != probe {
		t.Fatalf("must block: got a %s response (version %q, %d resources) before the probe's", TypeName(r.GetTypeUrl()), r.GetVersionInfo(), len(r.GetResources()))
	}
}

// end waits for the stream to end and returns how it ended (io.EOF: with
// no error), failing on a response.
func (s *sotwStream) end(t *testing.T) error {
	t.Helper()
	r, err := next(s.in, s.errc)
	if err == nil {
		t.Fatalf("got a %s response, want the stream to end", TypeName(r.GetTypeUrl()))
	}
	return err
}

// deltaStream is a raw delta ADS client.
type deltaStream struct {
	st     grpc.BidiStreamingClient[discovery.DeltaDiscoveryRequest, discovery.DeltaDiscoveryResponse]
	cancel context.CancelFunc
	node   *corev3.Node
	began  bool
	in     <-chan *discovery.DeltaDiscoveryResponse
	errc   <-chan error
	last   map[string]*discovery.DeltaDiscoveryResponse
	probes int
}

func (e *adsEnv) delta(t *testing.T, id, network string) *deltaStream {
	t.Helper()
	d, err := e.openDelta(id, network)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.close)
	return d
}

func (e *adsEnv) openDelta(id, network string) (*deltaStream, error) {
	ctx, cancel := context.WithCancel(context.Background())
	st, err := e.client.DeltaAggregatedResources(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	d := &deltaStream{st: st, cancel: cancel, node: node(id, network, "", ""), last: map[string]*discovery.DeltaDiscoveryResponse{}}
	d.in, d.errc = receive(ctx, nil, st.Recv) // unbuffered: an untaken response holds the reader, so the server waits on flow control as for a slow proxy
	return d, nil
}

func (d *deltaStream) close() { d.cancel() }

func (d *deltaStream) send(t *testing.T, req *discovery.DeltaDiscoveryRequest) {
	t.Helper()
	if err := d.trySend(req); err != nil {
		t.Fatalf("Send: %v", err)
	}
}

func (d *deltaStream) trySend(req *discovery.DeltaDiscoveryRequest) error {
	if !d.began {
		req.Node, d.began = d.node, true
	}
	return d.st.Send(req)
}

// sub changes the stream's subscription to typeURL (the first request of
// the type if nothing of it was received yet), acknowledging the last
// response of the type.
func (d *deltaStream) sub(t *testing.T, typeURL string, subscribe, unsubscribe []string) {
	t.Helper()
	d.send(t, d.subOf(typeURL, subscribe, unsubscribe))
}

func (d *deltaStream) subOf(typeURL string, subscribe, unsubscribe []string) *discovery.DeltaDiscoveryRequest {
	req := &discovery.DeltaDiscoveryRequest{TypeUrl: typeURL, ResourceNamesSubscribe: subscribe, ResourceNamesUnsubscribe: unsubscribe}
	if r := d.last[typeURL]; r != nil {
		req.ResponseNonce = r.GetNonce()
	}
	return req
}

// ack acknowledges the last response of typeURL.
func (d *deltaStream) ack(t *testing.T, typeURL string) { d.sub(t, typeURL, nil, nil) }

func (d *deltaStream) next() (*discovery.DeltaDiscoveryResponse, error) {
	r, err := next(d.in, d.errc)
	if err != nil {
		return nil, err
	}
	d.last[r.GetTypeUrl()] = r
	return r, nil
}

func (d *deltaStream) recv(t *testing.T, typeURL string) *deltaResult {
	t.Helper()
	r, err := d.next()
	if err != nil {
		t.Fatalf("waiting for a delta %s response: %v", TypeName(typeURL), err)
	}
	if r.GetTypeUrl() != typeURL {
		t.Fatalf("got a delta %s response (%d resources, %d removed), want %s", TypeName(r.GetTypeUrl()), len(r.GetResources()), len(r.GetRemovedResources()), TypeName(typeURL))
	}
	return newDeltaResult(t, r)
}

// mustBlock is sotwStream.mustBlock for a delta stream.
func (d *deltaStream) mustBlock(t *testing.T) {
	t.Helper()
	d.probes++
	probe := probeType(d.probes)
	d.send(t, &discovery.DeltaDiscoveryRequest{TypeUrl: probe})
	r, err := d.next()
	if err != nil {
		t.Fatalf("waiting for the probe's response: %v", err)
	}
	if r.GetTypeUrl() != probe {
		t.Fatalf("must block: got a delta %s response (%d resources, %d removed) before the probe's", TypeName(r.GetTypeUrl()), len(r.GetResources()), len(r.GetRemovedResources()))
	}
}

// deltaResult is a delta response with its resources decoded by name.
type deltaResult struct {
	resp     *discovery.DeltaDiscoveryResponse
	names    []string // sorted
	removed  []string // sorted
	versions map[string]string
	content  map[string]proto.Message
}

func newDeltaResult(t *testing.T, r *discovery.DeltaDiscoveryResponse) *deltaResult {
	t.Helper()
	out, err := decodeDelta(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func decodeDelta(r *discovery.DeltaDiscoveryResponse) (*deltaResult, error) {
	out := &deltaResult{resp: r, removed: slices.Sorted(slices.Values(r.GetRemovedResources())),
		versions: map[string]string{}, content: map[string]proto.Message{}}
	for _, res := range r.GetResources() {
		m, err := res.GetResource().UnmarshalNew()
		if err != nil {
			return nil, err
		}
		if got := cache.GetResourceName(m); got != res.GetName() {
			return nil, errors.New("delta resource " + res.GetName() + " holds " + got)
		}
		if res.GetVersion() == "" {
			return nil, errors.New("delta resource " + res.GetName() + " has no version")
		}
		out.names = append(out.names, res.GetName())
		out.versions[res.GetName()] = res.GetVersion()
		out.content[res.GetName()] = m
	}
	slices.Sort(out.names)
	return out, nil
}

// sotwContent decodes a response's resources, by name.
func sotwContent(t *testing.T, r *discovery.DiscoveryResponse) map[string]proto.Message {
	t.Helper()
	out, err := decodeSotw(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func decodeSotw(r *discovery.DiscoveryResponse) (map[string]proto.Message, error) {
	out := map[string]proto.Message{}
	for _, a := range r.GetResources() {
		m, err := a.UnmarshalNew()
		if err != nil {
			return nil, err
		}
		out[cache.GetResourceName(m)] = m
	}
	return out, nil
}
