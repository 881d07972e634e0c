package bootstrap

import (
	"fmt"
	"net"
	"net/http"
	"sync"

	"google.golang.org/grpc"
)

// servers tracks discovery's servers, some of which start late (those
// that wait for the CA): one that would start after shutdown began is not
// started, so shutdown never misses a server.
type servers struct {
	done chan error // one value per server, when it has stopped

	mu       sync.Mutex
	n        int
	closed   []<-chan struct{} // gRPC listeners, once closed
	grpcs    []*grpc.Server
	https    []*http.Server
	stopping bool
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
