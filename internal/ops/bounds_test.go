package ops

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// serve runs NewServer(h, idle) on a loopback port until the test ends.
func serve(t *testing.T, h http.Handler, idle time.Duration) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(h, idle)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	return lis.Addr().String()
}

// A keep-alive connection left idle is closed by the server after its
// idle timeout (the hostile review held 1000 such connections for 45 s):
// the client reads EOF well before its own deadline.
func TestIdleKeepAliveConnectionIsClosed(t *testing.T) {
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ready\n") }), 200*time.Millisecond)
	status, d := testkit.IdleClose(t, addr, "/ready")
	if status != http.StatusOK {
		t.Fatalf("status %d: want a kept-alive 200", status)
	}
	if d > 5*time.Second {
		t.Errorf("closed after %s, idle timeout 200ms", d)
	}
}

// Headers are bounded: a request with 64 KiB of them is refused (431),
// and the defaults hold for the server discovery runs.
func TestOpsServerBoundsHeaders(t *testing.T) {
	srv := NewServer(http.NotFoundHandler(), 0)
	if srv.IdleTimeout != DefaultIdleTimeout || srv.ReadHeaderTimeout != ReadHeaderTimeout || srv.MaxHeaderBytes != MaxHeaderBytes {
		t.Errorf("server bounds: idle %s, read header %s, max header bytes %d", srv.IdleTimeout, srv.ReadHeaderTimeout, srv.MaxHeaderBytes)
	}
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }), time.Second)
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/ready", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Junk", strings.Repeat("j", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KiB of headers: status %d, want 431", resp.StatusCode)
	}
}

// /debug/eds echoes no parameter whole: a 100 KB ?name= (or ?network=)
// is quoted by its first bytes and its length.
func TestDebugEDSDoesNotEchoHugeParameters(t *testing.T) {
	m := startMesh(t, 1, 1)
	huge := strings.Repeat("n", 100<<10)
	for _, q := range []string{"network=n1&name=" + huge, "network=" + huge, "network=n1&cluster=" + huge} {
		rec := m.get("/debug/eds?" + strings.ReplaceAll(url.PathEscape(q), "%26", "&"))
		if rec.Code < 400 {
			t.Errorf("%.40s...: status %d, want an error", q, rec.Code)
		}
		if n := rec.Body.Len(); n > 1024 {
			t.Errorf("%.40s...: answer of %d bytes echoes the parameter: %.200s", q, n, rec.Body)
		}
	}
}
