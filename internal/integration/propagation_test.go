//go:build integration

package integration

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/internal/testing/adsclient"
)

// TestPropagationTo100Proxies measures, with `horizon-discovery discovery` running as
// its own process against two real API servers, the time from an
// EndpointSlice write in the remote cluster to the last of 100 connected ADS
// clients receiving the change, and the control plane's RSS. It reports the
// numbers; it asserts only that every change arrives.
func TestPropagationTo100Proxies(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	m := startMesh(t)
	m.joinCluster2(t, "iks")
	dir := t.TempDir()
	bin := filepath.Join(dir, "horizon-discovery")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/horizon-discovery").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	kc, err := m.c1.Kubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	kpath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kpath, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	ports := make([]string, 2)
	for i := range ports {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		ports[i] = l.Addr().String()
		l.Close()
	}
	cmd := exec.Command(bin, "discovery", "--kubeconfig", kpath, "--cluster-id", "cluster1",
		"--xds-addr", ports[0], "--http-addr", ports[1], "--debounce", "20ms", "--debounce-max", "200ms")
	logf, _ := os.Create(filepath.Join(dir, "discovery.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(t, 30*time.Second, "discovery ready", func() bool {
		r, err := http.Get("http://" + ports[1] + "/ready")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == 200
	})
	d := &discoveryProc{xds: ports[0], http: ports[1]}

	const proxies = 100
	var clients []*adsclient.Client
	for i := range proxies {
		clients = append(clients, proxy(t, d, fmt.Sprintf("sleep-%d.sample", i), "network1"))
	}
	for _, c := range clients {
		waitEDS(t, c, map[string]uint32{"10.1.0.5:5000": 1, "198.51.100.2:15443": 1})
	}

	var samples []time.Duration
	for i := range 20 {
		pods := map[string]string{"helloworld-v2": "10.2.0.5"}
		want := uint32(1)
		if i%2 == 0 {
			pod(t, m.c2, "sample", "helloworld-v2-b", "10.2.0.6", map[string]string{"app": "helloworld"})
			pods["helloworld-v2-b"] = "10.2.0.6"
			want = 2
		}
		start := time.Now()
		slice(t, m.c2, "sample", "helloworld", pods)
		for _, c := range clients {
			waitEDS(t, c, map[string]uint32{"10.1.0.5:5000": 1, "198.51.100.2:15443": want})
		}
		samples = append(samples, time.Since(start))
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	p50, p99 := samples[len(samples)/2], samples[len(samples)*99/100]
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	rss := ""
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			rss = strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:"))
		}
	}
	t.Logf("EndpointSlice write → last of %d proxies: p50 %s, p99 %s (n=%d, debounce 20ms); control plane RSS with %d proxies: %s",
		proxies, p50.Round(time.Millisecond), p99.Round(time.Millisecond), len(samples), proxies, rss)
}
