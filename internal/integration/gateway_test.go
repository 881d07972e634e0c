//go:build integration

package integration

import (
	"os"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/structpb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"

	"github.com/horizonmesh/horizon/internal/testing/adsclient"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
)

// applyIstioCRDs installs the CRDs istio.io/api ships.
func applyIstioCRDs(t *testing.T, c *kubeharness.Cluster) {
	t.Helper()
	path := moduleFile(t, "istio.io/api", "kubernetes/customresourcedefinitions.gen.yaml")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dyn, err := dynamic.NewForConfig(c.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	crds := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		var obj unstructured.Unstructured
		if err := dec.Decode(&obj.Object); err != nil {
			break
		}
		if len(obj.Object) == 0 {
			continue
		}
		_, err := crds.Create(ctx, &obj, metav1.CreateOptions{})
		must(t, err)
	}
	waitFor(t, 30*time.Second, "the Gateway CRD to be served", func() bool {
		_, err := c.Client.Discovery().ServerResourcesForGroupVersion("networking.istio.io/v1alpha3")
		return err == nil
	})
}

// TestGatewayResourceConfiguresRemoteGateways: the walkthrough's
// helloworld-gateway, created (as v1alpha3) in cluster1, configures the
// gateway proxies of both networks: an AUTO_PASSTHROUGH listener on 443
// matching helloworld's SNI, whose cluster holds only that network's pods.
func TestGatewayResourceConfiguresRemoteGateways(t *testing.T) {
	m := startMesh(t)
	applyIstioCRDs(t, m.c1)
	dyn, err := dynamic.NewForConfig(m.c1.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	gw := &unstructured.Unstructured{}
	must(t, utilyaml.Unmarshal([]byte(`apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {name: helloworld-gateway, namespace: sample}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: tls, protocol: TLS}
    tls: {mode: AUTO_PASSTHROUGH}
    hosts: ["*"]
`), &gw.Object))
	_, err = dyn.Resource(schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1alpha3", Resource: "gateways"}).
		Namespace("sample").Create(ctx, gw, metav1.CreateOptions{})
	must(t, err)
	m.joinCluster2(t, "iks")
	d := startDiscovery(t, m.c1, nil, true)

	router := func(network, cluster string) *adsclient.Client {
		node := adsclient.Node("router~203.0.113.9~istio-ingressgateway.istio-system", network, cluster)
		node.Metadata.Fields["LABELS"] = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			"istio": structpb.NewStringValue("ingressgateway")}})
		c, err := adsclient.Dial(d.xds, node)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		_ = c.Request(resource.ListenerType, nil, "", "", "")
		return c
	}
	const sni = "outbound_.5000_._.helloworld.sample.svc.cluster.local"
	for _, tt := range []struct{ network, cluster, pod string }{{"network2", "cluster2", "10.2.0.5:5000"}, {"network1", "cluster1", "10.1.0.5:5000"}} {
		c := router(tt.network, tt.cluster)
		r, err := c.Wait(resource.ListenerType, 10*time.Second, func(*discovery.DiscoveryResponse) bool { return true })
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Resources) != 1 {
			t.Fatalf("%s gateway listeners: %d", tt.network, len(r.Resources))
		}
		l := &listenerv3.Listener{}
		must(t, r.Resources[0].UnmarshalTo(l))
		var snis []string
		for _, fc := range l.FilterChains {
			snis = append(snis, fc.FilterChainMatch.ServerNames...)
			if fc.TransportSocket != nil {
				t.Error("passthrough chain with a TLS context")
			}
		}
		if l.Address.GetSocketAddress().GetPortValue() != 443 || !strings.Contains(strings.Join(snis, " "), sni) {
			t.Errorf("%s: listener on %v with SNIs %v", tt.network, l.Address, snis)
		}
		_ = c.Request(resource.EndpointType, []string{sni}, "", "", "")
		_, err = c.Wait(resource.EndpointType, 10*time.Second, func(r *discovery.DiscoveryResponse) bool {
			clas, _ := adsclient.LoadAssignments(r)
			w := adsclient.Weights(clas[sni])
			return len(w) == 1 && w[tt.pod] > 0
		})
		if err != nil {
			t.Errorf("%s gateway's %s endpoints: want only %s: %v", tt.network, sni, tt.pod, err)
		}
	}
}
