package server

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	xdsstream "github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// These tests drive ViewCache as go-control-plane's xDS server would, with
// no gRPC: Bind (as the Tracker does on a stream's first request of a
// type), then CreateWatch/CreateDeltaWatch with a xdsstream.Subscription
// updated from each response. A watch that must not fire is checked with
// vcMustBlock, a non-blocking receive right after the operation that could
// have fired it returned: LinearCache sends synchronously, inside
// CreateWatch and UpdateResources.

// vcWorld is a ViewCache whose views are keyed by the proxy's network (EDS
// and CDS only) and built from contents, counting builds.
type vcWorld struct {
	vc       *ViewCache
	mu       sync.Mutex
	contents map[View]map[string]types.Resource
	builds   map[View]int
}

func newVCWorld(maxViews int) *vcWorld {
	w := &vcWorld{contents: map[View]map[string]types.Resource{}, builds: map[View]int{}}
	classify := func(typeURL string, p Proxy) (translate.View, error) {
		if typeURL != resource.EndpointType && typeURL != resource.ClusterType {
			return translate.View{}, UnsupportedType(typeURL)
		}
		switch p.Network {
		case "refused":
			return translate.View{}, status.Error(codes.PermissionDenied, "network refused")
		case "broken":
			return translate.View{}, errors.New("cannot classify")
		}
		return translate.View{Network: p.Network}, nil
	}
	build := func(v View) map[string]types.Resource {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.builds[v]++
		return w.contents[v]
	}
	w.vc = NewViewCache(build, classify, maxViews)
	return w
}

func (w *vcWorld) set(v View, res map[string]types.Resource) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.contents[v] = res
}

func (w *vcWorld) buildCount(v View) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.builds[v]
}

// bind binds a new stream node of proxy id on network to typeURL's view.
func (w *vcWorld) bind(t *testing.T, id, network, typeURL string) (*corev3.Node, View) {
	t.Helper()
	n := &corev3.Node{Id: id}
	v, err := w.vc.Bind(n, typeURL, Proxy{ID: id, Network: network})
	if err != nil {
		t.Fatalf("Bind(%s, %s): %v", id, TypeName(typeURL), err)
	}
	return n, v
}

// edsView and cdsView are the views of a network (their version prefix
// "network=<name>-").
func edsView(network string) View {
	return View{TypeURL: resource.EndpointType, Key: translate.View{Network: network}}
}

func cdsView(network string) View {
	return View{TypeURL: resource.ClusterType, Key: translate.View{Network: network}}
}

// cla is a load assignment of one endpoint ip:8080.
func cla(name, ip string) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080}}}}}}}},
	}}}
}

func claIP(r *endpointv3.ClusterLoadAssignment) string {
	return r.GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
}

func cluster(name string, timeout time.Duration) *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: name, ConnectTimeout: durationpb.New(timeout)}
}

// cloneAll returns res with every resource replaced by an equal copy.
func cloneAll(res map[string]types.Resource) map[string]types.Resource {
	out := make(map[string]types.Resource, len(res))
	for k, r := range res {
		out[k] = proto.Clone(r)
	}
	return out
}

// copyMap returns a new map holding the same resource pointers.
func copyMap(res map[string]types.Resource) map[string]types.Resource {
	out := make(map[string]types.Resource, len(res))
	for k, r := range res {
		out[k] = r
	}
	return out
}

func vcMustBlock(t *testing.T, ch <-chan cache.Response) {
	t.Helper()
	select {
	case r := <-ch:
		d, _ := r.GetDiscoveryResponse()
		t.Fatalf("watch must block, got version %q with %d resources", r.GetResponseVersion(), len(d.GetResources()))
	default:
	}
}

func vcMustBlockDelta(t *testing.T, ch <-chan cache.DeltaResponse) {
	t.Helper()
	select {
	case r := <-ch:
		d, _ := r.GetDeltaDiscoveryResponse()
		t.Fatalf("delta watch must block, got %d resources, %d removed", len(d.GetResources()), len(d.GetRemovedResources()))
	default:
	}
}

// vcRecv returns the response a watch got. LinearCache sends before
// CreateWatch or UpdateResources returns, so it is there already; the
// timeout only turns a missing response into a failure rather than a hang.
func vcRecv(t *testing.T, ch <-chan cache.Response) cache.Response {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no response on the watch")
		return nil
	}
}

func vcRecvDelta(t *testing.T, ch <-chan cache.DeltaResponse) *deltaResult {
	t.Helper()
	select {
	case r := <-ch:
		d, err := r.GetDeltaDiscoveryResponse()
		if err != nil {
			t.Fatal(err)
		}
		out := &deltaResult{resp: r, removed: slices.Sorted(slices.Values(d.GetRemovedResources()))}
		for _, res := range d.GetResources() {
			out.names = append(out.names, res.GetName())
		}
		sort.Strings(out.names)
		return out
	case <-time.After(5 * time.Second):
		t.Fatal("no response on the delta watch")
		return nil
	}
}

type deltaResult struct {
	resp    cache.DeltaResponse
	names   []string
	removed []string
}

// sotwContent decodes a response's resources, by name.
func sotwContent(t *testing.T, r cache.Response) map[string]proto.Message {
	t.Helper()
	d, err := r.GetDiscoveryResponse()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]proto.Message{}
	for _, a := range d.GetResources() {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		out[cache.GetResourceName(m)] = m
	}
	if d.GetVersionInfo() != r.GetResponseVersion() {
		t.Fatalf("DiscoveryResponse version %q, response version %q", d.GetVersionInfo(), r.GetResponseVersion())
	}
	return out
}

func names(m map[string]proto.Message) []string {
	return slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
}

// sotwClient is one state-of-the-world stream's watches of one type, its
// subscription kept as go-control-plane's server keeps it.
type sotwClient struct {
	w       *vcWorld
	node    *corev3.Node
	typeURL string
	sub     xdsstream.Subscription
	version string // of the last response
	ch      chan cache.Response
}

func newSotwClient(w *vcWorld, n *corev3.Node, typeURL string) *sotwClient {
	return &sotwClient{w: w, node: n, typeURL: typeURL, sub: xdsstream.NewSotwSubscription(nil, true)}
}

// watch opens the next watch, at the version last received.
func (c *sotwClient) watch(t *testing.T) {
	t.Helper()
	c.watchReq(t, &cache.Request{Node: c.node, TypeUrl: c.typeURL, VersionInfo: c.version})
}

func (c *sotwClient) watchReq(t *testing.T, req *cache.Request) {
	t.Helper()
	c.ch = make(chan cache.Response, 1)
	if _, err := c.w.vc.CreateWatch(req, c.sub, c.ch); err != nil {
		t.Fatalf("CreateWatch: %v", err)
	}
}

// recv takes the watch's response and records it as sent.
func (c *sotwClient) recv(t *testing.T) (map[string]proto.Message, string) {
	t.Helper()
	r := vcRecv(t, c.ch)
	content := sotwContent(t, r)
	c.sub.SetReturnedResources(r.GetReturnedResources())
	c.version = r.GetResponseVersion()
	return content, c.version
}

// deltaClient is one delta stream's watches of one type.
type deltaClient struct {
	w     *vcWorld
	node  *corev3.Node
	typ   string
	sub   xdsstream.Subscription
	nonce string
	ch    chan cache.DeltaResponse
}

func newDeltaClient(w *vcWorld, n *corev3.Node, typeURL string) *deltaClient {
	return &deltaClient{w: w, node: n, typ: typeURL, sub: xdsstream.NewDeltaSubscription(nil, nil, nil, true)}
}

func (c *deltaClient) watch(t *testing.T) {
	t.Helper()
	c.ch = make(chan cache.DeltaResponse, 1)
	req := &cache.DeltaRequest{Node: c.node, TypeUrl: c.typ, ResponseNonce: c.nonce}
	if _, err := c.w.vc.CreateDeltaWatch(req, c.sub, c.ch); err != nil {
		t.Fatalf("CreateDeltaWatch: %v", err)
	}
}

func (c *deltaClient) recv(t *testing.T) *deltaResult {
	t.Helper()
	r := vcRecvDelta(t, c.ch)
	c.sub.SetReturnedResources(r.resp.GetNextVersionMap())
	c.nonce = fmt.Sprint(len(c.nonce) + 1) // any non-empty nonce: not the first request
	return r
}

// A new view is built once, at Bind; its first watch is answered with
// everything at the view's version, and a watch at that version blocks.
func TestViewCacheWatchAtCurrentVersionBlocks(t *testing.T) {
	w := newVCWorld(0)
	v := edsView("a")
	a, b := cla("a", "10.0.0.1"), cla("b", "10.0.0.2")
	w.set(v, map[string]types.Resource{"a": a, "b": b})
	n, got := w.bind(t, "p1", "a", resource.EndpointType)
	if got != v {
		t.Fatalf("bound to %v, want %v", got, v)
	}
	if w.buildCount(v) != 1 {
		t.Fatalf("%d builds at the first Bind, want 1", w.buildCount(v))
	}
	if ver := w.vc.Version(v); !atVersion(ver, 0) {
		t.Fatalf("new view's version %q, want network=a-0", ver)
	}
	res, ver, ok := w.vc.Resources(v)
	if !ok || !atVersion(ver, 0) || len(res) != 2 || res["a"] != a || res["b"] != b {
		t.Fatalf("Resources = %v, %q, %v; want the built a and b at network=a-0", res, ver, ok)
	}

	c := newSotwClient(w, n, resource.EndpointType)
	c.watch(t)
	content, ver := c.recv(t)
	if ver != w.vc.Version(v) {
		t.Fatalf("first response at version %q, the view is at %q", ver, w.vc.Version(v))
	}
	if !slices.Equal(names(content), []string{"a", "b"}) || !proto.Equal(content["a"], a) {
		t.Fatalf("first response holds %v, want a and b as built", names(content))
	}
	c.watch(t)
	vcMustBlock(t, c.ch)

	// A second stream of the same view shares it: no second build.
	n2, _ := w.bind(t, "p2", "a", resource.EndpointType)
	if w.buildCount(v) != 1 || len(w.vc.Views()) != 1 {
		t.Fatalf("%d builds, %d views after a second stream bound the view; want 1, 1", w.buildCount(v), len(w.vc.Views()))
	}
	c2 := newSotwClient(w, n2, resource.EndpointType)
	c2.watch(t)
	if _, ver := c2.recv(t); !atVersion(ver, 0) {
		t.Fatalf("second stream got version %q", ver)
	}
	c2.watch(t)
	vcMustBlock(t, c2.ch)
	vcMustBlock(t, c.ch)
}

// Update with the resources the view holds — the same pointers, or equal
// copies — sends nothing to state-of-the-world or delta watches and leaves
// the version (and what Resources returns) alone; a changed resource is
// sent alone, at a new version, to every watch.
func TestViewCacheUpdate(t *testing.T) {
	w := newVCWorld(0)
	v := edsView("a")
	a, b := cla("a", "10.0.0.1"), cla("b", "10.0.0.2")
	built := map[string]types.Resource{"a": a, "b": b}
	w.set(v, built)
	n, _ := w.bind(t, "p1", "a", resource.EndpointType)
	nd, _ := w.bind(t, "p2", "a", resource.EndpointType)
	sotw := newSotwClient(w, n, resource.EndpointType)
	sotw.watch(t)
	sotw.recv(t)
	sotw.watch(t)
	dc := newDeltaClient(w, nd, resource.EndpointType)
	dc.watch(t)
	if r := dc.recv(t); !slices.Equal(r.names, []string{"a", "b"}) {
		t.Fatalf("first delta response holds %v, want a and b", r.names)
	}
	dc.watch(t)
	vcMustBlockDelta(t, dc.ch)

	for _, tc := range []struct {
		name string
		res  map[string]types.Resource
	}{
		{"the same map", built},
		{"the same pointers", copyMap(built)},
		{"equal copies", cloneAll(built)},
	} {
		n, err := w.vc.Update(v, tc.res)
		if err != nil || n != 0 {
			t.Fatalf("Update with %s = %d, %v; want 0 changed", tc.name, n, err)
		}
		vcMustBlock(t, sotw.ch)
		vcMustBlockDelta(t, dc.ch)
		if ver := w.vc.Version(v); !atVersion(ver, 0) {
			t.Fatalf("Update with %s moved the version to %q", tc.name, ver)
		}
		if res, _, _ := w.vc.Resources(v); res["a"] != a || res["b"] != b {
			t.Fatalf("Update with %s replaced the view's resources", tc.name)
		}
	}

	// b's endpoint moves; a is an equal copy: only b is sent.
	b2 := cla("b", "10.0.0.3")
	next := map[string]types.Resource{"a": proto.Clone(a), "b": b2}
	if n, err := w.vc.Update(v, next); err != nil || n != 1 {
		t.Fatalf("Update changing b = %d, %v; want 1 changed", n, err)
	}
	if ver := w.vc.Version(v); !atVersion(ver, 1) {
		t.Fatalf("version after a change %q, want network=a-1", ver)
	}
	content, ver := sotw.recv(t)
	if !atVersion(ver, 1) {
		t.Fatalf("state-of-the-world response at %q, want network=a-1", ver)
	}
	if got := names(content); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("state-of-the-world response holds %v, want only b (EDS is not full-state)", got)
	}
	if ip := claIP(content["b"].(*endpointv3.ClusterLoadAssignment)); ip != "10.0.0.3" {
		t.Fatalf("b sent with endpoint %s, want the new 10.0.0.3", ip)
	}
	if r := dc.recv(t); !slices.Equal(r.names, []string{"b"}) || len(r.removed) != 0 {
		t.Fatalf("delta response holds %v, removes %v; want b only", r.names, r.removed)
	}
	if res, ver, _ := w.vc.Resources(v); res["b"] != b2 || !atVersion(ver, 1) {
		t.Fatalf("Resources after the change: b %v at %q", res["b"], ver)
	}
	// And the clients are current again.
	sotw.watch(t)
	vcMustBlock(t, sotw.ch)
	dc.watch(t)
	vcMustBlockDelta(t, dc.ch)
	if n, err := w.vc.Update(v, cloneAll(next)); err != nil || n != 0 {
		t.Fatalf("Update repeating the change = %d, %v", n, err)
	}
	vcMustBlock(t, sotw.ch)
	vcMustBlockDelta(t, dc.ch)

	// A new resource is sent too.
	next = copyMap(next)
	next["c"] = cla("c", "10.0.0.4")
	if n, err := w.vc.Update(v, next); err != nil || n != 1 {
		t.Fatalf("Update adding c = %d, %v; want 1", n, err)
	}
	if content, ver := sotw.recv(t); !slices.Equal(names(content), []string{"c"}) || !atVersion(ver, 2) {
		t.Fatalf("after adding c: %v at %q", names(content), ver)
	}
	if r := dc.recv(t); !slices.Equal(r.names, []string{"c"}) {
		t.Fatalf("delta after adding c: %v", r.names)
	}
}

// A removal moves the version: a CDS (full-state) watch gets what is left,
// a delta watch the removed name; an EDS state-of-the-world watch cannot be
// told of a removal and gets nothing.
func TestViewCacheRemoval(t *testing.T) {
	w := newVCWorld(0)
	cds, eds := cdsView("a"), edsView("a")
	x, y := cluster("x", time.Second), cluster("y", 2*time.Second)
	w.set(cds, map[string]types.Resource{"x": x, "y": y})
	w.set(eds, map[string]types.Resource{"x": cla("x", "10.0.0.1"), "y": cla("y", "10.0.0.2")})
	n, _ := w.bind(t, "p1", "a", resource.ClusterType)
	if _, err := w.vc.Bind(n, resource.EndpointType, Proxy{ID: "p1", Network: "a"}); err != nil {
		t.Fatal(err)
	}
	nd, _ := w.bind(t, "p2", "a", resource.ClusterType)

	c := newSotwClient(w, n, resource.ClusterType)
	c.watch(t)
	if content, _ := c.recv(t); !slices.Equal(names(content), []string{"x", "y"}) {
		t.Fatalf("first CDS response %v", names(content))
	}
	c.watch(t)
	e := newSotwClient(w, n, resource.EndpointType)
	e.watch(t)
	e.recv(t)
	e.watch(t)
	dc := newDeltaClient(w, nd, resource.ClusterType)
	dc.watch(t)
	dc.recv(t)
	dc.watch(t)

	if n, err := w.vc.Update(cds, map[string]types.Resource{"x": x}); err != nil || n != 1 {
		t.Fatalf("Update removing y = %d, %v; want 1", n, err)
	}
	content, ver := c.recv(t)
	if !atVersion(ver, 1) || ver != w.vc.Version(cds) {
		t.Fatalf("CDS response after the removal at %q, view at %q; want network=a-1", ver, w.vc.Version(cds))
	}
	if got := names(content); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("CDS response after the removal holds %v, want x only", got)
	}
	if r := dc.recv(t); len(r.names) != 0 || !slices.Equal(r.removed, []string{"y"}) {
		t.Fatalf("delta CDS response: %v, removed %v; want y removed", r.names, r.removed)
	}
	if res, _, _ := w.vc.Resources(cds); len(res) != 1 || res["x"] != x {
		t.Fatalf("Resources after the removal: %v", res)
	}
	// Removing what is already gone is no change.
	if n, err := w.vc.Update(cds, map[string]types.Resource{"x": x}); err != nil || n != 0 {
		t.Fatalf("repeated removal = %d, %v", n, err)
	}
	c.watch(t)
	vcMustBlock(t, c.ch)
	// Everything removed: the full-state type says so with an empty response.
	if n, err := w.vc.Update(cds, nil); err != nil || n != 1 {
		t.Fatalf("Update removing x = %d, %v", n, err)
	}
	if content, ver := c.recv(t); len(content) != 0 || !atVersion(ver, 2) {
		t.Fatalf("CDS response after removing everything: %v at %q", names(content), ver)
	}

	if n, err := w.vc.Update(eds, map[string]types.Resource{"x": cla("x", "10.0.0.1")}); err != nil || n != 1 {
		t.Fatalf("EDS Update removing y = %d, %v; want 1", n, err)
	}
	if ver := w.vc.Version(eds); !atVersion(ver, 1) {
		t.Fatalf("EDS version after the removal %q", ver)
	}
	vcMustBlock(t, e.ch)
}

// A view no stream is bound to is not held: Update leaves it alone (no
// build, no version), and it is built from the builder when first bound.
func TestViewCacheUpdateOfUnboundView(t *testing.T) {
	w := newVCWorld(0)
	v := edsView("a")
	if n, err := w.vc.Update(v, map[string]types.Resource{"a": cla("a", "10.0.0.1")}); err != nil || n != 0 {
		t.Fatalf("Update of an unbound view = %d, %v; want 0, nil", n, err)
	}
	if len(w.vc.Views()) != 0 || w.vc.Version(v) != "" || w.buildCount(v) != 0 {
		t.Fatalf("Update created the view: views %v, version %q, %d builds", w.vc.Views(), w.vc.Version(v), w.buildCount(v))
	}
	if _, _, ok := w.vc.Resources(v); ok {
		t.Fatal("Resources reports an unbound view")
	}
	w.set(v, map[string]types.Resource{"b": cla("b", "10.0.0.2")})
	n, _ := w.bind(t, "p1", "a", resource.EndpointType)
	res, ver, ok := w.vc.Resources(v)
	if !ok || !atVersion(ver, 0) || len(res) != 1 || res["b"] == nil {
		t.Fatalf("after Bind: %v at %q (%v); want the builder's b, not the earlier Update's a", res, ver, ok)
	}
	// Once freed, Updates are dropped again.
	w.vc.Unbind(n)
	if n, err := w.vc.Update(v, map[string]types.Resource{"c": cla("c", "10.0.0.3")}); err != nil || n != 0 {
		t.Fatalf("Update of a freed view = %d, %v", n, err)
	}
	if len(w.vc.Views()) != 0 {
		t.Fatalf("Update recreated a freed view: %v", w.vc.Views())
	}
}

// A view lives as long as a stream is bound to it; binding a stream twice
// to one type counts once; unbinding the last stream frees the view, and a
// new stream then gets a fresh build.
func TestViewCacheUnbindFreesViews(t *testing.T) {
	w := newVCWorld(0)
	eds, cds, edsB := edsView("a"), cdsView("a"), edsView("b")
	w.set(eds, map[string]types.Resource{"a": cla("a", "10.0.0.1")})
	n1, _ := w.bind(t, "p1", "a", resource.EndpointType)
	if _, err := w.vc.Bind(n1, resource.ClusterType, Proxy{ID: "p1", Network: "a"}); err != nil {
		t.Fatal(err)
	}
	// Bound again (a second request of the type): no second reference.
	if v, err := w.vc.Bind(n1, resource.EndpointType, Proxy{ID: "p1", Network: "a"}); err != nil || v != eds {
		t.Fatalf("second Bind of a type = %v, %v", v, err)
	}
	n2, _ := w.bind(t, "p2", "a", resource.EndpointType)
	n3, _ := w.bind(t, "p3", "b", resource.EndpointType)
	wantViews := func(want ...View) {
		t.Helper()
		got := w.vc.Views()
		sort.Slice(got, func(i, j int) bool { return got[i].String() < got[j].String() })
		sort.Slice(want, func(i, j int) bool { return want[i].String() < want[j].String() })
		if !slices.Equal(got, want) {
			t.Fatalf("views %v, want %v", got, want)
		}
	}
	wantViews(eds, cds, edsB)

	// An Update gives the view a version a stream still bound to it keeps.
	if _, err := w.vc.Update(eds, map[string]types.Resource{"a": cla("a", "10.0.0.9")}); err != nil {
		t.Fatal(err)
	}
	w.vc.Unbind(n1)
	wantViews(eds, edsB) // n2 still has eds; nobody cds
	if w.vc.Version(cds) != "" {
		t.Fatalf("freed view still has version %q", w.vc.Version(cds))
	}
	if ver := w.vc.Version(eds); !atVersion(ver, 1) {
		t.Fatalf("eds, still bound, at %q after p1 left; want network=a-1", ver)
	}
	w.vc.Unbind(n1) // twice: nothing more
	wantViews(eds, edsB)
	w.vc.Unbind(&corev3.Node{Id: "p2"}) // an equal node is not the stream's
	wantViews(eds, edsB)
	w.vc.Unbind(n2)
	wantViews(edsB)
	if _, _, ok := w.vc.Resources(eds); ok {
		t.Fatal("Resources still reports a freed view")
	}
	// A watch of a stream no longer bound is refused, not answered.
	ch := make(chan cache.Response, 1)
	if _, err := w.vc.CreateWatch(&cache.Request{Node: n2, TypeUrl: resource.EndpointType}, xdsstream.NewSotwSubscription(nil, true), ch); status.Code(err) != codes.Internal {
		t.Fatalf("CreateWatch of an unbound stream: %v, want Internal", err)
	}
	vcMustBlock(t, ch)

	// A new stream builds the view afresh.
	builds := w.buildCount(eds)
	n4, _ := w.bind(t, "p4", "a", resource.EndpointType)
	if w.buildCount(eds) != builds+1 {
		t.Fatal("a freed view was not rebuilt for a new stream")
	}
	if res, _, _ := w.vc.Resources(eds); claIP(res["a"].(*endpointv3.ClusterLoadAssignment)) != "10.0.0.1" {
		t.Fatal("the rebuilt view holds the freed view's resources, not the builder's")
	}
	w.vc.Unbind(n3)
	w.vc.Unbind(n4)
	wantViews()
}

// At most maxViews views exist: binding a stream to a new view past that
// is ResourceExhausted, naming the limit and the view; streams of existing
// views are still bound, and a freed slot can be used again.
func TestViewCacheMaxViews(t *testing.T) {
	w := newVCWorld(2)
	na, _ := w.bind(t, "p1", "a", resource.EndpointType)
	nb, _ := w.bind(t, "p2", "b", resource.EndpointType)
	nc := &corev3.Node{Id: "p3"}
	_, err := w.vc.Bind(nc, resource.EndpointType, Proxy{ID: "p3", Network: "c"})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("Bind past the limit: %v, want ResourceExhausted", err)
	}
	for _, want := range []string{"limit of 2 views", "eds/network=c"} {
		if !strings.Contains(status.Convert(err).Message(), want) {
			t.Fatalf("error %q does not contain %q", status.Convert(err).Message(), want)
		}
	}
	if len(w.vc.Views()) != 2 || w.buildCount(edsView("c")) != 0 {
		t.Fatalf("the refused view exists: views %v, %d builds", w.vc.Views(), w.buildCount(edsView("c")))
	}
	// A watch of the refused stream is refused too.
	ch := make(chan cache.Response, 1)
	if _, err := w.vc.CreateWatch(&cache.Request{Node: nc, TypeUrl: resource.EndpointType}, xdsstream.NewSotwSubscription(nil, true), ch); status.Code(err) != codes.Internal {
		t.Fatalf("CreateWatch of the refused stream: %v, want Internal", err)
	}
	// An existing view takes more streams.
	n2, _ := w.bind(t, "p4", "a", resource.EndpointType)
	if len(w.vc.Views()) != 2 {
		t.Fatalf("views %v", w.vc.Views())
	}
	// Freeing b makes room for c.
	w.vc.Unbind(nb)
	if v, err := w.vc.Bind(nc, resource.EndpointType, Proxy{ID: "p3", Network: "c"}); err != nil || v != edsView("c") {
		t.Fatalf("Bind once a view was freed: %v, %v", v, err)
	}
	// Bound to a, both of whose streams leave: a is freed, not b's slot.
	w.vc.Unbind(na)
	w.vc.Unbind(n2)
	if _, err := w.vc.Bind(nb, resource.ClusterType, Proxy{ID: "p2", Network: "b"}); err != nil {
		t.Fatalf("Bind with one slot free: %v", err)
	}
	_, err = w.vc.Bind(&corev3.Node{Id: "p5"}, resource.ClusterType, Proxy{ID: "p5", Network: "d"})
	wantCodeMsg(t, err, codes.ResourceExhausted, "limit of 2 views")

	// The default bound applies when none is given.
	if got := NewViewCache(nil, nil, 0).maxViews; got != DefaultMaxViews {
		t.Fatalf("default maxViews %d, want %d", got, DefaultMaxViews)
	}
}

func wantCodeMsg(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), msg) {
		t.Fatalf("error %v, want %s containing %q", err, code, msg)
	}
}

// The classifier's verdicts: an unsupported type binds to no view and its
// watches are never answered; a status error is kept; any other error
// becomes InvalidArgument. None of them creates a view.
func TestViewCacheBindClassifierErrors(t *testing.T) {
	w := newVCWorld(0)
	const nds = "type.googleapis.com/istio.networking.nds.v1.NameTable"
	n := &corev3.Node{Id: "agent"}
	_, err := w.vc.Bind(n, nds, Proxy{ID: "agent"})
	var unsupported errUnsupported
	if !errors.As(err, &unsupported) || !strings.Contains(err.Error(), nds) {
		t.Fatalf("Bind of an unsupported type: %v, want UnsupportedType naming it", err)
	}
	ch := make(chan cache.Response, 1)
	cancel, err := w.vc.CreateWatch(&cache.Request{Node: n, TypeUrl: nds}, xdsstream.NewSotwSubscription(nil, true), ch)
	if err != nil || cancel == nil {
		t.Fatalf("CreateWatch of the unsupported type: %v", err)
	}
	vcMustBlock(t, ch)
	dch := make(chan cache.DeltaResponse, 1)
	if _, err := w.vc.CreateDeltaWatch(&cache.DeltaRequest{Node: n, TypeUrl: nds}, xdsstream.NewDeltaSubscription(nil, nil, nil, true), dch); err != nil {
		t.Fatalf("CreateDeltaWatch of the unsupported type: %v", err)
	}
	vcMustBlockDelta(t, dch)

	_, err = w.vc.Bind(&corev3.Node{Id: "r"}, resource.EndpointType, Proxy{ID: "r", Network: "refused"})
	wantCodeMsg(t, err, codes.PermissionDenied, "network refused")
	_, err = w.vc.Bind(&corev3.Node{Id: "b"}, resource.EndpointType, Proxy{ID: "b", Network: "broken"})
	wantCodeMsg(t, err, codes.InvalidArgument, "cannot classify")
	if len(w.vc.Views()) != 0 {
		t.Fatalf("views %v after refused binds", w.vc.Views())
	}
	w.vc.Unbind(n)
}

// A NACK carries the last version the proxy accepted ("" if none):
// answering it would resend what the proxy just rejected. The watch blocks
// until the view changes.
func TestViewCacheNACKIsNotAnsweredWithTheSameResources(t *testing.T) {
	w := newVCWorld(0)
	v := cdsView("a")
	w.set(v, map[string]types.Resource{"x": cluster("x", time.Second)})
	n, _ := w.bind(t, "p1", "a", resource.ClusterType)
	c := newSotwClient(w, n, resource.ClusterType)
	c.watch(t)
	c.recv(t)
	nack := &cache.Request{Node: n, TypeUrl: resource.ClusterType, VersionInfo: "", ResponseNonce: "1",
		ErrorDetail: &statuspb.Status{Code: int32(codes.InvalidArgument), Message: "bad cluster x"}}
	c.watchReq(t, nack)
	vcMustBlock(t, c.ch)
	if nack.GetVersionInfo() != "" {
		t.Fatalf("CreateWatch modified the request: version %q", nack.GetVersionInfo())
	}
	// A request with no version and no error is a fresh one: answered.
	c2 := newSotwClient(w, n, resource.ClusterType)
	c2.watch(t)
	if content, _ := c2.recv(t); len(content) != 1 {
		t.Fatalf("a fresh request got %v", names(content))
	}
	// The next change reaches the proxy that rejected the last one.
	if _, err := w.vc.Update(v, map[string]types.Resource{"x": cluster("x", 2*time.Second)}); err != nil {
		t.Fatal(err)
	}
	content, ver := c.recv(t)
	if !atVersion(ver, 1) || content["x"].(*clusterv3.Cluster).GetConnectTimeout().AsDuration() != 2*time.Second {
		t.Fatalf("after the NACK, got %v at %q; want the fixed x at network=a-1", names(content), ver)
	}
}

// Updates racing with binds, unbinds and watches (run with -race): every
// stream that is current when the last change lands gets it.
func TestViewCacheConcurrentUpdates(t *testing.T) {
	w := newVCWorld(0)
	v := edsView("a")
	w.set(v, map[string]types.Resource{"a": cla("a", "10.0.0.0")})
	n, _ := w.bind(t, "keep", "a", resource.EndpointType)
	c := newSotwClient(w, n, resource.EndpointType)
	c.watch(t)
	c.recv(t)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 1; i <= 100; i++ {
			if _, err := w.vc.Update(v, map[string]types.Resource{"a": cla("a", fmt.Sprintf("10.0.0.%d", i))}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := range 100 {
			other := &corev3.Node{Id: fmt.Sprint("p", i)}
			if _, err := w.vc.Bind(other, resource.EndpointType, Proxy{ID: "p", Network: "a"}); err != nil {
				t.Error(err)
				return
			}
			_, _, _ = w.vc.Resources(v)
			w.vc.Unbind(other)
		}
	}()
	// Keep watching until the client has the last endpoint.
	for claIP(c.recvOrWatch(t)) != "10.0.0.100" {
	}
	wg.Wait()
	if ver := w.vc.Version(v); !atVersion(ver, 100) || c.version != ver {
		t.Fatalf("view at %q, client at %q; want network=a-100", ver, c.version)
	}
}

// recvOrWatch opens a watch at the client's version and returns a's
// content once it is answered, or what the client had if the watch was
// answered with nothing new for a.
func (c *sotwClient) recvOrWatch(t *testing.T) *endpointv3.ClusterLoadAssignment {
	t.Helper()
	c.watch(t)
	content, _ := c.recv(t)
	a, ok := content["a"].(*endpointv3.ClusterLoadAssignment)
	if !ok {
		t.Fatalf("response without a: %v", names(content))
	}
	return a
}

// atVersion reports whether ver is update n of a view of network "a" (its
// prefix also names the view's instance; see ViewCache.instance).
func atVersion(ver string, n int) bool {
	return strings.HasPrefix(ver, "network=a@") && strings.HasSuffix(ver, "-"+strconv.Itoa(n)) &&
		!strings.Contains(strings.TrimSuffix(ver, "-"+strconv.Itoa(n)), "-")
}

// A proxy that held a version of a view which was then freed (its last
// stream left, or discovery restarted) and is rebuilt empty must still be
// told: the new view's versions never match the old one's, so its request
// with the old version is answered — with nothing, which for clusters means
// "remove them all" — instead of waiting forever with stale clusters.
func TestViewCacheRecreatedEmptyViewAnswersAnOldVersion(t *testing.T) {
	w := newVCWorld(0)
	cds := cdsView("a")
	w.set(cds, map[string]types.Resource{"x": cluster("x", time.Second)})
	n, _ := w.bind(t, "p1", "a", resource.ClusterType)
	c := newSotwClient(w, n, resource.ClusterType)
	c.watch(t)
	if content, _ := c.recv(t); !slices.Equal(names(content), []string{"x"}) {
		t.Fatalf("first response %v", names(content))
	}
	held := c.version
	w.vc.Unbind(n)

	// x goes while nobody watches; the proxy reconnects with its version.
	w.set(cds, nil)
	n2, _ := w.bind(t, "p1", "a", resource.ClusterType)
	c2 := newSotwClient(w, n2, resource.ClusterType)
	c2.watchReq(t, &cache.Request{Node: n2, TypeUrl: resource.ClusterType, VersionInfo: held})
	content, ver := c2.recv(t)
	if len(content) != 0 || ver == held {
		t.Fatalf("reconnected at %q: got %v at %q; want an empty response at a new version", held, names(content), ver)
	}
}
