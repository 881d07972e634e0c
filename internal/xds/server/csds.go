package server

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

// DebugSyncType is Istio's debug type on ADS that `istioctl proxy-status`
// asks for: its answer's resources are CSDS ClientConfigs, one per proxy,
// with the status of each type and no resources.
const DebugSyncType = "istio.io/debug/syncz"

// maxStatusBuilds bounds the client status answers built at once (each
// costs O(proxies)); further calls wait for a slot.
const maxStatusBuilds = 2

// A client status stream's requests (CSDS, or syncz on ADS) are read at
// most once a second after a burst of 4: each answer costs O(proxies).
const (
	statusRate  = 1
	statusBurst = 4
)

// csds serves Envoy's Client Status Discovery Service from the Tracker.
type csds struct {
	statusv3.UnimplementedClientStatusDiscoveryServiceServer
	ctx context.Context // ends the streams on shutdown, as ADS's
	t   *Tracker
}

// FetchClientStatus answers one request.
func (c *csds) FetchClientStatus(ctx context.Context, req *statusv3.ClientStatusRequest) (*statusv3.ClientStatusResponse, error) {
	scope, client, err := c.t.callerScope(ctx)
	if err != nil {
		return nil, err
	}
	release, err := c.t.statusCall(client)
	if err != nil {
		return nil, err
	}
	defer release()
	return c.t.clientStatus(ctx, scope, req)
}

// StreamClientStatus answers each request of a stream.
func (c *csds) StreamClientStatus(st grpc.BidiStreamingServer[statusv3.ClientStatusRequest, statusv3.ClientStatusResponse]) error {
	ctx := st.Context()
	scope, client, err := c.t.callerScope(ctx)
	if err != nil {
		return err
	}
	release, err := c.t.statusCall(client)
	if err != nil {
		return err
	}
	defer release()
	reqs, errc := receive(ctx, rate.NewLimiter(statusRate, statusBurst), st.Recv)
	wait := c.t.limits.FirstRequestTimeout
	firstTimer := time.NewTimer(wait)
	defer firstTimer.Stop()
	first := firstTimer.C
	for {
		select {
		case <-first:
			return status.Errorf(codes.DeadlineExceeded, "no request within %s of opening the stream", wait)
		case <-c.ctx.Done():
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			return endOfStream(err)
		case req := <-reqs:
			first = nil
			resp, err := c.t.clientStatus(ctx, scope, req)
			if err != nil {
				return err
			}
			if err := st.Send(resp); err != nil {
				return err
			}
		}
	}
}

// clientStatus answers a CSDS request for the proxies scope may see.
func (t *Tracker) clientStatus(ctx context.Context, scope statusScope, req *statusv3.ClientStatusRequest) (*statusv3.ClientStatusResponse, error) {
	match, err := parseNodeMatchers(req.GetNodeMatchers())
	if err != nil {
		return nil, err
	}
	cfgs, err := t.buildStatus(ctx, scope, match, !req.GetExcludeResourceContents())
	if err != nil {
		return nil, err
	}
	return &statusv3.ClientStatusResponse{Config: cfgs}, nil
}

// buildStatus builds the ClientConfigs in one of the build slots.
func (t *Tracker) buildStatus(ctx context.Context, scope statusScope, match nodeMatch, config bool) ([]*statusv3.ClientConfig, error) {
	select {
	case t.statusBuilds <- struct{}{}:
		defer func() { <-t.statusBuilds }()
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return t.clientConfigs(t.proxyStatuses(scope, match), config)
}

// debugRequest authorises a request of Istio's debug type on an ADS
// stream: its node is checked as any request's (valid, the stream's own,
// the identity the stream proved) but binds no view, and the stream does
// not count as a proxy. It returns what the stream may see.
func (t *Tracker) debugRequest(k streamKey, node *corev3.Node) (statusScope, error) {
	t.mu.Lock()
	s, ok := t.streams[k]
	if !ok {
		t.mu.Unlock()
		return statusScope{}, status.Error(codes.Internal, "unknown stream")
	}
	switch {
	case node != nil:
	case s.node != nil:
		node = s.node
	default:
		node = s.debugNode
	}
	p, refused, err := t.checkNode(s, node)
	if err == nil && s.node == nil && s.debugNode == nil {
		s.debugNode = KeptNode(node)
	}
	client := s.client
	scope := statusScope{all: true}
	if s.status.Secure {
		ns := namespaceOf(s.status.Identity)
		if s.token != nil {
			ns = s.token.namespace
		}
		scope = t.scopeOf(ns, s.client)
	}
	t.mu.Unlock()
	if refused != nil {
		t.clog.Warn("proxy refused", "client", client, "proxy", quote(p.ID), "stream", k.id, "delta", k.delta, "error", refused)
	}
	return scope, err
}

// debugStatus answers Istio's istio.io/debug/syncz on a state-of-the-world
// ADS stream, as istiod does: every proxy's ClientConfig (status only).
// The stream's first request of the type is answered whatever its nonce
// (istioctl's client sets one on every request), and so is a request
// without a nonce; an ACK or NACK of an answer, or a request naming an
// older one, is not.
func (c *conn) debugStatus(r *sotwRequest) error {
	req := &r.req
	scope, err := c.a.tracker.debugRequest(c.k, req.GetNode())
	if err != nil || (c.debugNonce != "" && req.GetResponseNonce() != "") {
		return err
	}
	if c.debugPace == nil {
		c.debugPace = rate.NewLimiter(statusRate, statusBurst)
	}
	ctx := c.st.Context()
	if err := c.debugPace.Wait(ctx); err != nil {
		return status.FromContextError(err).Err()
	}
	cfgs, err := c.a.tracker.buildStatus(ctx, scope, nil, false)
	if err != nil {
		return err
	}
	resp := &discovery.DiscoveryResponse{TypeUrl: DebugSyncType, VersionInfo: time.Now().UTC().Format(time.RFC3339Nano),
		ControlPlane: c.a.tracker.controlPlane()}
	for _, cc := range cfgs {
		a, err := anypb.New(cc)
		if err != nil {
			return status.Errorf(codes.Internal, "encoding a client status: %v", err)
		}
		resp.Resources = append(resp.Resources, a)
	}
	c.nonces++
	resp.Nonce = "debug." + strconv.FormatInt(c.k.id, 10) + "." + strconv.FormatUint(c.nonces, 10)
	c.debugNonce = resp.Nonce
	return c.st.SendMsg(resp)
}

// controlPlane identifies this replica in debug answers the way istiod
// does (a JSON IstioControlPlaneInstance), which istioctl shows.
func (t *Tracker) controlPlane() *corev3.ControlPlane {
	var o StatusOptions
	if p := t.statusOpts.Load(); p != nil {
		o = *p
	}
	type info struct {
		Version string `json:"version"`
	}
	b, _ := json.Marshal(struct {
		Component, ID string
		Info          info
	}{"horizon", o.ID, info{o.Version}})
	return &corev3.ControlPlane{Identifier: string(b)}
}
