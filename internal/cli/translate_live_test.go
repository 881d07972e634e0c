package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/internal/controlplane"
	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source"
	"github.com/horizonmesh/horizon/internal/source/istio"
	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/source/manifest"
	"github.com/horizonmesh/horizon/internal/source/meshnetworks"
	"github.com/horizonmesh/horizon/internal/testing/adsclient"
	"github.com/horizonmesh/horizon/internal/testing/cptest"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
	"github.com/horizonmesh/horizon/internal/xds/render"
)

const crossNetworkGateway = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: cross-network-gateway, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 15443, name: tls, protocol: TLS}
    tls: {mode: AUTO_PASSTHROUGH}
    hosts: ["*.local"]
`

// What `horizon translate` prints is what discovery serves: for a sidecar
// (helloworld v1's, with its inbound port) and for cluster2's gateway, every
// type, compared resource by resource with what an ADS client receives
// from a control plane fed the same files.
func TestTranslateIsWhatDiscoveryServes(t *testing.T) {
	gwFile := writeFile(t, t.TempDir(), "gateways.yaml", crossNetworkGateway)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cp := controlplane.New(controlplane.Options{Logger: testkit.Logger(), Debounce: time.Millisecond})
	for id, dir := range map[string]string{"cluster1": "cluster1", "remote_kubecfg": "remote"} {
		store, diags := manifest.Load(filepath.Join(walkthrough, dir))
		if err := diags.Err(); err != nil {
			t.Fatal(err)
		}
		cp.SetCluster(source.Cluster{ID: model.ClusterID(id), Origin: "test", Local: id == "cluster1", Source: &kube.Source{Store: store, IsSynced: func() bool { return true }}})
	}
	nets, diags := meshnetworks.ParseFile(walkthrough + "/meshnetworks.yaml")
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	cp.SetMeshNetworks(nets, nil)
	gws, diags := istio.LoadGatewaysFile(gwFile)
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	cp.SetIstioGateways(gws)
	go cp.Run(ctx)
	addr := cptest.ServeXDS(t, cp)
	testkit.WaitFor(t, "the control plane ready with the walkthrough's gateway", func() bool {
		return cp.Ready() && cp.Mesh() != nil && len(cp.Mesh().Gateways()) > 0
	})

	// cluster1 is on no network in the walkthrough.
	sidecar := adsclient.Node("sidecar~10.10.0.5~hw.sample~sample.svc.cluster.local", "", "cluster1")
	sidecar.Metadata.Fields["INSTANCE_IPS"] = structpb.NewStringValue("10.10.0.5")
	router := adsclient.Node("router~10.100.0.20~gw.istio-system~istio-system.svc.cluster.local", "network2", "remote_kubecfg")
	router.Metadata.Fields["LABELS"] = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
		"istio": structpb.NewStringValue("ingressgateway")}})
	for _, c := range []struct {
		name  string
		node  *corev3.Node
		args  []string
		types map[string]string // type URL → translate's key in --type all
	}{
		{"sidecar", sidecar, []string{"--proxy-network", "", "--proxy-cluster", "cluster1", "--proxy-ip", "10.10.0.5"},
			map[string]string{resource.ClusterType: "clusters", resource.EndpointType: "endpoints", resource.ListenerType: "listeners", resource.RouteType: "routes"}},
		{"router", router, []string{"--role", "router", "--proxy-network", "network2", "--proxy-cluster", "remote_kubecfg", "--label", "istio=ingressgateway", "--gateways", gwFile},
			map[string]string{resource.ClusterType: "clusters", resource.EndpointType: "endpoints", resource.ListenerType: "listeners"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := run(t, walkthroughArgs(append(c.args, "--type", "all")...)...)
			if code != 0 {
				t.Fatalf("translate: exit %d: %s", code, errOut)
			}
			var printed map[string][]json.RawMessage
			if err := json.Unmarshal([]byte(out), &printed); err != nil {
				t.Fatal(err)
			}
			if len(printed) != len(c.types) {
				t.Errorf("translate printed types %v, want %v", slices.Sorted(maps.Keys(printed)), c.types)
			}
			client, err := adsclient.Dial(addr, c.node)
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			for typeURL, key := range c.types {
				if err := client.Request(typeURL, nil, "", "", ""); err != nil {
					t.Fatal(err)
				}
				r, err := client.Wait(typeURL, 10*time.Second, func(*discovery.DiscoveryResponse) bool { return true })
				if err != nil {
					t.Fatalf("%s: %v", key, err)
				}
				served := map[string]string{}
				for _, a := range r.Resources {
					m, err := a.UnmarshalNew()
					if err != nil {
						t.Fatal(err)
					}
					raw, err := render.Resource(m)
					if err != nil {
						t.Fatal(err)
					}
					if served[resourceName(m)], err = compactJSON(raw); err != nil {
						t.Fatal(err)
					}
				}
				if len(served) == 0 || len(served) != len(printed[key]) {
					t.Errorf("%s: discovery served %d, translate printed %d", key, len(served), len(printed[key]))
				}
				for _, raw := range printed[key] {
					var named struct {
						Name        string `json:"name"`
						ClusterName string `json:"clusterName"`
					}
					_ = json.Unmarshal(raw, &named)
					name := named.Name + named.ClusterName
					compact, err := compactJSON(raw)
					if err != nil {
						t.Fatal(err)
					}
					if served[name] != compact {
						t.Errorf("%s %s differs:\ntranslate: %s\nserved:    %s", key, name, compact, served[name])
					}
				}
			}
		})
	}
}

// compactJSON is raw as render.Resource writes it (compact, protojson's
// field order).
func compactJSON(raw json.RawMessage) (string, error) {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return "", err
	}
	return b.String(), nil
}
