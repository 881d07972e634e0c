package bootstrap

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/internal/controlplane"
	"github.com/horizonmesh/horizon/internal/testing/adsclient"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// wantShutdownStatus waits for c's stream to end and checks that it ended
// with a gRPC status a proxy retries, not a bare EOF or transport error.
func wantShutdownStatus(t *testing.T, c *adsclient.Client) {
	t.Helper()
	_, err := c.Wait(resource.EndpointType, 5*time.Second, func(*discovery.DiscoveryResponse) bool { return false })
	if c.Err() == nil {
		t.Fatalf("the stream did not end: %v", err)
	}
	st, ok := status.FromError(c.Err())
	if !ok || st.Code() != codes.Unavailable || st.Message() != "server shutting down" {
		t.Fatalf("stream ended with %v (%T), want Unavailable \"server shutting down\"", c.Err(), c.Err())
	}
}

func TestDiscoveryShutdownEndsStreamsWithUnavailable(t *testing.T) {
	dir := t.TempDir()
	copyTree(t, walkthrough, dir)
	xl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.MeshNetworksFile = filepath.Join(dir, "meshnetworks.yaml")
	cfg.Clusters = []string{"cluster1=" + filepath.Join(dir, "cluster1"), "remote_kubecfg=" + filepath.Join(dir, "remote")}
	cfg.XDSAddr, cfg.HTTPAddr, cfg.SecureAddr = xl.Addr().String(), hl.Addr().String(), ""
	cfg.Debounce, cfg.DebounceMax, cfg.RemoteSyncTimeout = 10*time.Millisecond, 100*time.Millisecond, time.Second
	cfg.ShutdownGrace = 5 * time.Second
	logs := &testkit.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan *controlplane.ControlPlane, 1)
	finished := make(chan error, 1)
	go func() {
		finished <- Run(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil)),
			&Listeners{XDS: xl, HTTP: hl, Started: func(cp *controlplane.ControlPlane) { started <- cp }})
	}()
	var cp *controlplane.ControlPlane
	select {
	case cp = <-started:
	case err := <-finished:
		t.Fatalf("discovery ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("discovery did not start")
	}
	testkit.WaitFor(t, "discovery ready", cp.Ready)
	c, err := adsclient.Dial(xl.Addr().String(), adsclient.Node("sleep.sample", "network2", "cluster1"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Request(resource.EndpointType, []string{hwCluster}, "", "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(resource.EndpointType, 5*time.Second, func(*discovery.DiscoveryResponse) bool { return true }); err != nil {
		t.Fatal(err)
	}

	begin := time.Now()
	cancel()
	select {
	case err := <-finished:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(cfg.ShutdownGrace + 2*time.Second):
		t.Fatal("Run did not return within the grace period")
	}
	// The stream was ended, not waited out until the grace period was over.
	if took := time.Since(begin); took >= cfg.ShutdownGrace {
		t.Errorf("shutdown took %s: the stream was not ended", took)
	}
	wantShutdownStatus(t, c)
	for _, addr := range []string{xl.Addr().String(), hl.Addr().String()} {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			t.Errorf("%s still accepts connections after shutdown", addr)
		}
	}
	out := logs.String()
	for _, want := range []string{`msg="shutting down: no new connections, ending xDS streams" streams=1`, `msg="shutdown complete"`, "forced=false streams=0"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q:\n%s", want, out)
		}
	}
}

// TestDiscoverySIGTERMExitsZero runs the real binary (horizon-discovery): SIGTERM ends it with
// exit status 0, a logged shutdown, and Unavailable on a connected stream.
func TestDiscoverySIGTERMExitsZero(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "horizon-discovery")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/horizon-discovery")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "discovery",
		"--cluster", "cluster1="+walkthrough+"/cluster1", "--cluster", "remote_kubecfg="+walkthrough+"/remote",
		"--mesh-networks", walkthrough+"/meshnetworks.yaml",
		"--xds-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--secure-addr", "", "--shutdown-grace", "5s")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	logs := &testkit.SyncBuffer{}
	xdsAddr, ready := make(chan string, 1), make(chan struct{})
	go func() {
		addr := regexp.MustCompile(`msg="serving xDS" addr=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			_, _ = logs.Write([]byte(line + "\n"))
			if m := addr.FindStringSubmatch(line); m != nil {
				xdsAddr <- m[1]
			}
			if strings.Contains(line, `msg="ready: serving xDS"`) {
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		exited <- cmd.Wait()
	}()
	defer func() { _ = cmd.Process.Kill() }()
	var addr string
	select {
	case addr = <-xdsAddr:
	case <-time.After(20 * time.Second):
		t.Fatalf("discovery did not start:\n%s", logs)
	}
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatalf("discovery not ready:\n%s", logs)
	}
	c, err := adsclient.Dial(addr, adsclient.Node("sleep.sample", "", "cluster1"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Request(resource.EndpointType, []string{hwCluster}, "", "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(resource.EndpointType, 5*time.Second, func(*discovery.DiscoveryResponse) bool { return true }); err != nil {
		t.Fatal(err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("still running 10s after SIGTERM:\n%s", logs)
	}
	wantShutdownStatus(t, c)
	out := logs.String()
	for _, want := range []string{`msg="shutting down: no new connections, ending xDS streams" streams=1`, `msg="shutdown complete"`} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q:\n%s", want, out)
		}
	}
}

// TestOpsHTTPIsLoopbackByDefault: /debug/* is not on an open port unless
// --http-addr says so.
func TestOpsHTTPIsLoopbackByDefault(t *testing.T) {
	host, _, err := net.SplitHostPort(DefaultConfig().HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		t.Errorf("default --http-addr %q is not a loopback address", DefaultConfig().HTTPAddr)
	}
	if g := DefaultConfig().ShutdownGrace; g <= 0 {
		t.Errorf("default --shutdown-grace %v", g)
	}
}
