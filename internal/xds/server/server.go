package server

import (
	"context"
	"errors"
	"net"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// streamWindow is the HTTP/2 window of each stream: what a client may
// send on it that the server has not read yet (a paced stream, see
// receive, holds at most this). grpc-go returns a connection's window as
// soon as it receives data, so only the stream's bounds what is held;
// connWindow only lets several streams of a connection send at once.
// 64 KiB is HTTP/2's default; a 1 MiB request still arrives, in steps,
// as fast as the server reads it.
const (
	streamWindow = 64 << 10
	connWindow   = 1 << 20
)

// handshakeTimeout bounds a new connection's TLS and HTTP/2 handshake (a
// variable only so that a test need not wait 10 s).
var handshakeTimeout = 10 * time.Second

// NewGRPC returns a gRPC server serving ADS (state of the world and delta)
// from c, reporting to t, and CSDS, the client status t keeps.
func NewGRPC(ctx context.Context, c *ViewCache, t *Tracker, opts ...grpc.ServerOption) *grpc.Server {
	opts = append([]grpc.ServerOption{
		// What one client can make the server buffer: a request is read
		// whole before it is decoded, so its size is bounded from the
		// length prefix; and fixed HTTP/2 receive windows (which also
		// turn off grpc-go's growth of them up to 16 MiB per stream)
		// bound what a client may send ahead of what the server reads.
		grpc.MaxRecvMsgSize(t.limits.MaxRequestBytes),
		grpc.InitialWindowSize(streamWindow),
		grpc.InitialConnWindowSize(connWindow),
		// A connection must finish its TLS and HTTP/2 handshake in this
		// time, or it is closed: otherwise a client that never sends the
		// preface holds a connection (and a goroutine) forever.
		grpc.ConnectionTimeout(handshakeTimeout),
		grpc.MaxConcurrentStreams(100000),
		// Leaves state-of-the-world resource names encoded until they
		// change (codec.go); every other message is decoded as usual.
		grpc.ForceServerCodecV2(newCodec()),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 15 * time.Second, PermitWithoutStream: true}),
	}, opts...)
	g := grpc.NewServer(opts...)
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, &ads{ctx: ctx, views: c, tracker: t, server: t.servers.Add(1)})
	statusv3.RegisterClientStatusDiscoveryServiceServer(g, &csds{ctx: ctx, t: t})
	return g
}

// Serve serves g on lis until ctx ends, then stops gracefully: the listener
// closes, connections get a GOAWAY (no new streams), and Serve returns nil
// once every RPC has finished. ADS streams finish only when their handler
// returns, i.e. when the context given to NewGRPC ends; g.Stop bounds the
// wait by closing every connection, and Serve then returns at once.
func Serve(ctx context.Context, g *grpc.Server, lis net.Listener) error {
	go func() {
		<-ctx.Done()
		g.GracefulStop()
	}()
	err := g.Serve(lis)
	if errors.Is(err, grpc.ErrServerStopped) {
		err = nil // stopped before it started: g.Serve closed lis
	}
	return err
}
