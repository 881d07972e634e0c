package bootstrap

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/horizonmesh/horizon/internal/controlplane"
	"github.com/horizonmesh/horizon/internal/testing/adsclient"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// walkthrough holds the walkthrough's clusters as manifests.
const walkthrough = "../../examples/walkthrough"

// discoveryEnv runs `horizon-discovery discovery` in-process on manifests copied to a
// temp dir, with plaintext xDS and ops HTTP on loopback.
type discoveryEnv struct {
	dir      string
	xds      string
	http     string
	cp       *controlplane.ControlPlane
	cancel   context.CancelFunc
	finished chan error
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func startDiscovery(t *testing.T) *discoveryEnv {
	t.Helper()
	env := &discoveryEnv{dir: t.TempDir(), finished: make(chan error, 1)}
	copyTree(t, walkthrough, env.dir)
	xl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	env.xds, env.http = xl.Addr().String(), hl.Addr().String()
	cfg := DefaultConfig()
	cfg.MeshNetworksFile = filepath.Join(env.dir, "meshnetworks.yaml")
	cfg.Clusters = []string{"cluster1=" + filepath.Join(env.dir, "cluster1"), "remote_kubecfg=" + filepath.Join(env.dir, "remote")}
	cfg.XDSAddr, cfg.HTTPAddr, cfg.SecureAddr = env.xds, env.http, ""
	cfg.Debounce, cfg.DebounceMax, cfg.RemoteSyncTimeout = 10*time.Millisecond, 100*time.Millisecond, time.Second
	cfg.PollInterval = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	env.cancel = cancel
	started := make(chan *controlplane.ControlPlane, 1)
	log := testkit.Logger()
	go func() {
		env.finished <- Run(ctx, cfg, log, &Listeners{XDS: xl, HTTP: hl, Started: func(cp *controlplane.ControlPlane) { started <- cp }})
	}()
	select {
	case env.cp = <-started:
	case err := <-env.finished:
		t.Fatalf("discovery ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("discovery did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-env.finished: //nolint:errcheck // stopped on purpose
		case <-time.After(10 * time.Second):
			t.Error("discovery did not stop")
		}
	})
	testkit.WaitFor(t, "discovery ready", env.cp.Ready)
	return env
}

func (e *discoveryEnv) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + e.http + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const hwCluster = "outbound|5000||helloworld.sample.svc.cluster.local"

func dial(t *testing.T, env *discoveryEnv, id, network string) *adsclient.Client {
	t.Helper()
	c, err := adsclient.Dial(env.xds, adsclient.Node(id, network, "cluster1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// hwWeights waits for an EDS response satisfying want and returns it.
func waitEDS(t *testing.T, c *adsclient.Client, desc string, ok func(map[string]uint32) bool) *discovery.DiscoveryResponse {
	t.Helper()
	r, err := c.Wait(resource.EndpointType, 5*time.Second, func(r *discovery.DiscoveryResponse) bool {
		clas, err := adsclient.LoadAssignments(r)
		return err == nil && clas[hwCluster] != nil && ok(adsclient.Weights(clas[hwCluster]))
	})
	if err != nil {
		var last string
		if rs := c.Responses(); len(rs) > 0 {
			clas, _ := adsclient.LoadAssignments(rs[len(rs)-1])
			last = fmt.Sprint(adsclient.Weights(clas[hwCluster]))
		}
		t.Fatalf("%s: %v (last: %s)", desc, err, last)
	}
	return r
}

func TestDiscoveryServesSplitHorizon(t *testing.T) {
	env := startDiscovery(t)
	local := dial(t, env, "sleep-1.sample", "")
	remote := dial(t, env, "sleep-2.sample", "network2")
	for _, c := range []*adsclient.Client{local, remote} {
		if err := c.Request(resource.ClusterType, nil, "", "", ""); err != nil {
			t.Fatal(err)
		}
		r, err := c.Wait(resource.ClusterType, 5*time.Second, func(*discovery.DiscoveryResponse) bool { return true })
		if err != nil {
			t.Fatal(err)
		}
		clusters, _ := adsclient.Clusters(r)
		if clusters[hwCluster] == nil {
			t.Fatalf("CDS lacks %s: %v", hwCluster, clusters)
		}
		if err := c.Request(resource.EndpointType, []string{hwCluster}, "", "", ""); err != nil {
			t.Fatal(err)
		}
	}
	waitEDS(t, local, "local sidecar: v1 direct, v2 via network2's gateway", func(w map[string]uint32) bool {
		return len(w) == 2 && w["10.10.0.5:5000"] == 1 && w["203.0.113.20:443"] == 1
	})
	waitEDS(t, remote, "network2 sidecar: both direct", func(w map[string]uint32) bool {
		return len(w) == 2 && w["10.10.0.5:5000"] == 1 && w["10.20.0.7:5000"] == 1
	})

	if code, body := env.get(t, "/ready"); code != 200 {
		t.Errorf("/ready = %d %s", code, body)
	}
	if _, body := env.get(t, "/debug/syncz"); !strings.Contains(body, "sleep-2.sample") || !strings.Contains(body, "network=network2") {
		t.Errorf("/debug/syncz lacks the proxy or its view:\n%s", body)
	}
	if _, body := env.get(t, "/debug/eds?network=network2&cluster=remote_kubecfg"); !strings.Contains(body, "10.20.0.7") {
		t.Errorf("/debug/eds for network2 lacks the v2 pod:\n%s", body)
	}
	if code, _ := env.get(t, "/debug/eds?network=not%20valid"); code != 400 {
		t.Errorf("/debug/eds with a bad network = %d, want 400", code)
	}
	_, metrics := env.get(t, "/metrics")
	for _, want := range []string{`horizon_xds_connected_proxies{network="network2"} 1`, `horizon_cluster_synced{cluster="cluster1"} 1`, "horizon_push_duration_seconds_count"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// --max-streams-per-client may not be negative (0 is the default: a
// quarter of --max-streams).
func TestDiscoveryStreamLimitsAreValidated(t *testing.T) {
	c := DefaultConfig()
	c.Clusters = []string{"c1=" + t.TempDir()}
	if _, err := c.validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	c.MaxStreamsPerClient = -1
	if _, err := c.validate(); err == nil || !strings.Contains(err.Error(), "--max-streams-per-client") {
		t.Fatalf("negative --max-streams-per-client: %v", err)
	}
}
