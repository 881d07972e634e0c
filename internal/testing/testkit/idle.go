package testkit

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// IdleClose sends one keep-alive GET of path to the HTTP server at addr,
// then leaves the connection idle, and returns the answer's status and how
// long the server took to close the idle connection. It fails t when the
// server closes with its answer (no keep-alive) or has not closed within
// 10 s.
func IdleClose(t testing.TB, addr, path string) (status int, closedAfter time.Duration) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Close {
		t.Fatalf("the server closed the connection with its answer (status %d); want keep-alive", resp.StatusCode)
	}
	begin := time.Now()
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := br.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("idle keep-alive connection: read %d bytes, %v after %s; want EOF (closed by the server)", n, err, time.Since(begin).Round(time.Millisecond))
	}
	return resp.StatusCode, time.Since(begin)
}
