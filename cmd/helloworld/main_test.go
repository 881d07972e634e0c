package main

import (
	"io"
	"net"
	"os"
	"strings"
	"testing"
)

// stdout runs f and returns what it printed on stdout.
func stdout(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() { b, _ := io.ReadAll(r); done <- string(b) }()
	f()
	os.Stdout = old
	w.Close()
	return <-done
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestTCPEchoNamesTheInstance(t *testing.T) {
	l := listen(t)
	go func() { _ = serveEcho(l, "echo2/v2") }()
	var code int
	out := stdout(t, func() { code = runTCPEchoClient([]string{l.Addr().String(), "hello world"}) })
	if code != 0 || out != "echo2/v2 hello world\n" {
		t.Errorf("tcp-echo-client: exit %d, printed %q", code, out)
	}
	if code := runTCPEchoClient([]string{l.Addr().String(), "two\nlines"}); code != 2 {
		t.Errorf("a message of two lines: exit %d, want 2", code)
	}
	if code := runTCPEchoClient([]string{l.Addr().String()}); code != 2 {
		t.Errorf("no message: exit %d, want 2", code)
	}
	closed := listen(t)
	addr := closed.Addr().String()
	closed.Close()
	if code := runTCPEchoClient([]string{"-timeout", "1s", addr, "x"}); code != 1 {
		t.Errorf("nobody listening: exit %d, want 1", code)
	}
}

func TestGRPCHealthProbe(t *testing.T) {
	l := listen(t)
	srv := healthServer("grpc2/v2", []string{"sample.Echo"})
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{l.Addr().String()}, 0, "status: SERVING (instance: grpc2/v2)\n"},
		{[]string{"-service", "sample.Echo", l.Addr().String()}, 0, "status: SERVING (instance: grpc2/v2)\n"},
		{[]string{"-service", "unknown", l.Addr().String()}, 1, ""}, // NotFound
		{nil, 2, ""},
	} {
		var code int
		out := stdout(t, func() { code = runGRPCHealthProbe(c.args) })
		if code != c.code || out != c.out {
			t.Errorf("grpc-health-probe %s: exit %d, printed %q; want %d, %q", strings.Join(c.args, " "), code, out, c.code, c.out)
		}
	}
}
