package server

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func TestConfigStatusOf(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for _, tt := range []struct {
		name string
		ts   TypeState
		want statusv3.ConfigStatus
		when time.Time
	}{
		{"nothing sent", TypeState{}, statusv3.ConfigStatus_NOT_SENT, time.Time{}},
		{"sent, not acknowledged", TypeState{Sent: "v1", SentAt: at(1)}, statusv3.ConfigStatus_STALE, at(1)},
		{"acknowledged", TypeState{Sent: "v1", SentAt: at(1), Acked: "v1", AckedAt: at(2)}, statusv3.ConfigStatus_SYNCED, at(2)},
		{"a newer one sent", TypeState{Sent: "v2", SentAt: at(3), Acked: "v1", AckedAt: at(2)}, statusv3.ConfigStatus_STALE, at(3)},
		{"rejected", TypeState{Sent: "v2", SentAt: at(3), Acked: "v1", AckedAt: at(2), LastNACK: "bad", NACKAt: at(4)},
			statusv3.ConfigStatus_ERROR, at(4)},
		{"rejected, then a newer one sent", TypeState{Sent: "v3", SentAt: at(5), Acked: "v1", AckedAt: at(2), LastNACK: "bad", NACKAt: at(4)},
			statusv3.ConfigStatus_STALE, at(5)},
		{"rejected once, acknowledged since", TypeState{Sent: "v3", SentAt: at(5), Acked: "v3", AckedAt: at(6), LastNACK: "bad", NACKAt: at(4)},
			statusv3.ConfigStatus_SYNCED, at(6)},
	} {
		got, when := ConfigStatusOf(tt.ts)
		if got != tt.want || !when.Equal(tt.when) {
			t.Errorf("%s: %s at %v, want %s at %v", tt.name, got, when, tt.want, tt.when)
		}
	}
}

func TestNodeMatchers(t *testing.T) {
	m := func(s *matcherv3.StringMatcher) *matcherv3.NodeMatcher { return &matcherv3.NodeMatcher{NodeId: s} }
	exact := func(s string) *matcherv3.StringMatcher {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
	}
	ids := []string{"sidecar~10.0.0.1~a.ns~ns.svc.cluster.local", "router~10.0.0.2~gw.ns~ns.svc.cluster.local"}
	for _, tt := range []struct {
		name string
		ms   []*matcherv3.NodeMatcher
		want []string
	}{
		{"none: every node", nil, ids},
		{"exact", []*matcherv3.NodeMatcher{m(exact(ids[1]))}, ids[1:]},
		{"exact, another case", []*matcherv3.NodeMatcher{m(exact(strings.ToUpper(ids[1])))}, nil},
		{"prefix ignoring case", []*matcherv3.NodeMatcher{m(&matcherv3.StringMatcher{IgnoreCase: true,
			MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "SIDECAR~"}})}, ids[:1]},
		{"suffix", []*matcherv3.NodeMatcher{m(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: "cluster.local"}})}, ids},
		{"contains, OR of two", []*matcherv3.NodeMatcher{m(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: "gw."}}),
			m(exact("nobody"))}, ids[1:]},
	} {
		nm, err := parseNodeMatchers(tt.ms)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		var got []string
		for _, id := range ids {
			if nm.matches(id) {
				got = append(got, id)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: matched %q, want %q", tt.name, got, tt.want)
		}
	}
	for name, ms := range map[string][]*matcherv3.NodeMatcher{
		"regex":         {m(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ".*"}}})},
		"metadata":      {{NodeId: exact("a"), NodeMetadatas: []*matcherv3.StructMatcher{{}}}},
		"no id matcher": {{}},
		"too many":      slices.Repeat([]*matcherv3.NodeMatcher{m(exact("a"))}, maxNodeMatchers+1),
	} {
		if _, err := parseNodeMatchers(ms); err == nil || !strings.Contains(err.Error(), "InvalidArgument") {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
}

// Who may read whose status: on the TLS port an identity of the control
// plane's namespace sees every proxy, any other identity only the proxies
// whose streams proved that same identity; the plaintext port sees all; a
// TLS caller with neither certificate nor token is refused. A stream that
// asked only for debug types is no proxy.
func TestClientStatusScope(t *testing.T) {
	f := newFixture(t, 0, Limits{})
	sleep := "spiffe://cluster.local/ns/sample/sa/sleep"
	streams := []struct {
		ctx  context.Context
		node *corev3.Node
	}{
		{tlsPeer(sleep), node("sleep-1", "n1", "sample", "sleep")},
		{tlsPeer(sleep), node("sleep-2", "n1", "sample", "sleep")},
		{tlsPeer("spiffe://cluster.local/ns/other/sa/x"), node("x-1", "n1", "other", "x")},
		{context.Background(), node("plain-1", "n1", "", "")},
	}
	for i, s := range streams {
		if err := f.port.open(s.ctx, int64(i+1)); err != nil {
			t.Fatal(err)
		}
		if err := f.port.request(int64(i+1), sotw(s.node, resource.ClusterType)); err != nil {
			t.Fatal(err)
		}
	}
	// istioctl's stream: debug requests only.
	admin := "spiffe://cluster.local/ns/istio-system/sa/default"
	if err := f.port.open(tlsPeer(admin), 9); err != nil {
		t.Fatal(err)
	}
	seen := func(ctx context.Context) []string {
		t.Helper()
		scope, _, err := f.tr.callerScope(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, p := range f.tr.proxyStatuses(scope, nil) {
			ids = append(ids, p.node.GetId())
		}
		return ids
	}
	all := []string{"plain-1", "sleep-1", "sleep-2", "x-1"}
	if got := seen(tlsPeer(admin)); got != nil {
		t.Errorf("before ServeStatus, the control plane's namespace saw %q", got)
	}
	f.tr.ServeStatus(StatusOptions{Namespace: "istio-system"})
	if _, err := f.tr.debugRequest(f.port.key(9, false), node("istioctl", "", "istio-system", "default")); err != nil {
		t.Fatal(err)
	}
	for name, tt := range map[string]struct {
		ctx  context.Context
		want []string
	}{
		"the control plane's namespace":      {tlsPeer(admin), all},
		"a workload":                         {tlsPeer(sleep), []string{"sleep-1", "sleep-2"}},
		"a workload of another trust domain": {tlsPeer("spiffe://other.td/ns/sample/sa/sleep"), []string{"sleep-1", "sleep-2"}},
		"a workload with no proxy":           {tlsPeer("spiffe://cluster.local/ns/sample/sa/web"), nil},
		"plaintext":                          {context.Background(), all},
	} {
		if got := seen(tt.ctx); !slices.Equal(got, tt.want) {
			t.Errorf("%s sees %q, want %q", name, got, tt.want)
		}
	}
	if _, _, err := f.tr.callerScope(tlsPeer("")); !strings.Contains(err.Error(), "Unauthenticated") {
		t.Errorf("a TLS caller without certificate or token: %v", err)
	}
	// With tokens accepted, a token proves an identity as a certificate does.
	rv := &fakeReviewer{tokens: map[string][3]string{"admin": {"cluster1", "istio-system", "default"}, "sleep": {"cluster1", "sample", "sleep"}}}
	f.tr.AcceptTokens(&TokenAuth{Review: rv.review, LocalCluster: "cluster1"})
	if got := seen(tokenPeer("authorization", "Bearer admin")); !slices.Equal(got, all) {
		t.Errorf("a token of the control plane's namespace sees %q", got)
	}
	if got := seen(tokenPeer("authorization", "Bearer sleep")); !slices.Equal(got, []string{"sleep-1", "sleep-2"}) {
		t.Errorf("sleep's token sees %q", got)
	}
	if _, _, err := f.tr.callerScope(tokenPeer("authorization", "Bearer junk")); !strings.Contains(err.Error(), "Unauthenticated") {
		t.Errorf("a bad token: %v", err)
	}
	// The debug stream's node must match its identity, as any request's.
	scope, err := f.tr.debugRequest(f.port.key(9, false), node("istioctl", "", "istio-system", "default"))
	if err != nil || !scope.all {
		t.Errorf("istioctl's debug request: %+v, %v", scope, err)
	}
	_, err = f.tr.debugRequest(f.port.key(9, false), node("istioctl", "", "sample", "sleep"))
	wantCode(t, err, codes.PermissionDenied)
	scope, err = f.tr.debugRequest(f.port.key(1, false), nil) // the stream's own node
	if err != nil || scope.all || scope.client != "workload sample/sleep" {
		t.Errorf("a proxy's debug request: %+v, %v", scope, err)
	}
}

// A proxy's CSDS node carries the locality the mesh verified for it (its
// EDS view's), not the one it claims; one the mesh did not locate keeps
// its own. The stream's kept node is not changed.
func TestClientStatusShowsVerifiedLocality(t *testing.T) {
	f := newFixture(t, 0, Limits{})
	claimed := &corev3.Locality{Region: "claimed", Zone: "zone"}
	located, other := node("located-1", "located", "", ""), node("other-1", "n1", "", "")
	located.Locality, other.Locality = claimed, claimed
	for i, n := range []*corev3.Node{located, other} {
		if err := f.port.open(context.Background(), int64(i+1)); err != nil {
			t.Fatal(err)
		}
		if err := f.port.request(int64(i+1), sotw(n, resource.EndpointType)); err != nil {
			t.Fatal(err)
		}
	}
	ps := f.tr.proxyStatuses(statusScope{all: true}, nil)
	ccs, err := f.tr.clientConfigs(ps, false)
	if err != nil || len(ccs) != 2 {
		t.Fatalf("%d configs, %v", len(ccs), err)
	}
	want := map[string]*corev3.Locality{"located-1": {Region: "r1", Zone: "z1"}, "other-1": claimed}
	for _, cc := range ccs {
		if got := cc.GetNode().GetLocality(); !proto.Equal(got, want[cc.GetNode().GetId()]) {
			t.Errorf("%s: locality %v, want %v", cc.GetNode().GetId(), got, want[cc.GetNode().GetId()])
		}
	}
	for _, p := range ps {
		if !proto.Equal(p.node.GetLocality(), claimed) {
			t.Errorf("%s: the kept node changed: %v", p.node.GetId(), p.node.GetLocality())
		}
	}
}

// csdsEnv is an ADS server over a vcWorld with CDS views holding two
// clusters, and a CSDS client of it.
func csdsEnv(t *testing.T, limits Limits) (*adsEnv, statusv3.ClientStatusDiscoveryServiceClient) {
	t.Helper()
	w := newVCWorld(0)
	w.set(cdsView("n1"), map[string]types.Resource{"c1": cluster("c1", time.Second), "c2": cluster("c2", 2*time.Second)})
	limits.MaxTypesPerStream = 64
	env := newADSWith(t, w, limits)
	return env, statusv3.NewClientStatusDiscoveryServiceClient(env.conn)
}

// configsByType groups a ClientConfig's entries by type URL.
func configsByType(cc *statusv3.ClientConfig) map[string][]*statusv3.ClientConfig_GenericXdsConfig {
	out := map[string][]*statusv3.ClientConfig_GenericXdsConfig{}
	for _, g := range cc.GetGenericXdsConfigs() {
		out[g.GetTypeUrl()] = append(out[g.GetTypeUrl()], g)
	}
	return out
}

// Over gRPC: every connected proxy with its node, per type what it was
// sent and acknowledged (SYNCED, STALE, ERROR with the NACK's detail) and
// its view's resources as the view marshalled them; node matchers pick
// proxies; exclude_resource_contents leaves the resources out; a stream
// answers each request.
func TestCSDS(t *testing.T) {
	env, client := csdsEnv(t, Limits{})
	ctx := context.Background()
	a := env.sotw(t, "sidecar~a", "n1")
	a.sub(t, resource.ClusterType)
	a.recv(t, resource.ClusterType)
	a.ack(t, resource.ClusterType)
	a.mustBlock(t) // the ACK was handled
	b := env.sotw(t, "sidecar~b", "n1")
	b.sub(t, resource.ClusterType)
	b.recv(t, resource.ClusterType)
	b.mustBlock(t) // what was sent is recorded

	resp, err := client.FetchClientStatus(ctx, &statusv3.ClientStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetConfig()) != 2 || resp.Config[0].GetNode().GetId() != "sidecar~a" || resp.Config[1].GetNode().GetId() != "sidecar~b" {
		t.Fatalf("configs: %v", resp.GetConfig())
	}
	if md := resp.Config[0].GetNode().GetMetadata().GetFields(); md[MetaNetwork].GetStringValue() != "n1" {
		t.Errorf("node metadata %v, want the kept node's", md)
	}
	cds := configsByType(resp.Config[0])[resource.ClusterType]
	res, version, _ := env.w.vc.Resources(cdsView("n1"))
	if len(cds) != 2 || cds[0].GetName() != "c1" || cds[1].GetName() != "c2" {
		t.Fatalf("a's CDS: %v", cds)
	}
	for _, g := range cds {
		want, _ := anypb.New(res[g.GetName()])
		if g.GetConfigStatus() != statusv3.ConfigStatus_SYNCED || g.GetVersionInfo() != version || !proto.Equal(g.GetXdsConfig(), want) ||
			g.GetLastUpdated() == nil {
			t.Errorf("a's %s: %v", g.GetName(), g)
		}
	}
	if cds := configsByType(resp.Config[1])[resource.ClusterType]; len(cds) != 2 || cds[0].GetConfigStatus() != statusv3.ConfigStatus_STALE {
		t.Errorf("b's CDS: %v", cds)
	}

	// One proxy by node id, without its resources.
	resp, err = client.FetchClientStatus(ctx, &statusv3.ClientStatusRequest{ExcludeResourceContents: true,
		NodeMatchers: []*matcherv3.NodeMatcher{{NodeId: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "sidecar~b"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetConfig()) != 1 || resp.Config[0].GetNode().GetId() != "sidecar~b" {
		t.Fatalf("configs: %v", resp.GetConfig())
	}
	if cds := configsByType(resp.Config[0])[resource.ClusterType]; len(cds) != 1 || cds[0].GetXdsConfig() != nil || cds[0].GetName() != "" ||
		cds[0].GetConfigStatus() != statusv3.ConfigStatus_STALE {
		t.Errorf("b's CDS status: %v", cds)
	}
	_, err = client.FetchClientStatus(ctx, &statusv3.ClientStatusRequest{NodeMatchers: []*matcherv3.NodeMatcher{{}}})
	wantCode(t, err, codes.InvalidArgument)

	// a rejects the next version: ERROR with its detail, on a stream.
	env.w.set(cdsView("n1"), map[string]types.Resource{"c1": cluster("c1", 3*time.Second)})
	if _, err := env.w.vc.Update(cdsView("n1"), env.w.contents[cdsView("n1")]); err != nil {
		t.Fatal(err)
	}
	a.recv(t, resource.ClusterType)
	nack := a.ackOf(resource.ClusterType)
	nack.VersionInfo, nack.ErrorDetail = "", &statuspb.Status{Message: "bad cluster c1"}
	a.send(t, nack)
	a.mustBlock(t)
	st, err := client.StreamClientStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := st.Send(&statusv3.ClientStatusRequest{ExcludeResourceContents: true}); err != nil {
			t.Fatal(err)
		}
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		cds := configsByType(resp.GetConfig()[0])[resource.ClusterType]
		if len(cds) != 1 || cds[0].GetConfigStatus() != statusv3.ConfigStatus_ERROR || cds[0].GetErrorState().GetDetails() != "bad cluster c1" {
			t.Errorf("a's CDS after its NACK: %v", cds)
		}
	}
	_ = st.CloseSend()
}

// What one answer may cost is bounded: resources past the config budget
// are left out (the status stays), an answer past the response bound is
// ResourceExhausted, and a client has at most MaxStatusCallsPerClient
// calls open.
func TestCSDSBounds(t *testing.T) {
	ctx := context.Background()
	env, client := csdsEnv(t, Limits{MaxStatusConfigBytes: 10, MaxStatusCallsPerClient: 1})
	a := env.sotw(t, "sidecar~a", "n1")
	a.sub(t, resource.ClusterType)
	a.recv(t, resource.ClusterType)
	a.mustBlock(t)
	resp, err := client.FetchClientStatus(ctx, &statusv3.ClientStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if cds := configsByType(resp.GetConfig()[0])[resource.ClusterType]; len(cds) != 1 || cds[0].GetXdsConfig() != nil ||
		cds[0].GetConfigStatus() != statusv3.ConfigStatus_STALE {
		t.Errorf("over the config budget: %v", cds)
	}
	st, err := client.StreamClientStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&statusv3.ClientStatusRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	_, err = client.FetchClientStatus(ctx, &statusv3.ClientStatusRequest{})
	wantCode(t, err, codes.ResourceExhausted)
	_ = st.CloseSend()
	if _, err := st.Recv(); err == nil {
		t.Fatal("the stream answered without a request")
	}

	env2, client2 := csdsEnv(t, Limits{MaxStatusResponseBytes: 10})
	b := env2.sotw(t, "sidecar~b", "n1")
	b.sub(t, resource.ClusterType)
	b.recv(t, resource.ClusterType)
	_, err = client2.FetchClientStatus(ctx, &statusv3.ClientStatusRequest{})
	wantCode(t, err, codes.ResourceExhausted)
}

// Istio's istioctl proxy-status asks ADS for istio.io/debug/syncz: the
// answer lists every proxy's ClientConfig (status only) but not the asking
// stream, names the control plane as istiod does, and its ACK is not
// answered; a request without a nonce is.
func TestDebugSyncOnADS(t *testing.T) {
	env, _ := csdsEnv(t, Limits{})
	env.tr.ServeStatus(StatusOptions{ID: "horizon-0", Version: "1.2.3"})
	a := env.sotw(t, "sidecar~a", "n1")
	a.sub(t, resource.ClusterType)
	a.recv(t, resource.ClusterType)
	a.ack(t, resource.ClusterType)
	a.mustBlock(t)

	c := env.sotw(t, "sidecar~10.0.0.9~istioctl.istio-system~istio-system.svc.cluster.local", "")
	// istioctl's client (Istio's adsc) sets a nonce on every request,
	// its first too.
	c.send(t, &discovery.DiscoveryRequest{TypeUrl: DebugSyncType, ResponseNonce: time.Now().String()})
	r := c.recv(t, DebugSyncType)
	if len(r.GetResources()) != 1 {
		t.Fatalf("syncz: %d resources, want a's alone", len(r.GetResources()))
	}
	var cc statusv3.ClientConfig
	if err := r.GetResources()[0].UnmarshalTo(&cc); err != nil {
		t.Fatal(err)
	}
	cds := configsByType(&cc)[resource.ClusterType]
	if cc.GetNode().GetId() != "sidecar~a" || len(cds) != 1 || cds[0].GetConfigStatus() != statusv3.ConfigStatus_SYNCED || cds[0].GetXdsConfig() != nil {
		t.Errorf("syncz: %v", &cc)
	}
	var cp struct {
		Component, ID string
		Info          struct{ Version string }
	}
	if err := json.Unmarshal([]byte(r.GetControlPlane().GetIdentifier()), &cp); err != nil || cp.Component != "horizon" || cp.ID != "horizon-0" ||
		cp.Info.Version != "1.2.3" {
		t.Errorf("control plane %q: %+v, %v", r.GetControlPlane().GetIdentifier(), cp, err)
	}
	c.ack(t, DebugSyncType)
	c.send(t, &discovery.DiscoveryRequest{TypeUrl: DebugSyncType, ResponseNonce: "an older answer's"})
	c.mustBlock(t)
	// Asked again without a nonce: answered again.
	c.send(t, &discovery.DiscoveryRequest{TypeUrl: DebugSyncType})
	if r := c.recv(t, DebugSyncType); len(r.GetResources()) != 2 { // a, and c itself now that it asked for a probe type
		t.Errorf("syncz asked again: %d resources", len(r.GetResources()))
	}
}
