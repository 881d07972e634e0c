package server

import (
	"slices"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// conn is one ADS stream: its subscription of each type (typeStream), its
// push queue, and the requests and pushes its goroutine (serve) handles
// one at a time.
type conn struct {
	a    *ads
	k    streamKey
	st   grpc.ServerStream
	node *corev3.Node // the stream's own node, as the Tracker keeps it
	// q holds what the cache told the stream (views changed, moved) until
	// the stream's goroutine pushes it.
	q     *pushQueue
	types map[string]*typeStream // nil: a type Horizon does not serve
	order []*typeStream          // clusters before endpoints before listeners before routes
	// shareable: the stream's responses are not compressed, so responses
	// encoded for other streams fit it byte for byte.
	shareable bool
	nonces    uint64
	// names bounds the resource names the stream subscribes to over all
	// its types.
	names nameBudget
	// debugPace paces the stream's answers of Istio's debug type (csds.go).
	debugPace  *rate.Limiter
	debugNonce string // of the stream's last answer of Istio's debug type
}

// applyMoves moves the stream's subscriptions as Reclassify asked: out of
// the old view, into the new one, to be sent the new view whole.
func (c *conn) applyMoves() {
	for typeURL, e := range c.q.takeMoves() {
		ts := c.types[typeURL]
		if ts == nil || ts.e == e {
			continue
		}
		ts.e.mu.Lock()
		delete(ts.e.subs, ts)
		ts.releaseNames() // the set stays the stream's, unshared
		ts.e.mu.Unlock()
		e.mu.Lock()
		e.subs[ts] = c.q
		ts.e = e
		ts.started = false
		ts.sub.moved()
		e.mu.Unlock()
		c.a.tracker.moved(c.k, typeURL, e.view.Key.String())
	}
}

func (c *conn) close() {
	for _, ts := range c.order {
		ts.e.mu.Lock()
		delete(ts.e.subs, ts)
		ts.releaseNames()
		ts.e.mu.Unlock()
	}
	c.a.tracker.closed(c.k)
}

// subscribe subscribes the stream to its view of typeURL (the Tracker has
// bound it); nil for a type Horizon does not serve.
func (c *conn) subscribe(typeURL string) (*typeStream, error) {
	e, err := c.a.views.bound(c.node, typeURL, c.q)
	if err != nil {
		return nil, err
	}
	if e == nil {
		c.types[typeURL] = nil // never answered
		return nil, nil
	}
	ts := &typeStream{e: e, typeURL: typeURL}
	e.mu.Lock()
	e.subs[ts] = c.q
	e.mu.Unlock()
	c.types[typeURL] = ts
	c.order = append(c.order, ts)
	slices.SortStableFunc(c.order, func(a, b *typeStream) int { return typeRank(a.typeURL) - typeRank(b.typeURL) })
	return ts, nil
}

// typeRank orders pushes as Envoy wants them: a cluster before its
// endpoints, a listener before its routes.
func typeRank(typeURL string) int {
	switch typeURL {
	case resource.ClusterType:
		return 0
	case resource.EndpointType:
		return 1
	case resource.ListenerType:
		return 2
	case resource.RouteType:
		return 3
	}
	return 4
}

func (c *conn) sotwRequest(r *sotwRequest) error {
	req := &r.req
	typeURL := req.GetTypeUrl()
	if typeURL == "" {
		return status.Error(codes.InvalidArgument, "type URL is required for ADS")
	}
	if typeURL == DebugSyncType {
		return c.debugStatus(r)
	}
	node := req.GetNode()
	if err := c.a.tracker.request(c.k, &node, typeURL, req.GetVersionInfo(), req.GetResponseNonce(), req.GetErrorDetail().GetMessage()); err != nil {
		return err
	}
	c.node = node
	ts, known := c.types[typeURL]
	switch {
	case !known:
		var err error
		if ts, err = c.subscribe(typeURL); err != nil || ts == nil {
			return err
		}
		ts.e.mu.Lock()
		err = ts.setSotwNames(r, &c.names)
		if v := req.GetVersionInfo(); v != "" && v == ts.e.versionInfo() && ts.sub.wildcard {
			// A proxy back on a new stream with the whole view at its
			// current version. Only a wildcard subscription says what it
			// holds: a version names the view, not which of its resources
			// an earlier stream asked for, so a proxy naming resources is
			// sent every one it names.
			ts.started, ts.at = true, ts.e.version
		}
		ts.e.mu.Unlock()
		if err != nil {
			return asStatus(err, codes.InvalidArgument)
		}
	case ts == nil:
		return nil // a type Horizon does not serve
	case ts.nonce != "" && req.GetResponseNonce() != ts.nonce:
		// An answer to an older response: the proxy will answer the
		// latest too. (A NACK is not answered either: the proxy keeps
		// what it had, and the next change reaches it as usual.)
		return nil
	default:
		ts.e.mu.Lock()
		err := ts.setSotwNames(r, &c.names)
		ts.e.mu.Unlock()
		if err != nil {
			return asStatus(err, codes.InvalidArgument)
		}
		if !ts.sub.grew() {
			return nil // an ACK or NACK
		}
	}
	return c.push(ts)
}

func (c *conn) deltaRequest(req *discovery.DeltaDiscoveryRequest) error {
	typeURL := req.GetTypeUrl()
	if typeURL == "" {
		return status.Error(codes.InvalidArgument, "type URL is required for ADS")
	}
	node := req.GetNode()
	// Delta has no version_info: the acknowledged nonce stands for it.
	if err := c.a.tracker.request(c.k, &node, typeURL, req.GetResponseNonce(), req.GetResponseNonce(), req.GetErrorDetail().GetMessage()); err != nil {
		return err
	}
	c.node = node
	ts, known := c.types[typeURL]
	if !known {
		var err error
		if ts, err = c.subscribe(typeURL); err != nil || ts == nil {
			return err
		}
	} else if ts == nil {
		return nil
	}
	ts.e.mu.Lock()
	err := ts.setDeltaNames(&c.names, req.GetResourceNamesSubscribe(), req.GetResourceNamesUnsubscribe(), req.GetInitialResourceVersions())
	ts.e.mu.Unlock()
	if err != nil {
		return err
	}
	if ts.started && !ts.sub.grew() {
		return nil
	}
	return c.push(ts)
}

// pushAll brings every subscription of the stream to its view's version.
func (c *conn) pushAll() error {
	c.applyMoves()
	for _, ts := range c.order {
		if err := c.push(ts); err != nil {
			return err
		}
	}
	return nil
}

// push sends ts what it lacks of its view, if anything. After clusters
// the proxy already had changed, their load assignments follow even when
// they did not change (warmAfter).
func (c *conn) push(ts *typeStream) error {
	e := ts.e
	e.mu.Lock()
	var out outgoing
	var send bool
	wasStarted, from := ts.started, ts.at
	if c.k.delta {
		out, send = ts.planDelta()
	} else {
		out, send = ts.planSotw()
	}
	if !send {
		e.mu.Unlock()
		return nil
	}
	var warming []string
	var warmAll bool
	if ts.typeURL == resource.ClusterType && wasStarted {
		var ok bool
		warming, _, ok = e.since(from)
		warmAll = !ok
	}
	var msg any
	var nonce string
	if out.shared && c.shareable && (c.k.delta || ts.nonce != sharedNonce(e.version, out.kind)) {
		sm := e.sharedMsg(out.kind, c.st)
		if sm.err != nil {
			e.mu.Unlock()
			return status.Errorf(codes.Internal, "encoding a response: %v", sm.err)
		}
		msg, nonce = sm.msg, sm.nonce
	} else {
		c.nonces++
		// The stream id makes a stream's own nonces differ from every other's.
		nonce = strconv.FormatUint(e.version, 10) + "." + strconv.FormatInt(c.k.id, 10) + "." + strconv.FormatUint(c.nonces, 10)
		msg = e.response(out, nonce, c.k.delta)
	}
	e.mu.Unlock()
	if err := c.st.SendMsg(msg); err != nil {
		return err
	}
	if c.k.delta {
		c.a.tracker.sent(c.k, ts.typeURL, nonce)
	} else {
		ts.nonce = nonce
		c.a.tracker.sent(c.k, ts.typeURL, out.version)
	}
	if warming != nil || warmAll {
		return c.warmAfter(warming, warmAll)
	}
	return nil
}

// warmAfter sends the load assignments of clusters just sent again
// (changed), or of all clusters when which is unknown: Envoy keeps an
// updated EDS cluster warming, the old one serving, until its load
// assignment arrives — also when it did not change (xDS "resource
// warming"), which it would otherwise do only after its
// initial_fetch_timeout (15 s). A DestinationRule that changes only a
// cluster's outlier detection or connection pool is such a change.
func (c *conn) warmAfter(clusters []string, all bool) error {
	eds := c.types[resource.EndpointType]
	if eds == nil || !eds.started {
		return nil // its first response is still to come
	}
	eds.e.mu.Lock()
	if all {
		clusters = eds.existing()
	}
	eds.sub.resend(clusters)
	eds.e.mu.Unlock()
	return c.push(eds)
}
