package controlplane

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/horizonmesh/horizon/internal/source"
	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// fakeClock is the control plane's clock in these tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// staleSource is a cluster store whose API server answers until told
// otherwise.
type staleSource struct {
	*kube.Source
	since atomic.Pointer[time.Time]
}

func (s *staleSource) UnreachableSince() time.Time {
	if p := s.since.Load(); p != nil {
		return *p
	}
	return time.Time{}
}

func (s *staleSource) unreachable(since time.Time) { s.since.Store(&since) }
func (s *staleSource) reachable()                  { s.since.Store(nil) }

var _ source.Reachability = (*staleSource)(nil)

func newStaleSource(addr string) *staleSource {
	st := kube.NewStore()
	st.Upsert(incrementalService("web", ""), "")
	st.Upsert(incrementalSlice("web", addr), "")
	return &staleSource{Source: &kube.Source{Store: st, IsSynced: func() bool { return true }}}
}

// webAddrs are the addresses the mesh has for ns/web.
func webAddrs(cp *ControlPlane) []string {
	var out []string
	if s := cp.Mesh().Service("web.ns.svc.cluster.local"); s != nil {
		for _, e := range s.Endpoints[80] {
			out = append(out, e.Address.String())
		}
	}
	slices.Sort(out)
	return out
}

// staleGauge is horizon_remote_cluster_stale_seconds per cluster.
func staleGauge(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "horizon_remote_cluster_stale_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	return out
}

func clusterStatus(cp *ControlPlane, id string) ClusterStatus {
	for _, s := range cp.Clusters() {
		if s.ID == id {
			return s
		}
	}
	return ClusterStatus{}
}

// A remote cluster whose API server stops answering keeps serving its last
// endpoints, its age growing in /debug/clusters and the metric; at the
// TTL its endpoints are withdrawn (logged once), the local cluster's never
// are, and when the API server answers again they come back (logged once).
func TestStaleRemoteClusterWithdrawnAfterTTLAndBack(t *testing.T) {
	clk := &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	logs := &testkit.SyncBuffer{}
	reg := prometheus.NewRegistry()
	cp := New(Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), Registry: reg, Now: clk.Now,
		StaleEndpointTTL: time.Minute, RemoteSyncTimeout: time.Hour})
	local, remote := newStaleSource("10.1.0.1"), newStaleSource("10.2.0.1")
	cp.SetCluster(source.Cluster{ID: "local", Origin: "test", Local: true, Source: local})
	cp.SetCluster(source.Cluster{ID: "remote", Origin: "test", Source: remote})
	ctx := context.Background()
	both, onlyLocal := []string{"10.1.0.1", "10.2.0.1"}, []string{"10.1.0.1"}

	cp.push(ctx)
	if got := webAddrs(cp); !slices.Equal(got, both) {
		t.Fatalf("web: %v, want %v", got, both)
	}
	if g := staleGauge(t, reg); len(g) != 1 || g["remote"] != 0 {
		t.Errorf("stale gauge while answering: %v, want remote=0 only (no local series)", g)
	}

	// Both API servers stop answering: fail static until the TTL.
	lost := clk.Now()
	local.unreachable(lost)
	remote.unreachable(lost)
	clk.Add(59 * time.Second)
	if cp.staleDue() {
		t.Error("a withdrawal due before the TTL")
	}
	cp.push(ctx)
	if got := webAddrs(cp); !slices.Equal(got, both) {
		t.Fatalf("before the TTL: web %v, want %v (fail static)", got, both)
	}
	s := clusterStatus(cp, "remote")
	if s.StaleSeconds != 59 || !s.UnreachableSince.Equal(lost) || s.Withdrawn {
		t.Errorf("remote status before the TTL: stale %v since %v withdrawn %v; want 59, %v, false", s.StaleSeconds, s.UnreachableSince, s.Withdrawn, lost)
	}
	if g := staleGauge(t, reg); g["remote"] != 59 {
		t.Errorf("stale gauge: %v, want remote=59", g)
	}

	// The TTL: the remote cluster goes, the local one stays.
	clk.Add(time.Second)
	if !cp.staleDue() {
		t.Fatal("no withdrawal due at the TTL")
	}
	cp.push(ctx)
	cp.push(ctx)
	if got := webAddrs(cp); !slices.Equal(got, onlyLocal) {
		t.Fatalf("after the TTL: web %v, want %v", got, onlyLocal)
	}
	if !clusterStatus(cp, "remote").Withdrawn || clusterStatus(cp, "local").Withdrawn {
		t.Errorf("status: remote withdrawn %v, local withdrawn %v; want true, false",
			clusterStatus(cp, "remote").Withdrawn, clusterStatus(cp, "local").Withdrawn)
	}
	if ls := clusterStatus(cp, "local"); ls.StaleSeconds != 60 {
		t.Errorf("local stale %v s, want 60 (shown, never withdrawn)", ls.StaleSeconds)
	}
	if cp.staleDue() {
		t.Error("a withdrawal still due after the push that made it")
	}

	// Contact returns: the endpoints are back.
	remote.reachable()
	if !cp.staleDue() {
		t.Fatal("no return due once the API server answers")
	}
	cp.push(ctx)
	if got := webAddrs(cp); !slices.Equal(got, both) {
		t.Fatalf("after contact returned: web %v, want %v", got, both)
	}
	if g := staleGauge(t, reg); g["remote"] != 0 {
		t.Errorf("stale gauge after the return: %v, want remote=0", g)
	}
	if s := clusterStatus(cp, "remote"); s.Withdrawn || s.StaleSeconds != 0 || !s.UnreachableSince.IsZero() {
		t.Errorf("remote status after the return: %+v", s)
	}
	if n := logs.Count("endpoints are withdrawn"); n != 1 {
		t.Errorf("%d withdrawal lines, want 1:\n%s", n, logs.String())
	}
	if n := logs.Count("remote cluster back"); n != 1 {
		t.Errorf("%d return lines, want 1:\n%s", n, logs.String())
	}
}

// Without a TTL a stale cluster serves its last state however old it is.
func TestStaleRemoteClusterServesWithoutTTL(t *testing.T) {
	clk := &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	cp := New(Options{Logger: testkit.Logger(), Now: clk.Now, RemoteSyncTimeout: time.Hour})
	remote := newStaleSource("10.2.0.1")
	cp.SetCluster(source.Cluster{ID: "remote", Origin: "test", Source: remote})
	remote.unreachable(clk.Now())
	clk.Add(30 * 24 * time.Hour)
	if cp.staleDue() {
		t.Error("a withdrawal due without a TTL")
	}
	cp.push(context.Background())
	if got := webAddrs(cp); !slices.Equal(got, []string{"10.2.0.1"}) {
		t.Fatalf("web %v, want the stale cluster's endpoint", got)
	}
	if s := clusterStatus(cp, "remote"); s.Withdrawn || s.StaleSeconds != (30*24*time.Hour).Seconds() {
		t.Errorf("status %+v", s)
	}
}

// The running control plane withdraws at the TTL with no event to prompt
// it (its tick finds the cluster due), and brings the cluster back when its
// API server answers even if no source says so.
func TestStaleWithdrawalNeedsNoEvent(t *testing.T) {
	clk := &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	cp := New(Options{Logger: testkit.Logger(), Now: clk.Now, StaleEndpointTTL: time.Minute,
		RemoteSyncTimeout: time.Hour, Debounce: time.Millisecond})
	local, remote := newStaleSource("10.1.0.1"), newStaleSource("10.2.0.1")
	cp.SetCluster(source.Cluster{ID: "local", Origin: "test", Local: true, Source: local})
	cp.SetCluster(source.Cluster{ID: "remote", Origin: "test", Source: remote})
	serve(t, cp)
	testkit.WaitFor(t, "ready", cp.Ready)
	testkit.WaitFor(t, "both clusters' endpoints", func() bool { return len(webAddrs(cp)) == 2 })

	remote.unreachable(clk.Now())
	clk.Add(time.Minute)
	testkit.WaitFor(t, "the stale cluster withdrawn", func() bool {
		return slices.Equal(webAddrs(cp), []string{"10.1.0.1"})
	})
	remote.reachable()
	testkit.WaitFor(t, "the cluster back", func() bool { return len(webAddrs(cp)) == 2 })
}
