package server

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
)

// ads serves the Aggregated Discovery Service, state of the world and
// delta, from a ViewCache: each stream is a conn (conn.go), run by serve.
//
// Why not go-control-plane's server and LinearCache: they keep one watch
// per stream and type that is re-created on every ACK and re-checked
// against every name it covers on every change, so an endpoint change cost
// O(streams × names each stream watches), and every stream marshalled its
// own copy of each response. Here a stream stays subscribed to its view;
// a change is queued to the view's streams (pushqueue.go), each learns
// from the view's change log what it lacks in O(changed), and a response
// that fits many streams (the change itself, or the whole view) is
// encoded once per version (response.go) and the same bytes, nonce
// included, go to each of them.
type ads struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer
	ctx     context.Context
	views   *ViewCache
	tracker *Tracker
	server  uint32 // this gRPC server's number in the Tracker's stream keys
	ids     atomic.Int64
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
