package server

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestProxyFromNode(t *testing.T) {
	node := func(id string, meta map[string]*structpb.Value) *corev3.Node {
		return &corev3.Node{Id: id, Metadata: &structpb.Struct{Fields: meta}}
	}
	str := structpb.NewStringValue
	tests := []struct {
		name    string
		node    *corev3.Node
		want    Proxy
		wantErr string
	}{
		{"full", node("a", map[string]*structpb.Value{MetaNetwork: str("network2"), MetaClusterID: str("remote_kubecfg")}),
			Proxy{ID: "a", Network: "network2", Cluster: "remote_kubecfg"}, ""},
		{"no metadata: no network", &corev3.Node{Id: "b"}, Proxy{ID: "b"}, ""},
		{"instance IPs", node("f", map[string]*structpb.Value{MetaInstanceIPs: str("10.0.0.2, 10.0.0.1")}),
			Proxy{ID: "f", IPs: []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.1")}}, ""},
		{"bad instance IP", node("g", map[string]*structpb.Value{MetaInstanceIPs: str("10.0.0.300")}), Proxy{}, "INSTANCE_IPS"},
		{"nil node", nil, Proxy{}, "no node"},
		{"empty id", node("", nil), Proxy{}, "node.id"},
		{"network not a string", node("c", map[string]*structpb.Value{MetaNetwork: structpb.NewNumberValue(2)}), Proxy{}, "must be a string"},
		{"invalid network", node("d", map[string]*structpb.Value{MetaNetwork: str("net/2")}), Proxy{}, "not a valid network"},
		{"invalid cluster", node("e", map[string]*structpb.Value{MetaClusterID: str("a b")}), Proxy{}, "CLUSTER_ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ProxyFromNode(tt.node)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// A stream keeps of a node only what Horizon reads and, for the tools that
// show proxies, its versions, cut: Envoy's build version (not its
// metadata) and a string ISTIO_VERSION.
func TestKeptNodeKeepsVersions(t *testing.T) {
	md, _ := structpb.NewStruct(map[string]any{"NETWORK": "n1", "ISTIO_VERSION": "1.28.0", "POD_NAME": "sleep-1", "ANNOTATIONS": map[string]any{"a": "b"}})
	n := &corev3.Node{Id: "sidecar~x", Metadata: md, UserAgentName: "envoy",
		UserAgentVersionType: &corev3.Node_UserAgentBuildVersion{UserAgentBuildVersion: &corev3.BuildVersion{
			Version:  &typev3.SemanticVersion{MajorNumber: 1, MinorNumber: 40},
			Metadata: md}}}
	kept := KeptNode(n)
	want := &corev3.Node{Id: "sidecar~x", UserAgentName: "envoy",
		UserAgentVersionType: &corev3.Node_UserAgentBuildVersion{UserAgentBuildVersion: &corev3.BuildVersion{
			Version: &typev3.SemanticVersion{MajorNumber: 1, MinorNumber: 40}}},
		Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{"NETWORK": structpb.NewStringValue("n1"), "ISTIO_VERSION": structpb.NewStringValue("1.28.0")}}}
	if !proto.Equal(kept, want) {
		t.Errorf("kept %v\nwant %v", kept, want)
	}
	md.Fields["ISTIO_VERSION"] = structpb.NewStringValue(strings.Repeat("9", 1000))
	n.UserAgentName = strings.Repeat("e", 1000)
	kept = KeptNode(n)
	if v := kept.GetMetadata().GetFields()["ISTIO_VERSION"].GetStringValue(); len(v) != maxVersionLen+3 || len(kept.GetUserAgentName()) != maxVersionLen+3 {
		t.Errorf("long versions kept as %d and %d bytes", len(v), len(kept.GetUserAgentName()))
	}
	md.Fields["ISTIO_VERSION"] = structpb.NewNumberValue(1)
	if _, ok := KeptNode(n).GetMetadata().GetFields()["ISTIO_VERSION"]; ok {
		t.Errorf("a number ISTIO_VERSION was kept")
	}
}
