package server

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// A client that connects and never sends the HTTP/2 preface is closed once
// the handshake time is up, instead of holding its connection forever.
func TestSilentConnectionIsClosed(t *testing.T) {
	f := newFixture(t, 0, Limits{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer func(d time.Duration) { handshakeTimeout = d }(handshakeTimeout)
	handshakeTimeout = 200 * time.Millisecond
	g := NewGRPC(ctx, f.vc, f.tr)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = Serve(ctx, g, lis) }()
	conn, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The deadline only bounds the test; the server must close first.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server kept a connection that never sent the HTTP/2 preface")
	}
}
