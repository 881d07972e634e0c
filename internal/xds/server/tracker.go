package server

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/horizonmesh/horizon/internal/ratelog"
)

// Hooks are how the tracker reports to the rest of the control plane.
type Hooks struct {
	Ready       func() bool                                  // false: new streams get Unavailable
	Connected   func(network string, delta int)              // proxies per network
	NACK        func(p Proxy, typeURL string, detail string) // a proxy rejected config
	Pushed      func(typeURL string)                         // a response went out
	Unsupported func()                                       // a request for a type Horizon does not serve
}

// StreamStatus is what /debug/syncz shows of one stream.
type StreamStatus struct {
	StreamID  int64                 `json:"streamID"`
	Delta     bool                  `json:"delta"`
	Secure    bool                  `json:"secure"`             // on the TLS port
	Identity  string                `json:"identity,omitempty"` // from its client certificate, or its reviewed token
	Proxy     string                `json:"proxy"`
	Network   string                `json:"network"`
	Cluster   string                `json:"cluster"`
	Connected time.Time             `json:"connected"`
	Types     map[string]*TypeState `json:"types"`
}

// TypeState is one stream's progress on one resource type.
type TypeState struct {
	View        string    `json:"view"`
	Unsupported bool      `json:"unsupported,omitempty"` // a type Horizon does not serve: never answered
	Sent        string    `json:"sent"`                  // version (or nonce, for delta) last sent
	SentAt      time.Time `json:"sentAt,omitzero"`
	Acked       string    `json:"acked"` // version last accepted
	AckedAt     time.Time `json:"ackedAt,omitzero"`
	LastNACK    string    `json:"lastNACK,omitempty"`
	NACKAt      time.Time `json:"nackAt,omitzero"`
	NACKs       int       `json:"nacks,omitempty"`
}

// streamKey names a stream. Each gRPC server (the plaintext and the TLS
// port) numbers its streams itself, and /debug/syncz shows state-of-the-world
// and delta streams apart: the ID alone would let a stream read or
// overwrite another's entry (and its verified identity).
type streamKey struct {
	server uint32
	delta  bool
	id     int64
}

// stream is everything known of one open stream. node is this stream's own
// copy of its first node: every request of the stream is rewritten to carry
// exactly that pointer, which is how ViewCache finds the stream's views.
type stream struct {
	status StreamStatus
	first  *corev3.Node // as the proxy sent it, to compare later nodes with
	node   *corev3.Node
	proxy  Proxy
	// token is the identity of a TLS stream without a client certificate
	// that authenticated with its service-account token.
	token *tokenCaller
	// counted: the proxy was reported Connected (its first request was
	// accepted), so closing must report it gone.
	counted bool
	// client is who the stream counts against (Proxy.Client).
	client string
	// debugNode is the node of a stream's first debug request (csds.go),
	// kept while it has asked for no xDS type: a client that sends its
	// node only once may ask for xDS types after.
	debugNode *corev3.Node
}

// Tracker is what the ADS server reports every stream to: it refuses streams
// until the control plane is ready, validates each proxy's node and
// identity on every request, binds each stream to its views, and records
// what was sent, acknowledged and rejected.
type Tracker struct {
	hooks  Hooks
	views  *ViewCache
	limits Limits
	log    *slog.Logger
	// clog logs what clients can trigger, at most one line per message
	// and client per interval.
	clog   *slog.Logger
	logged *onceSet // unsupported type URLs already logged

	servers atomic.Uint32             // gRPC servers numbered (NewGRPC), for stream keys
	tokens  atomic.Pointer[TokenAuth] // nil: TLS streams need a client certificate
	// statusOpts: who may read the client status (clientstatus.go).
	statusOpts atomic.Pointer[StatusOptions]
	// statusBuilds bounds the client status answers built at once.
	statusBuilds chan struct{}

	mu      sync.Mutex
	streams map[streamKey]*stream
	clients map[string]int // open streams per client
	// statusCalls are the open client status calls, statusByClient per client.
	statusCalls    int
	statusByClient map[string]int
}

// NewTracker returns a Tracker binding streams to views of vc.
func NewTracker(hooks Hooks, vc *ViewCache, limits Limits, log *slog.Logger) *Tracker {
	return &Tracker{hooks: hooks, views: vc, limits: limits.withDefaults(), log: log,
		clog:   ratelog.New(log, ratelog.Options{Every: 10 * time.Second, KeyAttrs: []string{"client"}}),
		logged: newOnceSet(64), streams: map[streamKey]*stream{}, clients: map[string]int{},
		statusBuilds: make(chan struct{}, maxStatusBuilds), statusByClient: map[string]int{}}
}

// AcceptTokens lets TLS streams without a client certificate authenticate
// with a bearer token (see TokenAuth). Call it before serving.
func (t *Tracker) AcceptTokens(a *TokenAuth) { t.tokens.Store(a) }

// Streams returns a copy of every open stream's status, ordered by kind
// and ID.
func (t *Tracker) Streams() []StreamStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]StreamStatus, 0, len(t.streams))
	for _, s := range t.streams {
		c := s.status
		c.Types = map[string]*TypeState{}
		for k, v := range s.status.Types {
			vv := *v
			c.Types[k] = &vv
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Delta != out[j].Delta {
			return !out[i].Delta
		}
		return out[i].StreamID < out[j].StreamID
	})
	return out
}

func (t *Tracker) open(ctx context.Context, k streamKey) error {
	if t.hooks.Ready != nil && !t.hooks.Ready() {
		return status.Error(codes.Unavailable, "control plane is not ready: the local cluster has not synced yet")
	}
	identity, secure := peerIdentity(ctx)
	client := ""
	if identity != "" {
		client = clientOf(identity)
	}
	var token *tokenCaller
	if secure && identity == "" {
		// A TLS stream must prove who it is before it takes a slot: a
		// silent stream without a certificate or token could otherwise
		// hold slots legitimate proxies need.
		ta := t.tokens.Load()
		if ta == nil {
			return t.refuse(ctx, "", status.Error(codes.Unauthenticated,
				"no mesh client certificate: xDS on the secure port needs one"))
		}
		var err error
		if token, err = ta.reviewToken(ctx); err != nil {
			return t.refuse(ctx, "", err)
		}
		if token == nil {
			return t.refuse(ctx, "", status.Error(codes.Unauthenticated,
				"no mesh client certificate or bearer token: xDS on the secure port needs one"))
		}
		client = token.client()
	}
	if client == "" {
		client = "peer " + peerHost(ctx)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.streams) >= t.limits.MaxStreams {
		return status.Errorf(codes.ResourceExhausted, "too many xDS streams (%d); try another replica or later", t.limits.MaxStreams)
	}
	if t.clients[client] >= t.limits.MaxStreamsPerClient {
		return status.Errorf(codes.ResourceExhausted, "%s has its limit of %d xDS streams open", client, t.limits.MaxStreamsPerClient)
	}
	t.clients[client]++
	st := &stream{token: token, client: client, status: StreamStatus{StreamID: k.id, Delta: k.delta, Secure: secure, Identity: identity,
		Connected: time.Now(), Types: map[string]*TypeState{}}}
	if token != nil {
		st.status.Identity = token.String()
	}
	t.streams[k] = st
	return nil
}

// refuse logs a refused stream (at a bounded rate per peer) and returns err.
func (t *Tracker) refuse(ctx context.Context, proxy string, err error) error {
	t.clog.Warn("xDS stream refused", "client", "peer "+peerHost(ctx), "proxy", proxy, "error", err)
	return err
}

func (t *Tracker) closed(k streamKey) {
	t.mu.Lock()
	s, ok := t.streams[k]
	delete(t.streams, k)
	if ok {
		if t.clients[s.client]--; t.clients[s.client] <= 0 {
			delete(t.clients, s.client)
		}
	}
	t.mu.Unlock()
	if !ok || s.node == nil {
		return
	}
	t.views.Unbind(s.node)
	if s.counted && t.hooks.Connected != nil {
		t.hooks.Connected(s.proxy.Network, -1)
	}
}

// request authorises one request of a stream and binds its type to a view.
// The first request fixes the stream's node; every later one must carry the
// same node (go-control-plane fills in the stream's node when a request
// has none) and is checked against the stream's own peer identity again.
// It sets *node to the stream's own node pointer.
func (t *Tracker) request(k streamKey, node **corev3.Node, typeURL, version, nonce, errDetail string) error {
	t.mu.Lock()
	s, ok := t.streams[k]
	if !ok {
		t.mu.Unlock()
		return status.Error(codes.Internal, "unknown stream")
	}
	if len(typeURL) > MaxTypeURLBytes {
		t.mu.Unlock()
		return status.Errorf(codes.InvalidArgument, "type URL %s is longer than %d bytes", quote(typeURL), MaxTypeURLBytes)
	}
	first := s.node == nil
	if first && *node == nil && s.debugNode != nil {
		*node = s.debugNode
	}
	p, refused, err := t.checkNode(s, *node)
	if err != nil {
		client := s.client
		t.mu.Unlock()
		if refused != nil {
			t.clog.Warn("proxy refused", "client", client, "proxy", quote(p.ID), "stream", k.id, "delta", k.delta, "error", refused)
		}
		return err
	}
	if first {
		// Only what Horizon reads of the node is kept (KeptNode): the
		// rest, whatever its size, goes with the request.
		p.Verified, p.Client = s.status.Secure, s.client
		s.first = KeptNode(*node)
		s.node, s.proxy = proto.Clone(s.first).(*corev3.Node), p
		s.status.Proxy, s.status.Network, s.status.Cluster = p.ID, p.Network, string(p.Cluster)
	}
	*node = s.node
	ts, err := t.bind(s, typeURL)
	if err != nil {
		t.mu.Unlock()
		return err
	}
	newlyCounted := !s.counted
	s.counted = true
	nack := errDetail != "" && nonce != ""
	logNACK := false
	detail := cut(errDetail, maxNACKDetail)
	if nack {
		ts.NACKs++
		logNACK = detail != ts.LastNACK // once per (stream, type, error)
		ts.LastNACK, ts.NACKAt = detail, time.Now()
	} else if nonce != "" {
		ts.Acked, ts.AckedAt = cut(version, maxNACKDetail), time.Now()
	}
	client := s.client
	t.mu.Unlock()

	if newlyCounted && t.hooks.Connected != nil {
		t.hooks.Connected(p.Network, +1)
	}
	if nack {
		if logNACK {
			t.clog.Warn("proxy rejected config (logged once per error, and at most once per client every 10 s; horizon_xds_nacks_total counts all)",
				"client", client, "proxy", quote(p.ID), "type", quote(TypeName(typeURL)), "detail", detail)
		}
		if t.hooks.NACK != nil {
			t.hooks.NACK(p, typeURL, detail)
		}
	}
	return nil
}

// checkNode checks a request's node: valid, the stream's own (a stream's
// node may not change), and on the TLS port the identity the stream
// proved. It returns what the node says of the proxy. Called with t.mu
// held; refused reports an identity that does not match, for the caller
// to log once it has released the lock.
func (t *Tracker) checkNode(s *stream, node *corev3.Node) (p Proxy, refused, err error) {
	p = s.proxy
	if s.node == nil {
		if p, err = ProxyFromNode(node); err != nil {
			return Proxy{}, nil, status.Error(codes.InvalidArgument, err.Error())
		}
	} else if node != nil && node != s.node && !proto.Equal(KeptNode(node), s.first) {
		return Proxy{}, nil, status.Errorf(codes.PermissionDenied, "node %s: a stream's node may not change; open a new stream", quote(p.ID))
	}
	if s.status.Secure {
		id := s.status.Identity
		if s.token != nil {
			id = ""
		}
		if err := checkIdentity(id, s.token, p); err != nil {
			return p, err, status.Error(codes.PermissionDenied, err.Error())
		}
	}
	return p, nil, nil
}

// bind returns the stream's state for typeURL, binding the stream to its
// view of that type on first use. A type Horizon does not serve is
// remembered and never answered, rather than ending the stream: Istio
// agents ask for their own types (the NDS name table) on the same stream.
// Called with t.mu held, which it releases while binding.
func (t *Tracker) bind(s *stream, typeURL string) (*TypeState, error) {
	if ts := s.status.Types[typeURL]; ts != nil {
		return ts, nil
	}
	if len(s.status.Types) >= t.limits.MaxTypesPerStream {
		return nil, status.Errorf(codes.ResourceExhausted, "a stream may ask for at most %d resource types", t.limits.MaxTypesPerStream)
	}
	// Binding may build a view (milliseconds in a large mesh): not under
	// the tracker's lock, which every stream's every request takes. Only
	// this stream's goroutine changes its node, proxy and types, so they
	// hold still meanwhile.
	t.mu.Unlock()
	v, err := t.views.Bind(s.node, typeURL, s.proxy)
	t.mu.Lock()
	var unsupported errUnsupported
	switch {
	case errors.As(err, &unsupported):
		ts := &TypeState{Unsupported: true}
		s.status.Types[typeURL] = ts // at most MaxTypeURLBytes (request)
		if t.logged.add(typeURL) {
			t.clog.Info("ignoring requests for a resource type Horizon does not serve (logged once per type)",
				"client", s.client, "type", quote(typeURL), "proxy", quote(s.proxy.ID))
		}
		if t.hooks.Unsupported != nil {
			t.hooks.Unsupported()
		}
		return ts, nil
	case err != nil:
		return nil, err
	}
	ts := &TypeState{View: v.Key.String()}
	s.status.Types[typeURL] = ts
	return ts, nil
}

// moved records that a stream's type now follows another view.
func (t *Tracker) moved(k streamKey, typeURL, view string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.streams[k]; ok {
		if ts := s.status.Types[typeURL]; ts != nil {
			ts.View = view
		}
	}
}

func (t *Tracker) sent(k streamKey, typeURL, version string) {
	t.mu.Lock()
	if s, ok := t.streams[k]; ok {
		if ts := s.status.Types[typeURL]; ts != nil {
			ts.Sent, ts.SentAt = version, time.Now()
		}
	}
	t.mu.Unlock()
	if t.hooks.Pushed != nil {
		t.hooks.Pushed(typeURL)
	}
}

// maxNACKDetail bounds the error detail (and version) of a request kept
// per stream and type, logged and handed to hooks.
const maxNACKDetail = 1024

// MetricType is the label of typeURL in metrics: its short name for a
// type Horizon serves, "other" for any other, so that clients cannot mint
// series.
func MetricType(typeURL string) string {
	if n := TypeName(typeURL); n != typeURL {
		return n
	}
	return "other"
}

// peerHost is the address (without port) of the stream's peer.
func peerHost(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	if ap, err := netip.ParseAddrPort(p.Addr.String()); err == nil {
		return ap.Addr().Unmap().String()
	}
	return cut(p.Addr.String(), 64)
}

// cut shortens client-provided text kept in memory or logs.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// onceSet remembers up to max keys; add reports whether a key is new and
// was remembered, so a client sending endless distinct keys cannot grow it.
type onceSet struct {
	mu   sync.Mutex
	max  int
	seen map[string]bool
}

func newOnceSet(max int) *onceSet { return &onceSet{max: max, seen: map[string]bool{}} }

func (o *onceSet) add(k string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.seen[k] || len(o.seen) >= o.max {
		return false
	}
	o.seen[k] = true
	return true
}
