package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/internal/ca/catest"
	"github.com/horizonmesh/horizon/internal/testing/adsclient"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// The identity rule of the TLS xDS port (docs/architecture.md, "Identity on
// the TLS port"): every request of a stream is authorised against that
// stream's own client certificate — the first one and every later one, on
// state-of-the-world and delta streams alike, whatever other streams are
// open.

const hwEDS = "outbound|5000||helloworld.sample.svc.cluster.local"

// startIdentityDiscovery is startSecureDiscovery with a fresh mesh CA.
func startIdentityDiscovery(t *testing.T) *secureDiscovery {
	return startIdentityDiscoveryWith(t, false)
}

// startIdentityDiscoveryWith also serves the plaintext xDS port when asked.
func startIdentityDiscoveryWith(t *testing.T, plaintext bool) *secureDiscovery {
	t.Helper()
	files, err := catest.New("mesh")
	if err != nil {
		t.Fatal(err)
	}
	return startSecureDiscovery(t, files, plaintext)
}

// openStreams counts the tracker's streams of one kind.
func (d *secureDiscovery) openStreams(delta bool) int {
	n := 0
	for _, s := range d.cp.Tracker.Streams() {
		if s.Delta == delta {
			n++
		}
	}
	return n
}

func sleepNode(ns, sa string) *corev3.Node {
	return adsclient.NodeWithIdentity("sidecar~10.1.0.9~p."+ns+"~"+ns+".svc.cluster.local", "", "cluster1", ns, sa)
}

// sotw opens a state-of-the-world stream with a certificate for certNS/certSA
// (none when certNS is "").
func (d *secureDiscovery) sotw(t *testing.T, certNS, certSA string, node *corev3.Node) *adsclient.Client {
	t.Helper()
	c, err := adsclient.DialWith(d.addr, node, workloadTLS(t, d.ca, certNS, certSA))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// deltaClient is one delta ADS stream; every response and the stream's end
// arrive on channels.
type deltaClient struct {
	stream    discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	responses chan *discovery.DeltaDiscoveryResponse
	done      chan error
	sendMu    sync.Mutex // gRPC allows one sender at a time
}

func (c *deltaClient) send(r *discovery.DeltaDiscoveryRequest) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	return c.stream.Send(r)
}

func (d *secureDiscovery) delta(t *testing.T, certNS, certSA string) *deltaClient {
	t.Helper()
	conn, err := grpc.NewClient(d.addr, workloadTLS(t, d.ca, certNS, certSA))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); conn.Close() })
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &deltaClient{stream: stream, responses: make(chan *discovery.DeltaDiscoveryResponse, 100), done: make(chan error, 1)}
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				c.done <- err
				return
			}
			c.responses <- r
			// ACK, as Envoy does.
			_ = c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: r.TypeUrl, ResponseNonce: r.Nonce})
		}
	}()
	return c
}

// request sends a request. A send that fails with io.EOF means the server
// has ended the stream (a stream refused when it opens may be ended before
// its first request): next then returns how it ended.
func (c *deltaClient) request(t *testing.T, node *corev3.Node, typeURL string, names ...string) {
	t.Helper()
	if err := c.send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: typeURL, ResourceNamesSubscribe: names}); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
}

// next waits for the stream's next event: a response of typeURL (nil
// error), or the stream's end (its error).
func (c *deltaClient) next(t *testing.T, typeURL string) (*discovery.DeltaDiscoveryResponse, error) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case r := <-c.responses:
			if r.TypeUrl == typeURL {
				return r, nil
			}
		case err := <-c.done:
			return nil, err
		case <-timeout:
			t.Fatalf("no %s response and no error in 5s", typeURL)
			return nil, nil
		}
	}
}

func anyResponse(*discovery.DiscoveryResponse) bool { return true }

// TestSecurePortRefusesIdentityMismatchOnFirstRequest: a stream whose client
// certificate names another identity than its node gets PermissionDenied
// (one with none, Unauthenticated) and no resources, on state-of-the-world
// and delta.
func TestSecurePortRefusesIdentityMismatchOnFirstRequest(t *testing.T) {
	d := startIdentityDiscovery(t)
	for _, tt := range []struct {
		name           string
		certNS, certSA string
		node           *corev3.Node
		code           codes.Code
	}{
		{"matching identity (control)", "sample", "sleep", sleepNode("sample", "sleep"), codes.OK},
		{"node claims another service account", "sample", "sleep", sleepNode("sample", "helloworld"), codes.PermissionDenied},
		{"node claims another namespace", "sample", "sleep", sleepNode("istio-system", "sleep"), codes.PermissionDenied},
		{"node claims no identity", "sample", "sleep", adsclient.Node("sidecar~10.1.0.9~p~x", "", "cluster1"), codes.PermissionDenied},
		// Refused when it opens, before it takes a stream slot.
		{"no client certificate", "", "", sleepNode("sample", "sleep"), codes.Unauthenticated},
	} {
		t.Run("sotw/"+tt.name, func(t *testing.T) {
			c := d.sotw(t, tt.certNS, tt.certSA, tt.node)
			_ = c.Request(resource.ClusterType, nil, "", "", "")
			_, err := c.Wait(resource.ClusterType, 5*time.Second, anyResponse)
			if status.Code(err) != tt.code {
				t.Errorf("got %v, want %v", err, tt.code)
			}
			if tt.code != codes.OK && c.Count(resource.ClusterType) != 0 {
				t.Errorf("a refused stream received %d CDS responses", c.Count(resource.ClusterType))
			}
		})
		t.Run("delta/"+tt.name, func(t *testing.T) {
			c := d.delta(t, tt.certNS, tt.certSA)
			c.request(t, tt.node, resource.ClusterType)
			r, err := c.next(t, resource.ClusterType)
			if status.Code(err) != tt.code {
				t.Errorf("got %v (response with %d resources), want %v", err, len(r.GetResources()), tt.code)
			}
		})
	}
}

// TestSecurePortRefusesIdentityChangeLaterOnTheSameStream: a stream whose
// first request matches its certificate, and which then sends another node
// (another namespace or service account) on a later request of the SAME
// stream, gets PermissionDenied — not the other identity's config.
func TestSecurePortRefusesIdentityChangeLaterOnTheSameStream(t *testing.T) {
	d := startIdentityDiscovery(t)
	for _, tt := range []struct {
		name  string
		later *corev3.Node
		code  codes.Code
	}{
		{"same node again (control)", sleepNode("sample", "sleep"), codes.OK},
		{"later node with another service account", sleepNode("sample", "helloworld"), codes.PermissionDenied},
		{"later node with another namespace", sleepNode("istio-system", "sleep"), codes.PermissionDenied},
	} {
		t.Run("sotw/"+tt.name, func(t *testing.T) {
			c := d.sotw(t, "sample", "sleep", sleepNode("sample", "sleep"))
			_ = c.Request(resource.ClusterType, nil, "", "", "")
			if _, err := c.Wait(resource.ClusterType, 5*time.Second, anyResponse); err != nil {
				t.Fatalf("first request (matching): %v", err)
			}
			c.Node = tt.later
			_ = c.Request(resource.EndpointType, []string{hwEDS}, "", "", "")
			r, err := c.Wait(resource.EndpointType, 5*time.Second, anyResponse)
			if status.Code(err) != tt.code {
				t.Errorf("later request: got %v (EDS with %d resources), want %v", err, len(r.GetResources()), tt.code)
			}
		})
		t.Run("delta/"+tt.name, func(t *testing.T) {
			c := d.delta(t, "sample", "sleep")
			c.request(t, sleepNode("sample", "sleep"), resource.ClusterType)
			if _, err := c.next(t, resource.ClusterType); err != nil {
				t.Fatalf("first request (matching): %v", err)
			}
			c.request(t, tt.later, resource.EndpointType, hwEDS)
			r, err := c.next(t, resource.EndpointType)
			if status.Code(err) != tt.code {
				t.Errorf("later request: got %v (EDS with %d resources), want %v", err, len(r.GetResources()), tt.code)
			}
		})
	}
}

// TestSecurePortNoCertDeltaStreamBesideVerifiedSotWStream: state-of-the-world
// and delta streams are numbered by separate counters, so each of these is
// stream 1 of its kind. A client with another workload's certificate on a
// delta stream, claiming the verified client's node, must be refused and
// get nothing, whatever the verified client's SotW stream has done; and the
// verified client must keep being served. (A client without any
// certificate is refused when its stream opens.)
func TestSecurePortNoCertDeltaStreamBesideVerifiedSotWStream(t *testing.T) {
	for _, order := range []string{"delta opened first", "sotw opened first"} {
		t.Run(order, func(t *testing.T) {
			d := startIdentityDiscovery(t)
			verifiedNode := sleepNode("sample", "sleep")
			var attacker *deltaClient
			if order == "delta opened first" {
				attacker = d.delta(t, "evil", "evil")
				testkit.WaitFor(t, "the delta stream to open", func() bool { return d.openStreams(true) == 1 })
			}
			verified := d.sotw(t, "sample", "sleep", verifiedNode)
			_ = verified.Request(resource.ClusterType, nil, "", "", "")
			if _, err := verified.Wait(resource.ClusterType, 5*time.Second, anyResponse); err != nil {
				t.Fatalf("verified SotW client: %v", err)
			}
			if attacker == nil {
				attacker = d.delta(t, "evil", "evil")
			}
			// The server may end the stream after the first request: a send
			// error (EOF) then is the refusal, seen below.
			_ = attacker.send(&discovery.DeltaDiscoveryRequest{Node: verifiedNode, TypeUrl: resource.ClusterType})
			_ = attacker.send(&discovery.DeltaDiscoveryRequest{Node: verifiedNode, TypeUrl: resource.EndpointType,
				ResourceNamesSubscribe: []string{hwEDS}})
			r, err := attacker.next(t, resource.ClusterType)
			if c := status.Code(err); c != codes.PermissionDenied && c != codes.Unauthenticated {
				t.Errorf("client with another workload's certificate: got %v (CDS with %d resources), want PermissionDenied", err, len(r.GetResources()))
			}
			for len(attacker.responses) > 0 {
				r := <-attacker.responses
				t.Errorf("client with another workload's certificate received %s with %d resources", r.TypeUrl, len(r.Resources))
			}
			// The verified client is unaffected by the refused stream.
			_ = verified.Request(resource.EndpointType, []string{hwEDS}, "", "", "")
			if _, err := verified.Wait(resource.EndpointType, 5*time.Second, func(r *discovery.DiscoveryResponse) bool {
				return len(r.Resources) == 1
			}); err != nil {
				t.Errorf("verified client after the refused delta stream: %v", err)
			}
			if got := fmt.Sprint(verified.Err()); verified.Err() != nil {
				t.Errorf("verified stream ended: %s", got)
			}
		})
	}
}

// TestSecurePortStreamsApartFromPlaintextPortStreams: the plaintext and the
// TLS port are two xDS servers, each numbering its streams from 1, sharing
// one tracker. A stream of one port must neither lend its (absent) identity
// check to, nor end, the same-numbered stream of the other.
func TestSecurePortStreamsApartFromPlaintextPortStreams(t *testing.T) {
	t.Run("another workload's TLS stream beside a plaintext stream", func(t *testing.T) {
		d := startIdentityDiscoveryWith(t, true)
		attacker := d.sotw(t, "evil", "evil", sleepNode("sample", "sleep")) // TLS stream 1, another identity
		testkit.WaitFor(t, "the TLS stream to open", func() bool { return d.openStreams(false) == 1 })
		plain, err := adsclient.Dial(d.xds, sleepNode("sample", "sleep")) // plaintext stream 1
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		_ = plain.Request(resource.ClusterType, nil, "", "", "")
		if _, err := plain.Wait(resource.ClusterType, 5*time.Second, anyResponse); err != nil {
			t.Fatalf("plaintext client: %v", err)
		}
		_ = attacker.Request(resource.ClusterType, nil, "", "", "")
		r, err := attacker.Wait(resource.ClusterType, 5*time.Second, anyResponse)
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("TLS client with another workload's certificate: got %v (CDS with %d resources), want PermissionDenied", err, len(r.GetResources()))
		}
	})
	t.Run("verified TLS stream outlives a plaintext stream", func(t *testing.T) {
		d := startIdentityDiscoveryWith(t, true)
		verified := d.sotw(t, "sample", "sleep", sleepNode("sample", "sleep"))
		_ = verified.Request(resource.ClusterType, nil, "", "", "")
		if _, err := verified.Wait(resource.ClusterType, 5*time.Second, anyResponse); err != nil {
			t.Fatalf("verified client: %v", err)
		}
		plain, err := adsclient.Dial(d.xds, adsclient.Node("sidecar~10.1.0.8~other~sample.svc.cluster.local", "", "cluster1"))
		if err != nil {
			t.Fatal(err)
		}
		_ = plain.Request(resource.ClusterType, nil, "", "", "")
		if _, err := plain.Wait(resource.ClusterType, 5*time.Second, anyResponse); err != nil {
			t.Fatalf("plaintext client: %v", err)
		}
		plain.Close()
		testkit.WaitFor(t, "the plaintext stream to close", func() bool { return d.openStreams(false) <= 1 })
		_ = verified.Request(resource.EndpointType, []string{hwEDS}, "", "", "")
		if _, err := verified.Wait(resource.EndpointType, 5*time.Second, func(r *discovery.DiscoveryResponse) bool { return len(r.Resources) == 1 }); err != nil {
			t.Errorf("verified client after a plaintext stream of the same number closed: %v", err)
		}
	})
}
