//go:build bench

package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/internal/testing/adsclient"
)

// A lean SotW ADS client. internal/testing/adsclient keeps every response
// it receives, which at 1,000 clients × 10,000 endpoints × tens of rounds is
// gigabytes in the benchmark's own process (sharing the machine with the
// control plane it measures); this one keeps, per client, only whether it
// holds the state the benchmark waits for. It ACKs every response as Envoy
// does and reads only the load assignment the current change is about.

// tracker is what every client reports to.
type tracker struct {
	bytes      atomic.Int64 // wire bytes of every response received, all clients
	reconnects atomic.Int64 // streams opened again after ending

	mu sync.Mutex
	// The initial state: every client holds CDS and every EDS name with
	// its expected endpoint count.
	initialLeft int
	initialAt   []time.Duration // per client, since initialT0
	initialT0   time.Time
	initialDone chan struct{}
	want        map[string]uint32 // cluster name → expected weight sum
	// The current change: cluster target must reach weight sum targetWant.
	target     string
	targetWant uint32
	t0         time.Time
	at         []time.Duration // per client; 0 until it holds the change
	left       int
	done       chan struct{}
	errs       []error
}

func newTracker(clients int, want map[string]uint32) *tracker {
	return &tracker{initialLeft: clients, initialAt: make([]time.Duration, clients), initialDone: make(chan struct{}),
		want: want, at: make([]time.Duration, clients)}
}

// expect arms the next change; call it before the API write.
func (t *tracker) expect(cluster string, want uint32) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.target, t.targetWant, t.t0 = cluster, want, time.Now()
	t.want[cluster] = want
	clear(t.at)
	t.left = len(t.at)
	t.done = make(chan struct{})
	return t.done
}

// current returns the cluster the current change is about.
func (t *tracker) current() (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.target, t.initialLeft == 0
}

func (t *tracker) observe(client int, cluster string, sum uint32) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if cluster != t.target || sum != t.targetWant || t.at[client] != 0 || t.done == nil {
		return
	}
	t.at[client] = max(now.Sub(t.t0), 1)
	if t.left--; t.left == 0 {
		close(t.done)
	}
}

func (t *tracker) initialHeld(client int) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.initialAt[client] != 0 {
		return
	}
	t.initialAt[client] = max(now.Sub(t.initialT0), 1)
	if t.initialLeft--; t.initialLeft == 0 {
		close(t.initialDone)
	}
}

func (t *tracker) fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.errs) < 10 {
		t.errs = append(t.errs, err)
	}
}

func (t *tracker) firstErr() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.errs) > 0 {
		return t.errs[0]
	}
	return nil
}

// byteCounter is a gRPC stats handler adding up received payload bytes.
type byteCounter struct{ n *atomic.Int64 }

func (b byteCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (b byteCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (b byteCounter) HandleConn(context.Context, stats.ConnStats)                       {}
func (b byteCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	if in, ok := s.(*stats.InPayload); ok {
		b.n.Add(int64(in.WireLength))
	}
}

type client struct {
	idx     int
	t       *tracker
	names   []string // EDS resource names
	node    *corev3.Node
	ctx     context.Context
	delta   bool
	stream  discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient // SotW; guarded by sendMu
	dstream discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient  // delta; guarded by sendMu
	conn    *grpc.ClientConn
	cancel  context.CancelFunc
	sendMu  sync.Mutex

	// Until the initial state is held: what arrived so far.
	mu   sync.Mutex
	cds  bool
	sums map[string]uint32
}

// istioNode is adsclient.Node plus the metadata istiod wants of a sidecar
// (its ID names type~IP~pod.namespace~domain); Horizon ignores the extras.
func istioNode(i int, network string) *corev3.Node {
	ip := fmt.Sprintf("10.250.%d.%d", i/250, i%250+1)
	id := fmt.Sprintf("sidecar~%s~bench-client-%d.bench~bench.svc.cluster.local", ip, i)
	n := adsclient.NodeWithIdentity(id, network, "cluster1", "bench", "default")
	f := n.Metadata.Fields
	f["ISTIO_VERSION"] = structpb.NewStringValue("1.99.0")
	f["INSTANCE_IPS"] = structpb.NewStringValue(ip)
	f["NAME"] = structpb.NewStringValue(fmt.Sprintf("bench-client-%d", i))
	f["LABELS"] = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"app": structpb.NewStringValue("bench-client")}})
	return n
}

// envoyWindow is Envoy's default HTTP/2 stream and connection window.
const envoyWindow = 256 << 20

// dial connects a lean client as node, requesting CDS (all) and EDS for
// names, ACKing every response, reporting to t, reconnecting (counted) when
// its stream ends.
func dial(ctx context.Context, addr string, idx int, node *corev3.Node, names []string, delta bool, t *tracker) (*client, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(byteCounter{&t.bytes}),
		// Envoy's HTTP/2 windows for its xDS cluster default to 256 MiB
		// (initial_stream_window_size, initial_connection_window_size);
		// grpc-go's 64 KiB would make a large response wait for window
		// updates, which no proxy does.
		grpc.WithInitialWindowSize(envoyWindow), grpc.WithInitialConnWindowSize(envoyWindow),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	c := &client{idx: idx, t: t, names: names, delta: delta, ctx: ctx, conn: conn, cancel: cancel, sums: map[string]uint32{}, node: node}
	if err := c.open(); err != nil {
		c.close()
		return nil, err
	}
	go c.recv()
	return c, nil
}

// open starts a stream and requests CDS (all) and EDS (names).
func (c *client) open() error {
	if c.delta {
		stream, err := discovery.NewAggregatedDiscoveryServiceClient(c.conn).DeltaAggregatedResources(c.ctx)
		if err != nil {
			return err
		}
		c.sendMu.Lock()
		defer c.sendMu.Unlock()
		c.dstream = stream
		if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: c.node, TypeUrl: resource.ClusterType}); err != nil {
			return err
		}
		return stream.Send(&discovery.DeltaDiscoveryRequest{Node: c.node, TypeUrl: resource.EndpointType, ResourceNamesSubscribe: c.names})
	}
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(c.conn).StreamAggregatedResources(c.ctx)
	if err != nil {
		return err
	}
	c.sendMu.Lock()
	c.stream = stream
	c.sendMu.Unlock()
	if err := c.send(&discovery.DiscoveryRequest{Node: c.node, TypeUrl: resource.ClusterType}); err != nil {
		return err
	}
	return c.send(&discovery.DiscoveryRequest{Node: c.node, TypeUrl: resource.EndpointType, ResourceNames: c.names})
}

func (c *client) close() { c.cancel(); c.conn.Close() }

func (c *client) send(r *discovery.DiscoveryRequest) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	return c.stream.Send(r)
}

// recv handles responses; a stream that ends (istiod refuses connections
// beyond PILOT_MAX_REQUESTS_PER_SECOND with ResourceExhausted) is opened
// again after a jittered exponential backoff from 500 ms, as Envoy does.
func (c *client) recv() {
	attempt := 0
	for {
		err := c.serve(&attempt)
		if c.ctx.Err() != nil {
			return
		}
		c.t.reconnects.Add(1)
		if _, steady := c.t.current(); steady {
			c.t.fail(fmt.Errorf("client %d: stream ended during the measurement: %w", c.idx, err))
		}
		for {
			backoff := min(500*time.Millisecond<<min(attempt, 6), 30*time.Second)
			attempt++
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(time.Duration(rand.Int64N(int64(backoff)))):
			}
			if c.open() == nil {
				break
			}
		}
	}
}

func (c *client) serve(attempt *int) error {
	if c.delta {
		return c.serveDelta(attempt)
	}
	for {
		r, err := c.stream.Recv()
		if err != nil {
			return err
		}
		*attempt = 0
		var names []string
		switch r.GetTypeUrl() {
		case resource.ClusterType:
			c.onCDS(len(r.GetResources()))
		case resource.EndpointType:
			names = c.names
			values := make([][]byte, len(r.GetResources()))
			for i, a := range r.GetResources() {
				values[i] = a.GetValue()
			}
			c.onEDS(values)
		}
		if err := c.send(&discovery.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResourceNames: names,
			VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}); err != nil {
			return err
		}
	}
}

// onCDS records a CDS response of n clusters: the first non-empty one
// completes the initial config's CDS part.
func (c *client) onCDS(n int) {
	c.mu.Lock()
	if !c.cds && n > 0 {
		c.cds = true
		c.checkInitial()
	}
	c.mu.Unlock()
}

// serveDelta is serve for a delta stream: CDS wildcard, EDS subscribed by
// name, every response ACKed by nonce.
func (c *client) serveDelta(attempt *int) error {
	for {
		r, err := c.dstream.Recv()
		if err != nil {
			return err
		}
		*attempt = 0
		switch r.GetTypeUrl() {
		case resource.ClusterType:
			c.onCDS(len(r.GetResources()))
		case resource.EndpointType:
			values := make([][]byte, len(r.GetResources()))
			for i, res := range r.GetResources() {
				values[i] = res.GetResource().GetValue()
			}
			c.onEDS(values)
		}
		c.sendMu.Lock()
		err = c.dstream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()})
		c.sendMu.Unlock()
		if err != nil {
			return err
		}
	}
}

func (c *client) onEDS(values [][]byte) {
	target, steady := c.t.current()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !steady && c.sums != nil {
		for _, v := range values {
			name, sum, err := weightSum(v, "")
			if err != nil {
				c.t.fail(err)
				return
			}
			c.sums[name] = sum
		}
		c.checkInitial()
		return
	}
	if target == "" {
		return
	}
	for _, v := range values {
		name, sum, err := weightSum(v, target)
		if err != nil {
			c.t.fail(err)
			return
		}
		if name == target {
			c.t.observe(c.idx, name, sum)
			return
		}
	}
}

func (c *client) checkInitial() {
	if c.sums == nil || !c.cds {
		return
	}
	c.t.mu.Lock()
	want := c.t.want
	c.t.mu.Unlock()
	for _, n := range c.names {
		if c.sums[n] != want[n] {
			return
		}
	}
	c.sums = nil
	c.t.initialHeld(c.idx)
}

// weightSum reads a ClusterLoadAssignment's name from its wire bytes and,
// unless only is set and differs, decodes it and adds up its endpoints'
// load-balancing weights (1 when unset): direct endpoints count one each, a
// network gateway counts the endpoints behind it — either way the number of
// endpoints of the service, whichever network the client is on.
func weightSum(b []byte, only string) (string, uint32, error) {
	name, err := claName(b)
	if err != nil || (only != "" && name != only) {
		return name, 0, err
	}
	// Read the wire format directly, allocating nothing: clients share the
	// machine with the control plane, and 1,000 of them decoding 10,000
	// endpoints per change would take its CPU. ClusterLoadAssignment.endpoints
	// (2) → LocalityLbEndpoints.lb_endpoints (2) → LbEndpoint.load_balancing_weight
	// (4) → UInt32Value.value (1).
	var sum uint32
	err = fields(b, func(num protowire.Number, v []byte) error {
		if num != 2 {
			return nil
		}
		return fields(v, func(num protowire.Number, v []byte) error {
			if num != 2 {
				return nil
			}
			w := uint32(1)
			err := fields(v, func(num protowire.Number, v []byte) error {
				if num == 4 {
					w = 0 // a wrapper without value is 0
					return fields(v, func(num protowire.Number, v []byte) error {
						if num == 1 {
							x, n := protowire.ConsumeVarint(v)
							if n < 0 {
								return protowire.ParseError(n)
							}
							w = uint32(x)
						}
						return nil
					})
				}
				return nil
			})
			sum += w
			return err
		})
	})
	return name, sum, err
}

// fields calls f with each field of message b: length-delimited fields'
// contents, a varint's bytes; other wire types are skipped.
func fields(b []byte, f func(protowire.Number, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch typ {
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			if err := f(num, v); err != nil {
				return err
			}
			b = b[n:]
		case protowire.VarintType:
			_, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			if err := f(num, b[:n]); err != nil {
				return err
			}
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	return nil
}

func claName(b []byte) (string, error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", protowire.ParseError(n)
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return "", protowire.ParseError(n)
			}
			return string(v), nil
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return "", protowire.ParseError(n)
		}
		b = b[n:]
	}
	return "", nil
}

// waitClosed waits for ch or the timeout.
func waitClosed(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}
