package bootstrap

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/internal/controlplane"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// Discovery's ops port closes a keep-alive connection left idle for
// --http-idle-timeout (without one, 1000 idle connections were held for
// as long as their clients liked).
func TestOpsHTTPClosesIdleConnections(t *testing.T) {
	if DefaultConfig().HTTPIdleTimeout <= 0 {
		t.Fatal("no default --http-idle-timeout")
	}
	dir := t.TempDir()
	copyTree(t, walkthrough, dir)
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Clusters = []string{"cluster1=" + filepath.Join(dir, "cluster1")}
	cfg.XDSAddr, cfg.SecureAddr, cfg.HTTPAddr = "", "", hl.Addr().String()
	cfg.HTTPIdleTimeout = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		done <- Run(ctx, cfg, testkit.Logger(), &Listeners{HTTP: hl,
			Started: func(*controlplane.ControlPlane) { close(started) }})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done: //nolint:errcheck // stopped on purpose
		case <-time.After(10 * time.Second):
			t.Error("discovery did not stop")
		}
	})
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("discovery ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("discovery did not start")
	}

	_, d := testkit.IdleClose(t, hl.Addr().String(), "/ready")
	if d > 5*time.Second {
		t.Errorf("closed after %s, --http-idle-timeout 200ms", d)
	}
}
