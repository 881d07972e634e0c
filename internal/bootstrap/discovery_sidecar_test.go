package bootstrap

import (
	"slices"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/internal/testing/adsclient"
)

func TestSidecarListenersRoutesAndInboundClusters(t *testing.T) {
	env := startDiscovery(t)
	node := adsclient.Node("helloworld-v1.sample", "", "cluster1")
	node.Metadata.Fields["INSTANCE_IPS"] = structpb.NewStringValue("10.10.0.5")
	c, err := adsclient.Dial(env.xds, node)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, typ := range []string{resource.ClusterType, resource.ListenerType} {
		_ = c.Request(typ, nil, "", "", "")
	}
	_ = c.Request(resource.RouteType, []string{"5000"}, "", "", "")
	any := func(*discovery.DiscoveryResponse) bool { return true }

	r, err := c.Wait(resource.ListenerType, 5*time.Second, any)
	if err != nil {
		t.Fatal(err)
	}
	var inboundPorts []uint32
	names := map[string]bool{}
	for _, a := range r.Resources {
		l := &listenerv3.Listener{}
		if err := a.UnmarshalTo(l); err != nil {
			t.Fatal(err)
		}
		names[l.Name] = true
		if l.Name == "virtualInbound" {
			// PERMISSIVE, the default: mTLS terminated on TLS offering
			// the mesh ALPN; other TLS and plaintext without a TLS context.
			for _, fc := range l.FilterChains {
				m := fc.FilterChainMatch
				inboundPorts = append(inboundPorts, m.GetDestinationPort().GetValue())
				if mtls := m.TransportProtocol == "tls" && len(m.ApplicationProtocols) > 0; mtls != (fc.TransportSocket != nil) {
					t.Errorf("inbound chain %s: TLS context %v, match %v", fc.Name, fc.TransportSocket != nil, m)
				}
			}
		}
	}
	if !names["virtualOutbound"] || !names["virtualInbound"] || !slices.Equal(inboundPorts, []uint32{5000, 5000, 5000}) {
		t.Errorf("listeners %v, inbound chains' ports %v (the workload at 10.10.0.5 serves 5000: mTLS, TLS passthrough, plaintext)", names, inboundPorts)
	}

	r, err = c.Wait(resource.ClusterType, 5*time.Second, any)
	if err != nil {
		t.Fatal(err)
	}
	clusters, _ := adsclient.Clusters(r)
	for _, want := range []string{"inbound|5000||", "PassthroughCluster", hwCluster} {
		if clusters[want] == nil {
			t.Errorf("CDS lacks %s", want)
		}
	}

	r, err = c.Wait(resource.RouteType, 5*time.Second, any)
	if err != nil {
		t.Fatal(err)
	}
	rc := &routev3.RouteConfiguration{}
	if err := r.Resources[0].UnmarshalTo(rc); err != nil {
		t.Fatal(err)
	}
	var domains []string
	for _, vh := range rc.VirtualHosts {
		domains = append(domains, vh.Domains...)
	}
	for _, want := range []string{"helloworld.sample", "helloworld.sample.svc.cluster.local:5000", "10.96.0.50", "10.96.0.50:5000"} {
		if !slices.Contains(domains, want) {
			t.Errorf("route 5000 lacks domain %s (cluster1's ClusterIP): %v", want, domains)
		}
	}
}
