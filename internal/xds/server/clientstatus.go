package server

import (
	"context"
	"slices"
	"strings"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The client status of connected proxies, as Envoy's Client Status
// Discovery Service (CSDS, csds.go) and Istio's istio.io/debug/syncz ADS
// type (what `istioctl proxy-status` asks for) show it: per proxy its node
// as the stream keeps it (KeptNode) and, per resource type, what was sent
// and acknowledged, and optionally the view's resources.

// StatusOptions say who may read the client status on the TLS port and
// how this control plane names itself in answers.
type StatusOptions struct {
	// Namespace is the control plane's namespace: an identity of it (a
	// client certificate or reviewed token of any of its service accounts)
	// may read every proxy's status, as istiod allows debug access to its
	// own namespace. Any other identity sees only the proxies whose streams
	// proved that same identity. On the plaintext port everyone sees all.
	Namespace string
	// ID names this replica (its pod name) and Version its build in
	// Istio's debug answers (their control_plane identifier).
	ID, Version string
}

// ServeStatus sets the options of the client status. Call it before
// serving; without it only the plaintext port shows other proxies.
func (t *Tracker) ServeStatus(o StatusOptions) { t.statusOpts.Store(&o) }

// statusScope is which proxies a caller may see: all, or only those whose
// streams proved the workload identity client.
type statusScope struct {
	all    bool
	client string
}

// scopeOf is the scope of a caller that proved it runs in namespace as
// client (see clientOf).
func (t *Tracker) scopeOf(namespace, client string) statusScope {
	if o := t.statusOpts.Load(); o != nil && o.Namespace != "" && namespace == o.Namespace {
		return statusScope{all: true}
	}
	return statusScope{client: client}
}

// callerScope authenticates a CSDS call: on the TLS port by its client
// certificate or else its bearer token (reviewed as ADS streams' are);
// plaintext calls see all.
func (t *Tracker) callerScope(ctx context.Context) (statusScope, string, error) {
	id, secure := peerIdentity(ctx)
	if !secure {
		return statusScope{all: true}, "peer " + peerHost(ctx), nil
	}
	if id != "" {
		return t.scopeOf(namespaceOf(id), clientOf(id)), clientOf(id), nil
	}
	ta := t.tokens.Load()
	if ta == nil {
		return statusScope{}, "", status.Error(codes.Unauthenticated, "no mesh client certificate: client status on the secure port needs one")
	}
	tok, err := ta.reviewToken(ctx)
	if err != nil {
		return statusScope{}, "", err
	}
	if tok == nil {
		return statusScope{}, "", status.Error(codes.Unauthenticated,
			"no mesh client certificate or bearer token: client status on the secure port needs one")
	}
	return t.scopeOf(tok.namespace, tok.client()), tok.client(), nil
}

// namespaceOf is the namespace of a SPIFFE id spiffe://<td>/ns/<ns>/sa/<sa>;
// "" for any other shape.
func namespaceOf(spiffeID string) string {
	rest, ok := strings.CutPrefix(spiffeID, "spiffe://")
	if !ok {
		return ""
	}
	_, path, _ := strings.Cut(rest, "/")
	parts := strings.Split(path, "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return ""
	}
	return parts[1]
}

// statusCall takes one of the client status's call slots for client, and
// returns its release; ResourceExhausted past the bounds.
func (t *Tracker) statusCall(client string) (func(), error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.statusCalls >= t.limits.MaxStatusCalls {
		return nil, status.Errorf(codes.ResourceExhausted, "too many client status calls (%d) open; retry later", t.limits.MaxStatusCalls)
	}
	if t.statusByClient[client] >= t.limits.MaxStatusCallsPerClient {
		return nil, status.Errorf(codes.ResourceExhausted, "%s has its limit of %d client status calls open", client, t.limits.MaxStatusCallsPerClient)
	}
	t.statusCalls++
	t.statusByClient[client]++
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.statusCalls--
		if t.statusByClient[client]--; t.statusByClient[client] <= 0 {
			delete(t.statusByClient, client)
		}
	}, nil
}

// nodeMatch is a request's node matchers (OR, as CSDS says); nil matches
// every node.
type nodeMatch []*matcherv3.StringMatcher

// maxNodeMatchers bounds the matchers of one request.
const maxNodeMatchers = 16

// parseNodeMatchers accepts matchers on the node id (exact, prefix, suffix,
// contains, each optionally ignoring case); a matcher on node metadata or
// by regular expression is refused with InvalidArgument, rather than
// answered as if it matched everything.
func parseNodeMatchers(ms []*matcherv3.NodeMatcher) (nodeMatch, error) {
	if len(ms) > maxNodeMatchers {
		return nil, status.Errorf(codes.InvalidArgument, "node_matchers: %d, at most %d", len(ms), maxNodeMatchers)
	}
	var out nodeMatch
	for i, m := range ms {
		if len(m.GetNodeMetadatas()) > 0 {
			return nil, status.Errorf(codes.InvalidArgument, "node_matchers[%d].node_metadatas: not supported; match on node_id", i)
		}
		id := m.GetNodeId()
		switch id.GetMatchPattern().(type) {
		case *matcherv3.StringMatcher_Exact, *matcherv3.StringMatcher_Prefix, *matcherv3.StringMatcher_Suffix, *matcherv3.StringMatcher_Contains:
		case nil:
			return nil, status.Errorf(codes.InvalidArgument, "node_matchers[%d].node_id: a string matcher (exact, prefix, suffix or contains) is required", i)
		default:
			return nil, status.Errorf(codes.InvalidArgument, "node_matchers[%d].node_id: only exact, prefix, suffix and contains are supported", i)
		}
		out = append(out, id)
	}
	return out, nil
}

func (m nodeMatch) matches(id string) bool {
	if m == nil {
		return true
	}
	for _, s := range m {
		got, want := id, ""
		switch p := s.GetMatchPattern().(type) {
		case *matcherv3.StringMatcher_Exact:
			want = p.Exact
		case *matcherv3.StringMatcher_Prefix:
			want = p.Prefix
		case *matcherv3.StringMatcher_Suffix:
			want = p.Suffix
		case *matcherv3.StringMatcher_Contains:
			want = p.Contains
		}
		if s.GetIgnoreCase() {
			got, want = strings.ToLower(got), strings.ToLower(want)
		}
		var ok bool
		switch s.GetMatchPattern().(type) {
		case *matcherv3.StringMatcher_Exact:
			ok = got == want
		case *matcherv3.StringMatcher_Prefix:
			ok = strings.HasPrefix(got, want)
		case *matcherv3.StringMatcher_Suffix:
			ok = strings.HasSuffix(got, want)
		case *matcherv3.StringMatcher_Contains:
			ok = strings.Contains(got, want)
		}
		if ok {
			return true
		}
	}
	return false
}

// proxyStatus is one stream's status taken under the tracker's lock.
type proxyStatus struct {
	node  *corev3.Node // the kept node: never changed once set, shared read-only
	bound *corev3.Node // the stream's own node, its key in the ViewCache
	types map[string]TypeState
}

// proxyStatuses returns the status of the proxies scope may see that match,
// ordered by node id then stream. Only streams that asked for an xDS type
// count: a stream that asked only for debug types (istioctl) is no proxy.
func (t *Tracker) proxyStatuses(scope statusScope, match nodeMatch) []proxyStatus {
	t.mu.Lock()
	type keyed struct {
		k streamKey
		p proxyStatus
	}
	var out []keyed
	for k, s := range t.streams {
		if !s.counted || s.node == nil || !match.matches(s.first.GetId()) {
			continue
		}
		if !scope.all && (!s.status.Secure || s.client != scope.client) {
			continue
		}
		ps := proxyStatus{node: s.first, bound: s.node, types: make(map[string]TypeState, len(s.status.Types))}
		for typeURL, ts := range s.status.Types {
			if !ts.Unsupported {
				ps.types[typeURL] = *ts
			}
		}
		out = append(out, keyed{k, ps})
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b keyed) int {
		if c := strings.Compare(a.p.node.GetId(), b.p.node.GetId()); c != 0 {
			return c
		}
		if a.k.server != b.k.server {
			return int(a.k.server) - int(b.k.server)
		}
		if a.k.delta != b.k.delta {
			if a.k.delta {
				return 1
			}
			return -1
		}
		return int(a.k.id - b.k.id)
	})
	res := make([]proxyStatus, len(out))
	for i, o := range out {
		res[i] = o.p
	}
	return res
}

// ConfigStatusOf is a type's status as CSDS names it, and the time it
// took that status: NOT_SENT before anything was sent; ERROR (NACKED) when
// the proxy's last answer rejected what was sent; SYNCED when the proxy
// acknowledged what was sent last; STALE when the last response is not
// acknowledged yet.
func ConfigStatusOf(ts TypeState) (statusv3.ConfigStatus, time.Time) {
	switch {
	case ts.Sent == "":
		return statusv3.ConfigStatus_NOT_SENT, time.Time{}
	case !ts.NACKAt.IsZero() && ts.NACKAt.After(ts.AckedAt) && !ts.NACKAt.Before(ts.SentAt):
		return statusv3.ConfigStatus_ERROR, ts.NACKAt
	case ts.Acked == ts.Sent:
		return statusv3.ConfigStatus_SYNCED, ts.AckedAt
	default:
		return statusv3.ConfigStatus_STALE, ts.SentAt
	}
}

func clientResourceStatus(s statusv3.ConfigStatus) adminv3.ClientResourceStatus {
	switch s {
	case statusv3.ConfigStatus_SYNCED:
		return adminv3.ClientResourceStatus_ACKED
	case statusv3.ConfigStatus_ERROR:
		return adminv3.ClientResourceStatus_NACKED
	}
	return adminv3.ClientResourceStatus_REQUESTED
}

// clientConfigs builds the ClientConfig of each proxy. With config, each
// type lists the resources of the proxy's view as they are now (their
// marshalled copies, shared, not marshalled again), until the resources
// of the answer reach MaxStatusConfigBytes; past that a type is listed
// as its status alone. An answer over MaxStatusResponseBytes is
// ResourceExhausted.
func (t *Tracker) clientConfigs(ps []proxyStatus, config bool) ([]*statusv3.ClientConfig, error) {
	out := make([]*statusv3.ClientConfig, 0, len(ps))
	size, configLeft := 0, t.limits.MaxStatusConfigBytes
	for _, p := range ps {
		cc := &statusv3.ClientConfig{Node: t.views.verifiedNode(p.node, p.bound)}
		typeURLs := make([]string, 0, len(p.types))
		for typeURL := range p.types {
			typeURLs = append(typeURLs, typeURL)
		}
		slices.SortFunc(typeURLs, func(a, b string) int {
			if r := typeRank(a) - typeRank(b); r != 0 {
				return r
			}
			return strings.Compare(a, b)
		})
		for _, typeURL := range typeURLs {
			ts := p.types[typeURL]
			cs, at := ConfigStatusOf(ts)
			base := &statusv3.ClientConfig_GenericXdsConfig{TypeUrl: typeURL, VersionInfo: ts.Sent, ConfigStatus: cs,
				ClientStatus: clientResourceStatus(cs)}
			if !at.IsZero() {
				base.LastUpdated = timestamppb.New(at)
			}
			if ts.LastNACK != "" {
				base.ErrorState = &adminv3.UpdateFailureState{LastUpdateAttempt: timestamppb.New(ts.NACKAt), Details: ts.LastNACK}
			}
			var res []namedAny
			var version string
			if config {
				res, version = t.views.boundResources(p.bound, typeURL, configLeft)
			}
			if len(res) == 0 {
				cc.GenericXdsConfigs = append(cc.GenericXdsConfigs, base)
				continue
			}
			for _, r := range res {
				g := proto.Clone(base).(*statusv3.ClientConfig_GenericXdsConfig)
				g.Name, g.VersionInfo, g.XdsConfig = r.name, version, r.any
				configLeft -= len(r.any.GetValue()) + len(r.name)
				cc.GenericXdsConfigs = append(cc.GenericXdsConfigs, g)
			}
		}
		if size += proto.Size(cc); size > t.limits.MaxStatusResponseBytes {
			return nil, status.Errorf(codes.ResourceExhausted,
				"the status of the %d proxies asked for is more than %d bytes; ask for fewer (node_matchers on node_id, or exclude_resource_contents)",
				len(ps), t.limits.MaxStatusResponseBytes)
		}
		out = append(out, cc)
	}
	return out, nil
}

// namedAny is one resource of a view, marshalled once by the view.
type namedAny struct {
	name string
	any  *anypb.Any
}

// boundResources returns the resources of the view of typeURL the stream
// of node is bound to, and the view's version, if they fit in budget
// bytes; none otherwise. The Anys are the view's own (replaced, never
// changed, by updates): read-only.
func (c *ViewCache) boundResources(node *corev3.Node, typeURL string, budget int) ([]namedAny, string) {
	c.mu.Lock()
	e := c.bindings[node][typeURL]
	c.mu.Unlock()
	if e == nil {
		return nil, ""
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	size := 0
	for _, n := range e.names {
		size += len(e.res[n].any.GetValue()) + len(n)
	}
	if size > budget {
		return nil, ""
	}
	out := make([]namedAny, 0, len(e.names))
	for _, n := range e.names {
		out = append(out, namedAny{name: n, any: e.res[n].any})
	}
	return out, e.versionInfo()
}

// verifiedNode is kept with, as its locality, the one the mesh verified for
// the proxy (its workload's Pod's Node, as its EDS view is keyed) when it
// has one: what proxy-status shows is where the proxy's endpoints are
// ordered from, not what its node claims (Horizon's agent claims none).
// kept itself is shared and never changed: a copy carries the locality.
func (c *ViewCache) verifiedNode(kept, bound *corev3.Node) *corev3.Node {
	c.mu.Lock()
	e := c.bindings[bound][resource.EndpointType]
	c.mu.Unlock()
	if e == nil || !e.view.Key.Located {
		return kept
	}
	l := e.view.Key.Locality
	loc := &corev3.Locality{Region: l.Region, Zone: l.Zone, SubZone: l.Subzone}
	if proto.Equal(loc, kept.GetLocality()) {
		return kept
	}
	n := proto.Clone(kept).(*corev3.Node)
	n.Locality = loc
	return n
}
