package cli

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/internal/controlplane"
	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/proxystatus"
	"github.com/horizonmesh/horizon/internal/source"
	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/source/manifest"
	"github.com/horizonmesh/horizon/internal/testing/adsclient"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
	"github.com/horizonmesh/horizon/internal/xds/server"
)

// `horizon proxy-status --xds-address --plaintext` against a live control
// plane (the walkthrough's cluster1): a sidecar that acknowledged its
// clusters and endpoints is listed SYNCED for both, with its cluster and
// role, and "-" for the types it did not ask for.
func TestProxyStatusAgainstDiscovery(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cp := controlplane.New(controlplane.Options{Logger: testkit.Logger(), Debounce: time.Millisecond})
	store, diags := manifest.Load(filepath.Join(walkthrough, "cluster1"))
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	cp.SetCluster(source.Cluster{ID: "cluster1", Origin: "test", Local: true, Source: &kube.Source{Store: store, IsSynced: func() bool { return true }}})
	cp.SetMeshNetworks(&model.MeshNetworks{}, nil)
	go cp.Run(ctx)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := server.NewGRPC(ctx, cp.Views, cp.Tracker)
	go func() { _ = server.Serve(ctx, g, lis) }()
	testkit.WaitFor(t, "the control plane ready", func() bool { return cp.Ready() && cp.Mesh() != nil })

	id := "sidecar~10.10.0.5~hw.sample~sample.svc.cluster.local"
	node := adsclient.Node(id, "", "cluster1")
	node.Metadata.Fields["INSTANCE_IPS"] = structpb.NewStringValue("10.10.0.5")
	client, err := adsclient.Dial(lis.Addr().String(), node)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for _, typeURL := range []string{resource.ClusterType, resource.EndpointType} {
		if err := client.Request(typeURL, nil, "", "", ""); err != nil {
			t.Fatal(err)
		}
	}

	args := []string{"proxy-status", "--xds-address", lis.Addr().String(), "--plaintext"}
	var rows []proxystatus.Row
	testkit.WaitFor(t, "proxy-status to show the sidecar SYNCED for cds and eds", func() bool {
		code, out, errOut := run(t, append(args, "-o", "json")...)
		if code != 0 {
			t.Fatalf("proxy-status: exit %d: %s", code, errOut)
		}
		rows = nil
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatal(err)
		}
		return len(rows) == 1 && rows[0].Types["cds"].Status == proxystatus.Synced && rows[0].Types["eds"].Status == proxystatus.Synced
	})
	r := rows[0]
	if r.Proxy != id || r.Cluster != "cluster1" || r.Role != "sidecar" || r.Replica != lis.Addr().String() || len(r.Types) != 2 {
		t.Errorf("row: %+v", r)
	}
	code, out, errOut := run(t, args...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "PROXY ") {
		t.Fatalf("table: exit %d\n%s%s", code, out, errOut)
	}
	f := strings.Fields(lines[1])
	// PROXY CLUSTER NETWORK ROLE LOCALITY VERSION CDS(2) LDS EDS(2) RDS NDS REPLICA
	if len(f) != 14 || f[0] != id || f[1] != "cluster1" || f[3] != "sidecar" || f[6] != "SYNCED" || f[8] != "-" || f[9] != "SYNCED" ||
		f[11] != "-" || f[12] != "-" || f[13] != lis.Addr().String() {
		t.Errorf("table row %q", lines[1])
	}
}

func TestProxyStatusUsage(t *testing.T) {
	for _, args := range [][]string{
		{"proxy-status", "-o", "xml", "--xds-address", "127.0.0.1:1", "--plaintext"},
		{"proxy-status", "--plaintext"},
	} {
		if code, _, errOut := run(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage): %s", args, code, errOut)
		}
	}
	// A replica that does not answer: exit 1, the error named.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	code, _, errOut := run(t, "proxy-status", "--xds-address", addr, "--plaintext", "--timeout", "2s")
	if code != 1 || !strings.Contains(errOut, "replica "+addr) {
		t.Errorf("a replica that does not answer: exit %d: %s", code, errOut)
	}
}
