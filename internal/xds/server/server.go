package server

import (
	"context"
	"errors"
	"net"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// handshakeTimeout bounds a new connection's TLS and HTTP/2 handshake (a
// variable only so that a test need not wait 10 s).
var handshakeTimeout = 10 * time.Second

// NewGRPC returns a gRPC server serving ADS (state of the world and delta)
// from c, reporting to t.
func NewGRPC(ctx context.Context, c *ViewCache, t *Tracker, opts ...grpc.ServerOption) *grpc.Server {
	opts = append([]grpc.ServerOption{
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
