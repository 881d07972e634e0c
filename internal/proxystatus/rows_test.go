package proxystatus

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/horizonmesh/horizon/internal/xds/translate"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(now.Add(-d)) }

func testNode(id, cluster, network string, loc *corev3.Locality) *corev3.Node {
	return &corev3.Node{Id: id, Locality: loc, Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
		"CLUSTER_ID": structpb.NewStringValue(cluster), "NETWORK": structpb.NewStringValue(network)}}}
}

func entry(typeURL string, s statusv3.ConfigStatus, version string, at *timestamppb.Timestamp) *statusv3.ClientConfig_GenericXdsConfig {
	return &statusv3.ClientConfig_GenericXdsConfig{TypeUrl: typeURL, ConfigStatus: s, VersionInfo: version, LastUpdated: at}
}

// replicas are two replicas' answers: a synced sidecar with NDS, a router
// that rejected endpoints, a sidecar waiting for its listeners (and one
// with resources listed, as a tool asking with contents gets them).
func replicas() []Row {
	nack := entry(resource.EndpointType, statusv3.ConfigStatus_ERROR, "network=network1@x-7", ago(3*time.Second))
	nack.ErrorState = &adminv3.UpdateFailureState{Details: "endpoint weight 0"}
	withRes := entry(resource.ClusterType, statusv3.ConfigStatus_SYNCED, "cluster=cluster2@x-3", ago(90*time.Minute))
	withRes.Name, withRes.XdsConfig = "outbound|5000||helloworld.sample.svc.cluster.local", &anypb.Any{}
	// Horizon's sidecar shows its Envoy build; an Istio gateway its
	// ISTIO_VERSION.
	sleep := testNode("sidecar~10.51.0.7~sleep-5d7.sample~sample.svc.cluster.local", "cluster1", "network1",
		&corev3.Locality{Region: "region1", Zone: "zone1"})
	sleep.UserAgentName, sleep.UserAgentVersionType = "envoy", &corev3.Node_UserAgentBuildVersion{
		UserAgentBuildVersion: &corev3.BuildVersion{Version: &typev3.SemanticVersion{MajorNumber: 1, MinorNumber: 40}}}
	gw := testNode("router~10.51.0.9~eastwest.istio-system~istio-system.svc.cluster.local", "cluster1", "network1", nil)
	gw.Metadata.Fields["ISTIO_VERSION"] = structpb.NewStringValue("1.28.0")
	r1 := Rows("horizon-7d9f-abcde", &statusv3.ClientStatusResponse{Config: []*statusv3.ClientConfig{
		{Node: sleep,
			GenericXdsConfigs: []*statusv3.ClientConfig_GenericXdsConfig{
				entry(resource.ClusterType, statusv3.ConfigStatus_SYNCED, "cluster=cluster1@x-1", ago(2*time.Minute)),
				entry(resource.EndpointType, statusv3.ConfigStatus_SYNCED, "network=network1@x-4", ago(5*time.Second)),
				entry(resource.ListenerType, statusv3.ConfigStatus_SYNCED, "cluster=cluster1@x-2", ago(2*time.Minute)),
				entry(resource.RouteType, statusv3.ConfigStatus_SYNCED, "cluster=cluster1@x-3", ago(2*time.Minute)),
				entry(translate.NameTableType, statusv3.ConfigStatus_SYNCED, "cluster=cluster1@x-5", ago(26*time.Hour)),
			}},
		{Node: gw,
			GenericXdsConfigs: []*statusv3.ClientConfig_GenericXdsConfig{
				entry(resource.ClusterType, statusv3.ConfigStatus_SYNCED, "router@x-1", ago(time.Minute)),
				nack,
				entry(resource.ListenerType, statusv3.ConfigStatus_SYNCED, "router@x-2", ago(time.Minute)),
			}},
	}})
	r2 := Rows("horizon-7d9f-fghij", &statusv3.ClientStatusResponse{Config: []*statusv3.ClientConfig{
		{Node: testNode("sidecar~10.52.0.4~helloworld-v2-6c4.sample~sample.svc.cluster.local", "cluster2", "network2",
			&corev3.Locality{Region: "region2", Zone: "zone2", SubZone: "rack1"}),
			GenericXdsConfigs: []*statusv3.ClientConfig_GenericXdsConfig{
				withRes,
				entry(resource.ListenerType, statusv3.ConfigStatus_STALE, "cluster=cluster2@x-4", ago(40*time.Second)),
				entry(resource.RouteType, statusv3.ConfigStatus_NOT_SENT, "", nil),
			}},
	}})
	rows := append(r1, r2...)
	Sort(rows)
	return rows
}

// The table, json and yaml renderings of the same rows, against golden
// files (go test ./internal/proxystatus/ -update rewrites them).
func TestRenderGolden(t *testing.T) {
	rows := replicas()
	for _, format := range []string{"table", "json", "yaml"} {
		var b bytes.Buffer
		if err := Render(&b, format, rows, now); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", "status."+format+".golden")
		if *update {
			if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if b.String() != string(want) {
			t.Errorf("%s output differs from %s (-update rewrites it):\n%s", format, path, b.String())
		}
	}
}

func TestRowsReadTheNode(t *testing.T) {
	rows := replicas()
	if len(rows) != 3 {
		t.Fatalf("rows: %+v", rows)
	}
	router, sleep, v2 := rows[0], rows[1], rows[2]
	if router.Role != "router" || router.Locality != "" || router.Types["eds"].Status != NACKed || router.Types["eds"].Error != "endpoint weight 0" {
		t.Errorf("router: %+v", router)
	}
	if sleep.Role != "sidecar" || sleep.Cluster != "cluster1" || sleep.Network != "network1" || sleep.Locality != "region1/zone1" ||
		sleep.Types["nds"].Status != Synced || sleep.Types["cds"].Version != "cluster=cluster1@x-1" {
		t.Errorf("sleep: %+v", sleep)
	}
	if v2.Locality != "region2/zone2/rack1" || v2.Types["cds"].Version != "" || v2.Types["lds"].Status != Stale || v2.Types["rds"].Status != NotSent {
		t.Errorf("helloworld-v2: %+v", v2)
	}
	var b bytes.Buffer
	if err := Render(&b, "xml", rows, now); err == nil || !strings.Contains(err.Error(), "xml") {
		t.Errorf("an unknown format: %v", err)
	}
	b.Reset()
	if err := Render(&b, "json", nil, now); err != nil || b.String() != "[]\n" {
		t.Errorf("no proxies as json: %q, %v", b.String(), err)
	}
}
