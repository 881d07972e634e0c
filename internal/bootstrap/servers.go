package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"

	"google.golang.org/grpc"
	"k8s.io/client-go/kubernetes"

	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/ops"
	"github.com/horizonmesh/horizon/internal/xds/server"
)

// Discovery's four servers, each on a listener bound before anything
// serves. Each is a grpcServer or an httpServer, which start the same way
// (start) and are stopped by the set's shutdown (shutdown.go).

// opsHTTP serves /ready, /metrics and /debug/* (--http-addr).
func (a *app) opsHTTP(l net.Listener) httpServer {
	return httpServer{lis: l,
		build: func(*servers) (*http.Server, error) {
			return ops.NewServer(ops.Handler(a.cp, a.reg), a.c.HTTPIdleTimeout), nil
		},
		started: func() { a.log.Info("serving ops HTTP", "addr", l.Addr().String()) }}
}

// plaintextXDS serves ADS without TLS (--xds-addr).
func (a *app) plaintextXDS(l net.Listener) grpcServer {
	return grpcServer{lis: l,
		build: func(s *servers) (*grpc.Server, error) {
			return server.NewGRPC(s.streams, a.cp.Views, a.cp.Tracker, grpc.ChainStreamInterceptor(shutdownStatus(s.streams))), nil
		},
		started: func() { a.log.Info("serving xDS", "addr", l.Addr().String()) }}
}

// secureXDS serves ADS and the CSR service over TLS (--secure-addr) once
// the CA has loaded.
func (a *app) secureXDS(l net.Listener) grpcServer {
	return grpcServer{lis: l,
		build: func(s *servers) (*grpc.Server, error) {
			authority, err := s.awaitCA(a.caL)
			if authority == nil {
				return nil, err
			}
			return newSecureServer(s.streams, a.c, a.cp, authority, a.clients, a.reg, a.log)
		},
		started: func() {
			a.log.Info("serving xDS and CSR over TLS", "addr", l.Addr().String(), "sans", a.c.SecureSANs)
		}}
}

// webhook serves sidecar injection (--inject-addr) once the CA has
// loaded; it keeps the webhook configuration's caBundle until ctx ends.
func (a *app) webhook(ctx context.Context, l net.Listener, local kubernetes.Interface) httpServer {
	return httpServer{lis: l, tls: true,
		build: func(s *servers) (*http.Server, error) {
			authority, err := s.awaitCA(a.caL)
			if authority == nil {
				return nil, err
			}
			return injectionServer(ctx, a.c, local, authority, a.log)
		},
		started: func() { a.log.Info("serving sidecar injection", "addr", l.Addr().String()) }}
}

// grpcServer is a gRPC server on its listener. build makes it, and may
// wait (for the CA); it returns nil and no error when shutdown began first.
// started runs once it serves.
type grpcServer struct {
	lis     net.Listener
	build   func(*servers) (*grpc.Server, error)
	started func()
}

// httpServer is an HTTP server (over TLS if tls) on its listener; build
// and started as for grpcServer.
type httpServer struct {
	lis     net.Listener
	tls     bool
	build   func(*servers) (*http.Server, error)
	started func()
}

// start builds the server in its own goroutine and, unless shutdown has
// begun, serves until the set stops serving; its end is reported on done.
// The set waits for its listener to close before streams end.
func (g grpcServer) start(s *servers) {
	nl := &notifyListener{Listener: g.lis, closed: make(chan struct{})}
	s.add(nl.closed)
	go func() {
		srv, err := g.build(s)
		if err != nil || !s.addGRPC(srv) {
			_ = nl.Close()
			s.done <- err
			return
		}
		g.started()
		s.done <- server.Serve(s.serving, srv, nl)
	}()
}

// start builds the server in its own goroutine and, unless shutdown has
// begun, serves until the set shuts it down; its end is reported on done.
func (h httpServer) start(s *servers) {
	s.add(nil)
	go func() {
		srv, err := h.build(s)
		if err != nil || !s.addHTTP(srv) {
			h.lis.Close()
			s.done <- err
			return
		}
		h.started()
		if h.tls {
			err = srv.ServeTLS(h.lis, "", "")
		} else {
			err = srv.Serve(h.lis)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
}

// servers tracks discovery's servers, some of which start late (those
// that wait for the CA): one that would start after shutdown began is not
// started, so shutdown never misses a server.
type servers struct {
	// serving ends when the servers are to stop accepting: Run's context
	// ended, or a server stopped.
	serving     context.Context
	stopServing context.CancelFunc
	// streams is the ADS streams' own context: the servers stop accepting
	// first, and only then are the streams ended (with Unavailable).
	streams    context.Context
	endStreams context.CancelFunc

	done chan error // one value per server, when it has stopped

	mu       sync.Mutex
	n        int
	closed   []<-chan struct{} // gRPC listeners, once closed
	grpcs    []*grpc.Server
	https    []*http.Server
	stopping bool
}

func newServers(ctx context.Context) *servers {
	s := &servers{done: make(chan error, 4)}
	s.streams, s.endStreams = context.WithCancel(context.WithoutCancel(ctx))
	s.serving, s.stopServing = context.WithCancel(ctx)
	return s
}

// release frees the set's contexts once it has shut down.
func (s *servers) release() {
	s.endStreams()
	s.stopServing()
}

// awaitCA returns the CA once loaded, or nil and no error if the set stops
// serving first.
func (s *servers) awaitCA(l *caLoader) (*ca.Authority, error) {
	a, err := l.wait(s.serving)
	if s.serving.Err() != nil {
		return nil, nil //nolint:nilerr // shutting down before the CA came: no error to report
	}
	return a, err
}

func (s *servers) add(closed <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	if closed != nil {
		s.closed = append(s.closed, closed)
	}
}

func (s *servers) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// addGRPC records a started server; false: shutdown has begun, don't serve.
func (s *servers) addGRPC(g *grpc.Server) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g == nil || s.stopping {
		return false
	}
	s.grpcs = append(s.grpcs, g)
	return true
}

func (s *servers) addHTTP(h *http.Server) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h == nil || s.stopping {
		return false
	}
	s.https = append(s.https, h)
	return true
}

// stop marks shutdown and returns every server started so far.
func (s *servers) stop() ([]*grpc.Server, []*http.Server, []<-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopping = true
	return s.grpcs, s.https, s.closed
}

// notifyListener tells when the gRPC server has closed it.
type notifyListener struct {
	net.Listener
	once   sync.Once
	closed chan struct{}
}

func (l *notifyListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// boundListeners are discovery's listeners, bound before anything serves
// so that a taken port fails the start.
type boundListeners struct {
	http, xds, secure, inject net.Listener
}

func bindListeners(c Config, lis *Listeners) (*boundListeners, error) {
	ls := &boundListeners{http: lis.HTTP, xds: lis.XDS, secure: lis.Secure, inject: lis.Inject}
	for _, b := range []struct {
		l          *net.Listener
		addr, flag string
	}{{&ls.http, c.HTTPAddr, "--http-addr"}, {&ls.xds, c.XDSAddr, "--xds-addr"},
		{&ls.secure, c.SecureAddr, "--secure-addr"}, {&ls.inject, c.InjectAddr, "--inject-addr"}} {
		if *b.l != nil || b.addr == "" {
			continue
		}
		l, err := net.Listen("tcp", b.addr)
		if err != nil {
			ls.closeAll()
			return nil, fmt.Errorf("%s: %w", b.flag, err)
		}
		*b.l = l
	}
	return ls, nil
}

func (ls *boundListeners) closeAll() {
	for _, l := range []net.Listener{ls.http, ls.xds, ls.secure, ls.inject} {
		if l != nil {
			l.Close()
		}
	}
}
