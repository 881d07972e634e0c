// Package adsclient is a small ADS client for tests: it speaks real gRPC to
// the xDS server, as Envoy would, and records every response it receives.
package adsclient

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
)

// Node returns an Envoy node with Horizon's metadata.
func Node(id, network, cluster string) *corev3.Node {
	return NodeWithIdentity(id, network, cluster, "", "")
}

// NodeWithIdentity is Node with the NAMESPACE and SERVICE_ACCOUNT metadata
// the secure port checks against the client certificate.
func NodeWithIdentity(id, network, cluster, namespace, serviceAccount string) *corev3.Node {
	f := map[string]*structpb.Value{}
	if namespace != "" {
		f["NAMESPACE"] = structpb.NewStringValue(namespace)
	}
	if serviceAccount != "" {
		f["SERVICE_ACCOUNT"] = structpb.NewStringValue(serviceAccount)
	}
	if network != "" {
		f["NETWORK"] = structpb.NewStringValue(network)
	}
	if cluster != "" {
		f["CLUSTER_ID"] = structpb.NewStringValue(cluster)
	}
	return &corev3.Node{Id: id, Metadata: &structpb.Struct{Fields: f}}
}

// Client is one SotW ADS stream.
type Client struct {
	Node   *corev3.Node
	conn   *grpc.ClientConn
	stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	cancel context.CancelFunc

	// ManualACK stops the client acknowledging each response as Envoy
	// would (set it before the first request, to send NACKs by hand).
	ManualACK bool

	mu        sync.Mutex
	cond      *sync.Cond
	responses []*discovery.DiscoveryResponse
	names     map[string][]string // last requested names per type
	err       error
	sendMu    sync.Mutex
}

// Dial opens a plaintext ADS stream to addr.
func Dial(addr string, node *corev3.Node) (*Client, error) {
	return DialWith(addr, node, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// DialWith opens an ADS stream to addr with the given dial options (TLS).
func DialWith(addr string, node *corev3.Node, opts ...grpc.DialOption) (*Client, error) {
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		cancel()
		conn.Close()
		return nil, err
	}
	c := &Client{Node: node, conn: conn, stream: stream, cancel: cancel, names: map[string][]string{}}
	c.cond = sync.NewCond(&c.mu)
	go c.recv()
	return c, nil
}

func (c *Client) recv() {
	for {
		r, err := c.stream.Recv()
		c.mu.Lock()
		if err != nil {
			c.err = err
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		c.responses = append(c.responses, r)
		names := c.names[r.GetTypeUrl()]
		c.cond.Broadcast()
		c.mu.Unlock()
		if !c.ManualACK {
			// ACK as Envoy does; the server sends nothing more until then.
			_ = c.send(&discovery.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResourceNames: names,
				VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()})
		}
	}
}

func (c *Client) send(req *discovery.DiscoveryRequest) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	return c.stream.Send(req)
}

// Close ends the stream.
func (c *Client) Close() {
	c.cancel()
	c.conn.Close()
}

// Request sends a request (the node goes along every time: allowed, and it
// keeps tests simple) and remembers names for the ACKs of that type.
func (c *Client) Request(typeURL string, names []string, version, nonce string, nackDetail string) error {
	req := &discovery.DiscoveryRequest{Node: c.Node, TypeUrl: typeURL, ResourceNames: names, VersionInfo: version, ResponseNonce: nonce}
	if nackDetail != "" {
		req.ErrorDetail = &statusProto{Code: 3, Message: nackDetail}
	}
	c.mu.Lock()
	c.names[typeURL] = names
	c.mu.Unlock()
	return c.send(req)
}

// Responses returns a copy of every response received so far.
func (c *Client) Responses() []*discovery.DiscoveryResponse {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*discovery.DiscoveryResponse(nil), c.responses...)
}

// Err is the stream's error, if it ended.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Wait waits until a response of typeURL after the first `after` responses
// of that type satisfies ok, or the timeout passes.
func (c *Client) Wait(typeURL string, timeout time.Duration, ok func(*discovery.DiscoveryResponse) bool) (*discovery.DiscoveryResponse, error) {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() { c.mu.Lock(); c.cond.Broadcast(); c.mu.Unlock() })
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for i := len(c.responses) - 1; i >= 0; i-- {
			r := c.responses[i]
			if r.GetTypeUrl() == typeURL {
				if ok(r) {
					return r, nil
				}
				break // only the latest of the type counts
			}
		}
		if c.err != nil {
			return nil, c.err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("timed out after %s waiting for %s", timeout, typeURL)
		}
		c.cond.Wait()
	}
}

// Count returns how many responses of typeURL arrived.
func (c *Client) Count(typeURL string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.responses {
		if r.GetTypeUrl() == typeURL {
			n++
		}
	}
	return n
}
