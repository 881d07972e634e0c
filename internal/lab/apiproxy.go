package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/horizonmesh/horizon/internal/netns"
)

// The API server listens on loopback; pods reach it where a real cluster's
// would be: the "kubernetes" Service's ClusterIP (DNATed on the router to
// the router's own address) and, for other clusters (remote secrets), the
// router's public address — both on port 443, where the lab node proxies
// TCP to the API server. TLS passes through: the serving certificate names
// both addresses.

// APIPort is where pods and other networks reach a lab cluster's API
// server (the router's addresses).
const APIPort = 443

// serveAPIProxy proxies connections to addrs (in the router's namespace)
// to the API server at upstream until ctx ends.
func serveAPIProxy(ctx context.Context, ns string, addrs []string, upstream string, logf func(string, ...any)) error {
	var ls []net.Listener
	for _, a := range addrs {
		l, err := netns.Listen(ns, a)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return fmt.Errorf("API server proxy: %w", err)
		}
		ls = append(ls, l)
	}
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Go(func() {
			for {
				c, err := l.Accept()
				if err != nil {
					if !errors.Is(err, net.ErrClosed) {
						logf("API server proxy %s: %v", l.Addr(), err)
					}
					return
				}
				go proxyConn(ctx, c, upstream)
			}
		})
	}
	logf("API server proxy: %v in %s → %s", addrs, ns, upstream)
	<-ctx.Done()
	for _, l := range ls {
		l.Close()
	}
	wg.Wait()
	return ctx.Err()
}

func proxyConn(ctx context.Context, c net.Conn, upstream string) {
	defer c.Close()
	var d net.Dialer
	u, err := d.DialContext(ctx, "tcp", upstream)
	if err != nil {
		return
	}
	defer u.Close()
	stop := context.AfterFunc(ctx, func() { c.Close(); u.Close() })
	defer stop()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(u, c)
	go cp(c, u)
	<-done
	<-done
}
