package server

import (
	"context"
	"errors"
	"io"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// ads serves the Aggregated Discovery Service, state of the world and
// delta, from a ViewCache.
//
// Why not go-control-plane's server and LinearCache: they keep one watch
// per stream and type that is re-created on every ACK and re-checked
// against every name it covers on every change, so an endpoint change cost
// O(streams × names each stream watches), and every stream marshalled its
// own copy of each response. Here a stream stays subscribed to its view;
// a change wakes the view's streams, each learns from the view's change
// log what it lacks in O(changed), and a response that fits many streams
// (the change itself, or the whole view) is encoded once per version and
// the same bytes, nonce included, go to each of them.
type ads struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer
	ctx     context.Context
	views   *ViewCache
	tracker *Tracker
	server  uint32 // this gRPC server's number in the Tracker's stream keys
	ids     atomic.Int64
}

// conn is one ADS stream.
type conn struct {
	a    *ads
	k    streamKey
	st   grpc.ServerStream
	node *corev3.Node // the stream's own node, as the Tracker keeps it
	// q holds what the cache told the stream (views changed, moved) until
	// the stream's goroutine pushes it.
	q     *pushQueue
	types map[string]*typeStream // nil: a type Horizon does not serve
	order []*typeStream          // clusters before endpoints before listeners before routes
	// shareable: the stream's responses are not compressed, so responses
	// encoded for other streams fit it byte for byte.
	shareable bool
	nonces    uint64
	// names bounds the resource names the stream subscribes to over all
	// its types.
	names nameBudget
}

// applyMoves moves the stream's subscriptions as Reclassify asked: out of
// the old view, into the new one, to be sent the new view whole.
func (c *conn) applyMoves() {
	for typeURL, e := range c.q.takeMoves() {
		ts := c.types[typeURL]
		if ts == nil || ts.e == e {
			continue
		}
		ts.e.mu.Lock()
		delete(ts.e.subs, ts)
		ts.e.mu.Unlock()
		e.mu.Lock()
		e.subs[ts] = c.q
		ts.e = e
		ts.started = false
		ts.sub.moved()
		e.mu.Unlock()
		c.a.tracker.moved(c.k, typeURL, e.view.Key.String())
	}
}

// StreamAggregatedResources serves one state-of-the-world ADS stream.
func (a *ads) StreamAggregatedResources(st grpc.BidiStreamingServer[discovery.DiscoveryRequest, discovery.DiscoveryResponse]) error {
	// Received with the codec that leaves resource names encoded (codec.go).
	var mu sync.Mutex
	last := map[string]string{} // type URL -> the names of the stream's last request, as its typeStream keeps them
	lastOf := func(typeURL string) string {
		mu.Lock()
		defer mu.Unlock()
		return last[typeURL]
	}
	recv := func() (*sotwRequest, error) {
		r := &sotwRequest{last: lastOf}
		return r, st.RecvMsg(r)
	}
	handle := func(c *conn, r *sotwRequest) error {
		err := c.sotwRequest(r)
		if ts := c.types[r.req.GetTypeUrl()]; ts != nil {
			mu.Lock()
			last[ts.typeURL] = ts.rawNames
			mu.Unlock()
		}
		return err
	}
	return serve(a, st, false, recv, handle)
}

// DeltaAggregatedResources serves one delta ADS stream.
func (a *ads) DeltaAggregatedResources(st grpc.BidiStreamingServer[discovery.DeltaDiscoveryRequest, discovery.DeltaDiscoveryResponse]) error {
	return serve(a, st, true, st.Recv, (*conn).deltaRequest)
}

// serve runs one stream: its requests and its views' changes, one at a
// time, until either side ends it.
func serve[Req any](a *ads, st grpc.ServerStream, delta bool, recv func() (*Req, error), handle func(*conn, *Req) error) error {
	c, err := a.open(st, delta)
	if err != nil {
		return err
	}
	defer c.close()
	l := a.tracker.limits
	reqs, errc := receive(st.Context(), rate.NewLimiter(rate.Limit(l.RequestsPerSecond), l.RequestBurst), recv)
	// A stream that asks for nothing holds a slot for nothing: it must
	// send its first request soon after opening.
	wait := a.tracker.limits.FirstRequestTimeout
	firstTimer := time.NewTimer(wait)
	defer firstTimer.Stop()
	first := firstTimer.C
	for {
		select {
		case <-first:
			return status.Errorf(codes.DeadlineExceeded, "no request within %s of opening the stream", wait)
		case <-a.ctx.Done():
			return nil
		case <-st.Context().Done():
			// The client went while its last request was being handed
			// over: receive has stopped without an error to report.
			return st.Context().Err()
		case err := <-errc:
			return endOfStream(err)
		case req := <-reqs:
			first = nil
			if err := handle(c, req); err != nil {
				return err
			}
		case <-c.q.ready:
			if err := c.pushAll(); err != nil {
				return err
			}
		}
	}
}

// receive reads a stream's requests into a channel until it fails or ctx
// (the stream's) ends, so that the stream's goroutine can wait for
// requests and view changes alike. It reads no faster than pace allows
// (nil: unpaced): a client flooding requests (a NACK loop) waits on HTTP/2
// flow control instead of costing the server a decode each.
func receive[T any](ctx context.Context, pace *rate.Limiter, recv func() (*T, error)) (<-chan *T, <-chan error) {
	reqs, errc := make(chan *T), make(chan error, 1)
	go func() {
		for {
			if pace != nil {
				if err := pace.Wait(ctx); err != nil {
					return // the stream ended
				}
			}
			r, err := recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case reqs <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	return reqs, errc
}

// asStatus is err as a gRPC status: its own if it has one, else code.
func asStatus(err error, code codes.Code) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(code, err.Error())
}

func endOfStream(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

func (a *ads) open(st grpc.ServerStream, delta bool) (*conn, error) {
	k := streamKey{server: a.server, delta: delta, id: a.ids.Add(1)}
	if err := a.tracker.open(st.Context(), k); err != nil {
		return nil, err
	}
	l := a.tracker.limits
	return &conn{a: a, k: k, st: st, q: newPushQueue(), types: map[string]*typeStream{},
		shareable: uncompressed(st.Context()), names: nameBudget{maxNames: l.MaxNamesPerStream, maxBytes: l.MaxNameBytesPerStream}}, nil
}

// uncompressed reports whether the server will send this stream's
// responses uncompressed. grpc-go compresses them with the compressor the
// client's requests use (unless the server sets one): grpc-encoding is a
// reserved header, kept out of the incoming metadata, so ask the transport
// stream what it sends with. Unknown: not shared.
func uncompressed(ctx context.Context) bool {
	s, ok := grpc.ServerTransportStreamFromContext(ctx).(interface{ SendCompress() string })
	if !ok {
		return false
	}
	enc := s.SendCompress()
	return enc == "" || enc == encoding.Identity
}

func (c *conn) close() {
	for _, ts := range c.order {
		ts.e.mu.Lock()
		delete(ts.e.subs, ts)
		ts.e.mu.Unlock()
	}
	c.a.tracker.closed(c.k)
}

// subscribe subscribes the stream to its view of typeURL (the Tracker has
// bound it); nil for a type Horizon does not serve.
func (c *conn) subscribe(typeURL string) (*typeStream, error) {
	e, err := c.a.views.bound(c.node, typeURL, c.q)
	if err != nil {
		return nil, err
	}
	if e == nil {
		c.types[typeURL] = nil // never answered
		return nil, nil
	}
	ts := &typeStream{e: e, typeURL: typeURL}
	e.mu.Lock()
	e.subs[ts] = c.q
	e.mu.Unlock()
	c.types[typeURL] = ts
	c.order = append(c.order, ts)
	slices.SortStableFunc(c.order, func(a, b *typeStream) int { return typeRank(a.typeURL) - typeRank(b.typeURL) })
	return ts, nil
}

// typeRank orders pushes as Envoy wants them: a cluster before its
// endpoints, a listener before its routes.
func typeRank(typeURL string) int {
	switch typeURL {
	case resource.ClusterType:
		return 0
	case resource.EndpointType:
		return 1
	case resource.ListenerType:
		return 2
	case resource.RouteType:
		return 3
	}
	return 4
}

func (c *conn) sotwRequest(r *sotwRequest) error {
	req := &r.req
	typeURL := req.GetTypeUrl()
	if typeURL == "" {
		return status.Error(codes.InvalidArgument, "type URL is required for ADS")
	}
	node := req.GetNode()
	if err := c.a.tracker.request(c.k, &node, typeURL, req.GetVersionInfo(), req.GetResponseNonce(), req.GetErrorDetail().GetMessage()); err != nil {
		return err
	}
	c.node = node
	ts, known := c.types[typeURL]
	switch {
	case !known:
		var err error
		if ts, err = c.subscribe(typeURL); err != nil || ts == nil {
			return err
		}
		ts.e.mu.Lock()
		err = ts.setSotwNames(r, &c.names)
		if v := req.GetVersionInfo(); v != "" && v == ts.e.versionInfo() && ts.sub.wildcard {
			// A proxy back on a new stream with the whole view at its
			// current version. Only a wildcard subscription says what it
			// holds: a version names the view, not which of its resources
			// an earlier stream asked for, so a proxy naming resources is
			// sent every one it names.
			ts.started, ts.at = true, ts.e.version
		}
		ts.e.mu.Unlock()
		if err != nil {
			return asStatus(err, codes.InvalidArgument)
		}
	case ts == nil:
		return nil // a type Horizon does not serve
	case ts.nonce != "" && req.GetResponseNonce() != ts.nonce:
		// An answer to an older response: the proxy will answer the
		// latest too. (A NACK is not answered either: the proxy keeps
		// what it had, and the next change reaches it as usual.)
		return nil
	default:
		ts.e.mu.Lock()
		err := ts.setSotwNames(r, &c.names)
		ts.e.mu.Unlock()
		if err != nil {
			return asStatus(err, codes.InvalidArgument)
		}
		if !ts.sub.grew() {
			return nil // an ACK or NACK
		}
	}
	return c.push(ts)
}

func (c *conn) deltaRequest(req *discovery.DeltaDiscoveryRequest) error {
	typeURL := req.GetTypeUrl()
	if typeURL == "" {
		return status.Error(codes.InvalidArgument, "type URL is required for ADS")
	}
	node := req.GetNode()
	// Delta has no version_info: the acknowledged nonce stands for it.
	if err := c.a.tracker.request(c.k, &node, typeURL, req.GetResponseNonce(), req.GetResponseNonce(), req.GetErrorDetail().GetMessage()); err != nil {
		return err
	}
	c.node = node
	ts, known := c.types[typeURL]
	if !known {
		var err error
		if ts, err = c.subscribe(typeURL); err != nil || ts == nil {
			return err
		}
	} else if ts == nil {
		return nil
	}
	ts.e.mu.Lock()
	err := ts.setDeltaNames(&c.names, req.GetResourceNamesSubscribe(), req.GetResourceNamesUnsubscribe(), req.GetInitialResourceVersions())
	ts.e.mu.Unlock()
	if err != nil {
		return err
	}
	if ts.started && !ts.sub.grew() {
		return nil
	}
	return c.push(ts)
}

// pushAll brings every subscription of the stream to its view's version.
func (c *conn) pushAll() error {
	c.applyMoves()
	for _, ts := range c.order {
		if err := c.push(ts); err != nil {
			return err
		}
	}
	return nil
}

// push sends ts what it lacks of its view, if anything.
func (c *conn) push(ts *typeStream) error {
	e := ts.e
	e.mu.Lock()
	var out outgoing
	var send bool
	if c.k.delta {
		out, send = ts.planDelta()
	} else {
		out, send = ts.planSotw()
	}
	if !send {
		e.mu.Unlock()
		return nil
	}
	var msg any
	var nonce string
	if out.shared && c.shareable && (c.k.delta || ts.nonce != sharedNonce(e.version, out.kind)) {
		sm := e.sharedMsg(out.kind, c.st)
		if sm.err != nil {
			e.mu.Unlock()
			return status.Errorf(codes.Internal, "encoding a response: %v", sm.err)
		}
		msg, nonce = sm.msg, sm.nonce
	} else {
		c.nonces++
		// The stream id makes a stream's own nonces differ from every other's.
		nonce = strconv.FormatUint(e.version, 10) + "." + strconv.FormatInt(c.k.id, 10) + "." + strconv.FormatUint(c.nonces, 10)
		msg = e.response(out, nonce, c.k.delta)
	}
	e.mu.Unlock()
	if err := c.st.SendMsg(msg); err != nil {
		return err
	}
	if c.k.delta {
		c.a.tracker.sent(c.k, ts.typeURL, nonce)
	} else {
		ts.nonce = nonce
		c.a.tracker.sent(c.k, ts.typeURL, out.version)
	}
	return nil
}

func sharedNonce(version uint64, kind sharedKind) string {
	return strconv.FormatUint(version, 10) + [...]string{sotwAll: "a", sotwStep: "s", deltaStep: "d", deltaAll: "D"}[kind]
}

// sharedMsg returns the response of kind for the current version, encoding
// it (with st's codec: every uncompressed stream's is the same) the first
// time a stream needs it. Called with e.mu held.
func (e *viewEntry) sharedMsg(kind sharedKind, st grpc.ServerStream) *sharedMsg {
	if sm := e.shared[kind]; sm != nil {
		return sm
	}
	nonce := sharedNonce(e.version, kind)
	sm := &sharedMsg{msg: &grpc.PreparedMsg{}, nonce: nonce}
	sm.err = sm.msg.Encode(st, e.response(outgoing{shared: true, kind: kind, version: e.versionInfo()}, nonce, kind == deltaStep || kind == deltaAll))
	if e.shared == nil {
		e.shared = map[sharedKind]*sharedMsg{}
	}
	e.shared[kind] = sm
	return sm
}

// response builds the message for out. Called with e.mu held.
func (e *viewEntry) response(out outgoing, nonce string, delta bool) proto.Message {
	names, removed := out.resources, out.removed
	if out.shared {
		switch out.kind {
		case sotwAll, deltaAll:
			names = e.names
		case sotwStep, deltaStep:
			names, removed = e.last().changed, e.last().removed
		}
	}
	if delta {
		return &discovery.DeltaDiscoveryResponse{SystemVersionInfo: out.version, TypeUrl: e.view.TypeURL, Nonce: nonce,
			Resources: e.deltaResources(names), RemovedResources: removed}
	}
	return &discovery.DiscoveryResponse{VersionInfo: out.version, TypeUrl: e.view.TypeURL, Nonce: nonce, Resources: e.anys(names)}
}
