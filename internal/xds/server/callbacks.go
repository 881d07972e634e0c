package server

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Hooks are how the tracker reports to the rest of the control plane.
type Hooks struct {
	Ready     func() bool                                  // false: new streams get Unavailable
	Connected func(network string, delta int)              // proxies per network
	NACK      func(p Proxy, typeURL string, detail string) // a proxy rejected config
	Pushed    func(typeURL string)                         // a response went out
}

// StreamStatus is what /debug/syncz shows of one stream.
type StreamStatus struct {
	StreamID  int64                 `json:"streamID"`
	Delta     bool                  `json:"delta"`
	Secure    bool                  `json:"secure"`             // on the TLS port
	Identity  string                `json:"identity,omitempty"` // from its client certificate
	Proxy     string                `json:"proxy"`
	Network   string                `json:"network"`
	Cluster   string                `json:"cluster"`
	Connected time.Time             `json:"connected"`
	Types     map[string]*TypeState `json:"types"`
}

// TypeState is one stream's progress on one resource type.
type TypeState struct {
	View     string    `json:"view"`
	Sent     string    `json:"sent"`  // version (or nonce, for delta) last sent
	Acked    string    `json:"acked"` // version last accepted
	LastNACK string    `json:"lastNACK,omitempty"`
	NACKAt   time.Time `json:"nackAt,omitzero"`
}

// Tracker implements go-control-plane's server callbacks: it refuses streams
// until the control plane is ready, validates each proxy's node, and records
// per stream what was sent, acknowledged and rejected.
type Tracker struct {
	hooks    Hooks
	classify Classifier
	log      *slog.Logger

	mu      sync.Mutex
	streams map[int64]*StreamStatus
}

// NewTracker returns a Tracker.
func NewTracker(hooks Hooks, classify Classifier, log *slog.Logger) *Tracker {
	return &Tracker{hooks: hooks, classify: classify, log: log, streams: map[int64]*StreamStatus{}}
}

// Streams returns a copy of every open stream's status, by stream ID.
func (t *Tracker) Streams() []StreamStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]StreamStatus, 0, len(t.streams))
	for _, s := range t.streams {
		c := *s
		c.Types = map[string]*TypeState{}
		for k, v := range s.Types {
			vv := *v
			c.Types[k] = &vv
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StreamID < out[j].StreamID })
	return out
}

func (t *Tracker) open(ctx context.Context, id int64, delta bool) error {
	if t.hooks.Ready != nil && !t.hooks.Ready() {
		return status.Error(codes.Unavailable, "control plane is not ready: the local cluster has not synced yet")
	}
	identity, secure := peerIdentity(ctx)
	t.mu.Lock()
	t.streams[id] = &StreamStatus{StreamID: id, Delta: delta, Secure: secure, Identity: identity,
		Connected: time.Now(), Types: map[string]*TypeState{}}
	t.mu.Unlock()
	return nil
}

func (t *Tracker) closed(id int64) {
	t.mu.Lock()
	s, ok := t.streams[id]
	delete(t.streams, id)
	t.mu.Unlock()
	if ok && s.Proxy != "" && t.hooks.Connected != nil {
		t.hooks.Connected(s.Network, -1)
	}
}

// request validates the node on a stream's first request and records ACKs
// and NACKs. node may be nil on later requests.
func (t *Tracker) request(id int64, node *corev3.Node, typeURL, version, nonce string, errDetail string) error {
	t.mu.Lock()
	s, ok := t.streams[id]
	if !ok {
		t.mu.Unlock()
		return status.Error(codes.Internal, "unknown stream")
	}
	first := s.Proxy == ""
	if first {
		p, err := ProxyFromNode(node)
		if err != nil {
			t.mu.Unlock()
			return status.Error(codes.InvalidArgument, err.Error())
		}
		if s.Secure {
			if err := checkIdentity(s.Identity, p); err != nil {
				t.mu.Unlock()
				t.log.Warn("proxy refused", "proxy", p.ID, "error", err)
				return status.Error(codes.PermissionDenied, err.Error())
			}
		}
		s.Proxy, s.Network, s.Cluster = p.ID, p.Network, string(p.Cluster)
	}
	p := Proxy{ID: s.Proxy, Network: s.Network, Cluster: clusterID(s.Cluster)}
	ts := s.Types[typeURL]
	if ts == nil {
		key, err := t.classify(typeURL, p)
		if err != nil {
			t.mu.Unlock()
			return status.Error(codes.InvalidArgument, err.Error())
		}
		ts = &TypeState{View: key}
		s.Types[typeURL] = ts
	}
	nack := errDetail != "" && nonce != ""
	if nack {
		ts.LastNACK, ts.NACKAt = errDetail, time.Now()
	} else if nonce != "" {
		ts.Acked = version
	}
	t.mu.Unlock()

	if first && t.hooks.Connected != nil {
		t.hooks.Connected(p.Network, +1)
	}
	if nack {
		t.log.Warn("proxy rejected config", "proxy", p.ID, "type", TypeName(typeURL), "detail", errDetail)
		if t.hooks.NACK != nil {
			t.hooks.NACK(p, typeURL, errDetail)
		}
	}
	return nil
}

func (t *Tracker) sent(id int64, typeURL, version string) {
	t.mu.Lock()
	if s, ok := t.streams[id]; ok {
		if ts := s.Types[typeURL]; ts != nil {
			ts.Sent = version
		}
	}
	t.mu.Unlock()
	if t.hooks.Pushed != nil {
		t.hooks.Pushed(typeURL)
	}
}

// OnStreamOpen refuses streams until ready.
func (t *Tracker) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	return t.open(ctx, id, false)
}

// OnStreamClosed forgets the stream.
func (t *Tracker) OnStreamClosed(id int64, _ *corev3.Node) { t.closed(id) }

// OnStreamRequest validates and records a state-of-the-world request.
func (t *Tracker) OnStreamRequest(id int64, r *discovery.DiscoveryRequest) error {
	return t.request(id, r.GetNode(), r.GetTypeUrl(), r.GetVersionInfo(), r.GetResponseNonce(), r.GetErrorDetail().GetMessage())
}

// OnStreamResponse records what was sent.
func (t *Tracker) OnStreamResponse(_ context.Context, id int64, _ *discovery.DiscoveryRequest, r *discovery.DiscoveryResponse) {
	t.sent(id, r.GetTypeUrl(), r.GetVersionInfo())
}

// OnDeltaStreamOpen refuses streams until ready.
func (t *Tracker) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	return t.open(ctx, id, true)
}

// OnDeltaStreamClosed forgets the stream.
func (t *Tracker) OnDeltaStreamClosed(id int64, _ *corev3.Node) { t.closed(id) }

// OnStreamDeltaRequest validates and records a delta request. Delta has no
// version_info: the acknowledged nonce stands for it.
func (t *Tracker) OnStreamDeltaRequest(id int64, r *discovery.DeltaDiscoveryRequest) error {
	return t.request(id, r.GetNode(), r.GetTypeUrl(), r.GetResponseNonce(), r.GetResponseNonce(), r.GetErrorDetail().GetMessage())
}

// OnStreamDeltaResponse records what was sent.
func (t *Tracker) OnStreamDeltaResponse(id int64, _ *discovery.DeltaDiscoveryRequest, r *discovery.DeltaDiscoveryResponse) {
	t.sent(id, r.GetTypeUrl(), r.GetNonce())
}

// OnFetchRequest refuses REST fetches.
func (t *Tracker) OnFetchRequest(context.Context, *discovery.DiscoveryRequest) error {
	return status.Error(codes.Unimplemented, "REST fetch is not supported; use ADS")
}

// OnFetchResponse is unused.
func (t *Tracker) OnFetchResponse(*discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {}
