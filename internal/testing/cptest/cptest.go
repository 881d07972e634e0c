// Package cptest serves live control planes' xDS to tests over plaintext
// gRPC on a loopback port, the way Envoy and istioctl reach discovery; and,
// for the `proxy-status` clients (Horizon's and istioctl), one such
// control plane of the walkthrough's cluster1 with a sidecar connected.
package cptest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/internal/controlplane"
	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source"
	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/source/manifest"
	"github.com/horizonmesh/horizon/internal/testing/adsclient"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
	"github.com/horizonmesh/horizon/internal/xds/server"
)

// SidecarID is the node ID of the connected sidecar: helloworld's pod in
// namespace sample at 10.10.0.5, in cluster "cluster1".
const SidecarID = "sidecar~10.10.0.5~hw.sample~sample.svc.cluster.local"

// ServeWithSidecar starts a control plane of cluster "cluster1" (local,
// synced) from the manifests in dir, with no mesh networks, serves its xDS
// on a loopback port and waits until it is ready; then connects the
// sidecar SidecarID, which asks for clusters and endpoints. status, when
// not nil, is the client status's options (set before serving). It
// returns the gRPC address; all stops when t ends.
func ServeWithSidecar(t testing.TB, dir string, status *server.StatusOptions) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cp := controlplane.New(controlplane.Options{Logger: testkit.Logger(), Debounce: time.Millisecond})
	store, diags := manifest.Load(dir)
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	cp.SetCluster(source.Cluster{ID: "cluster1", Origin: "test", Local: true, Source: &kube.Source{Store: store, IsSynced: func() bool { return true }}})
	cp.SetMeshNetworks(&model.MeshNetworks{}, nil)
	if status != nil {
		cp.Tracker.ServeStatus(*status)
	}
	go cp.Run(ctx)
	addr := ServeXDS(t, cp)
	testkit.WaitFor(t, "the control plane ready", func() bool { return cp.Ready() && cp.Mesh() != nil })

	node := adsclient.Node(SidecarID, "", "cluster1")
	node.Metadata.Fields["INSTANCE_IPS"] = structpb.NewStringValue("10.10.0.5")
	client, err := adsclient.Dial(addr, node)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	for _, typeURL := range []string{resource.ClusterType, resource.EndpointType} {
		if err := client.Request(typeURL, nil, "", "", ""); err != nil {
			t.Fatal(err)
		}
	}
	return addr
}

// ServeXDS serves cp's views and client status over plaintext gRPC on a
// loopback port until t ends and returns the address. Running cp is the
// caller's.
func ServeXDS(t testing.TB, cp *controlplane.ControlPlane) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := server.NewGRPC(ctx, cp.Views, cp.Tracker)
	go func() { _ = server.Serve(ctx, g, lis) }()
	return lis.Addr().String()
}
