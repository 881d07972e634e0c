package controlplane

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source"
	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/testing/adsclient"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
	"github.com/horizonmesh/horizon/internal/xds/server"
)

// serve runs cp and its ADS server on loopback and returns the address.
func serve(t testing.TB, cp *ControlPlane) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go cp.Run(ctx)
	g := server.NewGRPC(ctx, cp.Views, cp.Tracker)
	go func() { _ = server.Serve(ctx, g, lis) }()
	return lis.Addr().String()
}

// newLocal is a control plane whose one cluster, c1, is local and read from
// st (always synced), debounced briefly so that tests see pushes at once.
func newLocal(st *kube.Store) *ControlPlane {
	cp := New(Options{Logger: testkit.Logger(), Debounce: time.Millisecond, DebounceMax: 5 * time.Millisecond})
	cp.SetCluster(source.Cluster{ID: "c1", Origin: "test", Local: true, Source: &kube.Source{Store: st, IsSynced: func() bool { return true }}})
	return cp
}

// serveReady serves cp (see serve), waits until it is ready and returns
// the address.
func serveReady(t testing.TB, cp *ControlPlane) string {
	t.Helper()
	addr := serve(t, cp)
	testkit.WaitFor(t, "ready", cp.Ready)
	return addr
}

// dialSidecar connects to addr as node n stating ip as its INSTANCE_IPS (as
// pilot-agent does) and requests every resource of each of types; the
// client closes with the test.
func dialSidecar(t testing.TB, addr string, n *corev3.Node, ip string, types ...string) *adsclient.Client {
	t.Helper()
	n.Metadata.Fields["INSTANCE_IPS"] = structpb.NewStringValue(ip)
	c, err := adsclient.Dial(addr, n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	for _, typ := range types {
		if err := c.Request(typ, nil, "", "", ""); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func TestUnavailableUntilLocalClusterSyncs(t *testing.T) {
	cp := New(Options{Logger: testkit.Logger(), RemoteSyncTimeout: time.Hour, Debounce: 5 * time.Millisecond})
	var synced atomic.Bool
	cp.SetCluster(source.Cluster{ID: "local", Origin: "test", Local: true, Source: &kube.Source{Store: kube.NewStore(), IsSynced: synced.Load}})
	addr := serve(t, cp)

	c, err := adsclient.Dial(addr, adsclient.Node("early", "n1", "local"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.Request(resource.ClusterType, nil, "", "", "")
	_, err = c.Wait(resource.ClusterType, 5*time.Second, func(*discovery.DiscoveryResponse) bool { return true })
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("before sync: %v, want Unavailable", err)
	}
	if cp.Ready() {
		t.Fatal("ready before the local cluster synced")
	}

	synced.Store(true)
	cp.ClusterChanged("local")
	testkit.WaitFor(t, "ready after sync", cp.Ready)
	c2, err := adsclient.Dial(addr, adsclient.Node("late", "", "local"))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_ = c2.Request(resource.ClusterType, nil, "", "", "")
	if _, err := c2.Wait(resource.ClusterType, 5*time.Second, func(*discovery.DiscoveryResponse) bool { return true }); err != nil {
		t.Fatalf("after sync: %v", err)
	}
}

func TestRemoteNeverBlocksReadinessBeyondTimeout(t *testing.T) {
	cp := New(Options{Logger: testkit.Logger(), RemoteSyncTimeout: 300 * time.Millisecond, Debounce: 5 * time.Millisecond})
	always := func() bool { return true }
	never := func() bool { return false }
	cp.SetCluster(source.Cluster{ID: "local", Origin: "test", Local: true, Source: &kube.Source{Store: kube.NewStore(), IsSynced: always}})
	cp.SetCluster(source.Cluster{ID: "remote", Origin: "test", Local: false, Source: &kube.Source{Store: kube.NewStore(), IsSynced: never}})
	start := time.Now()
	serve(t, cp)
	time.Sleep(100 * time.Millisecond)
	if cp.Ready() {
		t.Fatal("ready before the remote's sync timeout while it is unsynced")
	}
	for !cp.Ready() {
		if time.Since(start) > 5*time.Second {
			t.Fatal("an unsynced remote blocked readiness beyond the timeout")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestReadinessGate(t *testing.T) {
	cp := New(Options{Logger: testkit.Logger(), RemoteSyncTimeout: time.Second, Debounce: 5 * time.Millisecond})
	var gate atomic.Bool
	cp.AddReadinessGate("meshNetworks", gate.Load)
	cp.SetCluster(source.Cluster{ID: "local", Origin: "test", Local: true, Source: &kube.Source{Store: kube.NewStore(), IsSynced: func() bool { return true }}})
	serve(t, cp)
	time.Sleep(1500 * time.Millisecond)
	if cp.Ready() {
		t.Fatal("ready with a closed gate")
	}
	gate.Store(true)
	cp.SetMeshNetworks(&model.MeshNetworks{}, nil)
	testkit.WaitFor(t, "ready after the gate opened", cp.Ready)
}
