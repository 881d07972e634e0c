package server

import (
	"errors"
	"fmt"
	"io"
	"reflect"
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
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/horizonmesh/horizon/internal/testing/testkit"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// These tests drive ViewCache through the real ADS server (NewGRPC, see
// adsconn_test.go for the harness and the mustBlock idiom) with raw ADS
// clients, and call the ViewCache API (Bind, Unbind, Update, Version,
// Resources, Views) directly where that is what they test.

// vcWorld is a ViewCache whose views are keyed by the proxy's network
// (EDS, CDS, LDS, RDS and the probe types of adsconn_test.go) and built
// from contents, counting builds.
type vcWorld struct {
	vc       *ViewCache
	mu       sync.Mutex
	contents map[View]map[string]types.Resource
	builds   map[View]int
}

func newVCWorld(maxViews int) *vcWorld {
	w := &vcWorld{contents: map[View]map[string]types.Resource{}, builds: map[View]int{}}
	classify := func(typeURL string, p Proxy) (translate.View, bool, error) {
		switch typeURL {
		case resource.EndpointType, resource.ClusterType, resource.ListenerType, resource.RouteType:
		default:
			if !strings.HasPrefix(typeURL, probeTypePrefix) {
				return translate.View{}, false, UnsupportedType(typeURL)
			}
		}
		switch p.Network {
		case "refused":
			return translate.View{}, false, status.Error(codes.PermissionDenied, "network refused")
		case "broken":
			return translate.View{}, false, errors.New("cannot classify")
		}
		// A network named "claimed-..." stands for a view keyed by what
		// the proxy claims.
		return translate.View{Network: p.Network}, strings.HasPrefix(p.Network, "claimed-"), nil
	}
	build := func(v View) map[string]types.Resource {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.builds[v]++
		if strings.HasPrefix(v.TypeURL, probeTypePrefix) {
			return map[string]types.Resource{"probe": cluster("probe", time.Second)}
		}
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

// views lists the views that exist, but for probe views, sorted.
func (w *vcWorld) views() []View {
	var out []View
	for _, v := range w.vc.Views() {
		if !strings.HasPrefix(v.TypeURL, probeTypePrefix) {
			out = append(out, v)
		}
	}
	sortViews(out)
	return out
}

func sortViews(vs []View) {
	sort.Slice(vs, func(i, j int) bool { return vs[i].String() < vs[j].String() })
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

// viewOf is typeURL's view of network (version prefix "network=<name>@").
func viewOf(typeURL, network string) View {
	return View{TypeURL: typeURL, Key: translate.View{Network: network}}
}

func edsView(network string) View { return viewOf(resource.EndpointType, network) }

func cdsView(network string) View { return viewOf(resource.ClusterType, network) }

// cla is a load assignment of one endpoint ip:8080.
func cla(name, ip string) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080}}}}}}}},
	}}}
}

func claIP(r proto.Message) string {
	return r.(*endpointv3.ClusterLoadAssignment).GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
}

func cluster(name string, timeout time.Duration) *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: name, ConnectTimeout: durationpb.New(timeout)}
}

// resOf is a resource of typeURL named name; different n, different content.
func resOf(typeURL, name string, n int) types.Resource {
	switch typeURL {
	case resource.EndpointType:
		return cla(name, fmt.Sprintf("10.0.%d.%d", n/256, n%256))
	case resource.ClusterType:
		return cluster(name, time.Duration(n+1)*time.Second)
	case resource.ListenerType:
		return &listenerv3.Listener{Name: name, StatPrefix: strconv.Itoa(n)}
	case resource.RouteType:
		return &routev3.RouteConfiguration{Name: name, InternalOnlyHeaders: []string{strconv.Itoa(n)}}
	}
	panic("no resource of type " + typeURL)
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

func names[M ~map[string]V, V any](m M) []string {
	return slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
}

// sameContent reports whether got holds exactly want's resources.
func sameContent(got map[string]proto.Message, want map[string]types.Resource) bool {
	if len(got) != len(want) {
		return false
	}
	for n, r := range want {
		if !proto.Equal(got[n], r) {
			return false
		}
	}
	return true
}

// atVersion reports whether ver is update n of a view of network "a" (its
// prefix also names the view's instance; see ViewCache.instance).
func atVersion(ver string, n int) bool {
	return strings.HasPrefix(ver, "network=a@") && strings.HasSuffix(ver, "-"+strconv.Itoa(n)) &&
		!strings.Contains(strings.TrimSuffix(ver, "-"+strconv.Itoa(n)), "-")
}

func wantCodeMsg(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), msg) {
		t.Fatalf("error %v, want %s containing %q", err, code, msg)
	}
}

// A new view is built once, on its first request, which is answered with
// everything at the view's version; a request at that version (an ACK, or
// a proxy back on a new stream with what it holds) is not answered until
// the view changes.
func TestViewCacheRequestAtCurrentVersionBlocks(t *testing.T) {
	w := newVCWorld(0)
	env := newADS(t, w)
	v := edsView("a")
	a, b := cla("a", "10.0.0.1"), cla("b", "10.0.0.2")
	w.set(v, map[string]types.Resource{"a": a, "b": b})
	s := env.sotw(t, "p1", "a")
	s.sub(t, resource.EndpointType)
	r := s.recv(t, resource.EndpointType)
	if w.buildCount(v) != 1 {
		t.Fatalf("%d builds at the first request, want 1", w.buildCount(v))
	}
	if !atVersion(r.GetVersionInfo(), 0) || r.GetVersionInfo() != w.vc.Version(v) {
		t.Fatalf("first response at version %q, the view at %q; want network=a@…-0", r.GetVersionInfo(), w.vc.Version(v))
	}
	if content := sotwContent(t, r); !slices.Equal(names(content), []string{"a", "b"}) || !proto.Equal(content["a"], a) || !proto.Equal(content["b"], b) {
		t.Fatalf("first response holds %v, want a and b as built", names(content))
	}
	res, ver, ok := w.vc.Resources(v)
	if !ok || !atVersion(ver, 0) || len(res) != 2 || res["a"] != a || res["b"] != b {
		t.Fatalf("Resources = %v, %q, %v; want the built a and b at version 0", res, ver, ok)
	}
	s.ack(t, resource.EndpointType)
	s.mustBlock(t)

	// A second stream of the view shares it: no second build.
	s2 := env.sotw(t, "p2", "a")
	s2.sub(t, resource.EndpointType)
	if r2 := s2.recv(t, resource.EndpointType); r2.GetVersionInfo() != r.GetVersionInfo() {
		t.Fatalf("second stream got version %q, want %q", r2.GetVersionInfo(), r.GetVersionInfo())
	}
	if w.buildCount(v) != 1 || !slices.Equal(w.views(), []View{v}) {
		t.Fatalf("%d builds, views %v after a second stream; want 1 build of %v", w.buildCount(v), w.views(), v)
	}
	s2.ack(t, resource.EndpointType)
	s2.mustBlock(t)

	// A proxy back on a new stream with the version it holds.
	s3 := env.sotw(t, "p1", "a")
	s3.send(t, &discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, VersionInfo: r.GetVersionInfo()})
	s3.mustBlock(t)
	// One naming resources is sent every one it names, even at the view's
	// version: an earlier stream of the proxy may have named fewer.
	s5 := env.sotw(t, "p4", "a")
	s5.send(t, &discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, VersionInfo: r.GetVersionInfo(), ResourceNames: []string{"a", "b"}})
	if got := names(sotwContent(t, s5.recv(t, resource.EndpointType))); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("a new stream naming a and b at the view's version got %v, want a and b", got)
	}
	s5.close()
	// One with a version of another view instance gets everything.
	s4 := env.sotw(t, "p3", "a")
	s4.send(t, &discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, VersionInfo: "network=a@old.1-0"})
	if got := names(sotwContent(t, s4.recv(t, resource.EndpointType))); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("a request at another instance's version got %v, want a and b", got)
	}

	// The next change reaches every stream, with what changed.
	if n, err := w.vc.Update(v, map[string]types.Resource{"a": cla("a", "10.0.0.9"), "b": b}); n != 1 || err != nil {
		t.Fatalf("Update = %d, %v; want 1 changed", n, err)
	}
	for i, s := range []*sotwStream{s, s2, s3, s4} {
		r := s.recv(t, resource.EndpointType)
		content := sotwContent(t, r)
		if !atVersion(r.GetVersionInfo(), 1) || !slices.Equal(names(content), []string{"a"}) || claIP(content["a"]) != "10.0.0.9" {
			t.Fatalf("stream %d after the change: %v at %q; want the new a at version 1", i+1, names(content), r.GetVersionInfo())
		}
	}
}

// Update with the resources the view holds — the same map, the same
// pointers, or equal copies — sends nothing to state-of-the-world or delta
// streams and leaves the version (and what Resources returns) alone; a
// changed resource is sent alone, at a new version, to every stream.
func TestViewCacheUpdate(t *testing.T) {
	w := newVCWorld(0)
	env := newADS(t, w)
	v := edsView("a")
	a, b := cla("a", "10.0.0.1"), cla("b", "10.0.0.2")
	built := map[string]types.Resource{"a": a, "b": b}
	w.set(v, built)
	s := env.sotw(t, "p1", "a")
	s.sub(t, resource.EndpointType)
	s.recv(t, resource.EndpointType)
	s.ack(t, resource.EndpointType)
	d := env.delta(t, "p2", "a")
	d.sub(t, resource.EndpointType, nil, nil)
	first := d.recv(t, resource.EndpointType)
	if !slices.Equal(first.names, []string{"a", "b"}) || len(first.removed) != 0 {
		t.Fatalf("first delta response holds %v, removes %v; want a and b", first.names, first.removed)
	}
	d.ack(t, resource.EndpointType)

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
		if ver := w.vc.Version(v); !atVersion(ver, 0) {
			t.Fatalf("Update with %s moved the version to %q", tc.name, ver)
		}
		if res, _, _ := w.vc.Resources(v); res["a"] != a || res["b"] != b {
			t.Fatalf("Update with %s replaced the view's resources", tc.name)
		}
	}
	// The version did not move, so nothing woke the streams; and the next
	// responses below are the next change, at version 1.
	s.mustBlock(t)
	d.mustBlock(t)

	// b's endpoint moves; a is an equal copy: only b is sent.
	b2 := cla("b", "10.0.0.3")
	upd := map[string]types.Resource{"a": proto.Clone(a), "b": b2}
	if n, err := w.vc.Update(v, upd); err != nil || n != 1 {
		t.Fatalf("Update changing b = %d, %v; want 1 changed", n, err)
	}
	if ver := w.vc.Version(v); !atVersion(ver, 1) {
		t.Fatalf("version after a change %q, want …-1", ver)
	}
	r := s.recv(t, resource.EndpointType)
	content := sotwContent(t, r)
	if !atVersion(r.GetVersionInfo(), 1) || !slices.Equal(names(content), []string{"b"}) || claIP(content["b"]) != "10.0.0.3" {
		t.Fatalf("state-of-the-world response holds %v at %q; want only the new b (EDS is not full-state) at version 1", names(content), r.GetVersionInfo())
	}
	dr := d.recv(t, resource.EndpointType)
	if !slices.Equal(dr.names, []string{"b"}) || len(dr.removed) != 0 || claIP(dr.content["b"]) != "10.0.0.3" {
		t.Fatalf("delta response holds %v, removes %v; want the new b only", dr.names, dr.removed)
	}
	if dr.versions["b"] == first.versions["b"] {
		t.Fatalf("b changed but kept its delta version %q", dr.versions["b"])
	}
	if res, ver, _ := w.vc.Resources(v); res["b"] != b2 || !atVersion(ver, 1) {
		t.Fatalf("Resources after the change: b %v at %q", res["b"], ver)
	}
	// The streams are current again.
	s.ack(t, resource.EndpointType)
	d.ack(t, resource.EndpointType)
	s.mustBlock(t)
	d.mustBlock(t)
	if n, err := w.vc.Update(v, cloneAll(upd)); err != nil || n != 0 {
		t.Fatalf("Update repeating the change = %d, %v", n, err)
	}

	// A new resource is sent too (and the next response is this one,
	// at version 2: repeating the change sent nothing).
	upd = copyMap(upd)
	upd["c"] = cla("c", "10.0.0.4")
	if n, err := w.vc.Update(v, upd); err != nil || n != 1 {
		t.Fatalf("Update adding c = %d, %v; want 1", n, err)
	}
	if r := s.recv(t, resource.EndpointType); !slices.Equal(names(sotwContent(t, r)), []string{"c"}) || !atVersion(r.GetVersionInfo(), 2) {
		t.Fatalf("after adding c: %v at %q", names(sotwContent(t, r)), r.GetVersionInfo())
	}
	if r := d.recv(t, resource.EndpointType); !slices.Equal(r.names, []string{"c"}) || len(r.removed) != 0 {
		t.Fatalf("delta after adding c: %v, removed %v", r.names, r.removed)
	}
}

// Per type, a state-of-the-world response after an Update holds only the
// changed resources for endpoints and routes, and every resource (full
// state, removals by omission) for clusters and listeners; a removal sends
// nothing on the former. Delta streams get the changes, with versions, and
// the removed names.
func TestViewCacheUpdateSendsOnlyWhatChanged(t *testing.T) {
	for _, tc := range []struct {
		typeURL string
		full    bool
	}{
		{resource.EndpointType, false},
		{resource.RouteType, false},
		{resource.ClusterType, true},
		{resource.ListenerType, true},
	} {
		t.Run(TypeName(tc.typeURL), func(t *testing.T) {
			w := newVCWorld(0)
			env := newADS(t, w)
			v := viewOf(tc.typeURL, "a")
			state := func(ns map[string]int) map[string]types.Resource {
				out := map[string]types.Resource{}
				for name, n := range ns {
					out[name] = resOf(tc.typeURL, name, n)
				}
				return out
			}
			w.set(v, state(map[string]int{"x": 1, "y": 1, "z": 1}))
			s := env.sotw(t, "p1", "a")
			s.sub(t, tc.typeURL)
			if got := names(sotwContent(t, s.recv(t, tc.typeURL))); !slices.Equal(got, []string{"x", "y", "z"}) {
				t.Fatalf("first response holds %v", got)
			}
			s.ack(t, tc.typeURL)
			d := env.delta(t, "p2", "a")
			d.sub(t, tc.typeURL, nil, nil)
			if r := d.recv(t, tc.typeURL); !slices.Equal(r.names, []string{"x", "y", "z"}) {
				t.Fatalf("first delta response holds %v", r.names)
			}
			d.ack(t, tc.typeURL)

			// y changes.
			want := state(map[string]int{"x": 1, "y": 2, "z": 1})
			if n, err := w.vc.Update(v, want); n != 1 || err != nil {
				t.Fatalf("Update changing y = %d, %v", n, err)
			}
			wantNames := []string{"y"}
			if tc.full {
				wantNames = []string{"x", "y", "z"}
			}
			r := s.recv(t, tc.typeURL)
			content := sotwContent(t, r)
			if !atVersion(r.GetVersionInfo(), 1) || !slices.Equal(names(content), wantNames) || !proto.Equal(content["y"], want["y"]) {
				t.Fatalf("after y changed: %v at %q; want %v with the new y at version 1", names(content), r.GetVersionInfo(), wantNames)
			}
			s.ack(t, tc.typeURL)
			if r := d.recv(t, tc.typeURL); !slices.Equal(r.names, []string{"y"}) || len(r.removed) != 0 || !proto.Equal(r.content["y"], want["y"]) {
				t.Fatalf("delta after y changed: %v, removed %v; want the new y", r.names, r.removed)
			}
			d.ack(t, tc.typeURL)

			// z is removed.
			if n, err := w.vc.Update(v, state(map[string]int{"x": 1, "y": 2})); n != 1 || err != nil {
				t.Fatalf("Update removing z = %d, %v", n, err)
			}
			if tc.full {
				r := s.recv(t, tc.typeURL)
				if got := names(sotwContent(t, r)); !atVersion(r.GetVersionInfo(), 2) || !slices.Equal(got, []string{"x", "y"}) {
					t.Fatalf("after z was removed: %v at %q; want x, y at version 2", got, r.GetVersionInfo())
				}
				s.ack(t, tc.typeURL)
			}
			if r := d.recv(t, tc.typeURL); len(r.names) != 0 || !slices.Equal(r.removed, []string{"z"}) {
				t.Fatalf("delta after z was removed: %v, removed %v; want z removed", r.names, r.removed)
			}
			d.ack(t, tc.typeURL)

			// x changes: the next response is this one (for endpoints and
			// routes, z's removal sent nothing).
			want = state(map[string]int{"x": 2, "y": 2})
			if n, err := w.vc.Update(v, want); n != 1 || err != nil {
				t.Fatalf("Update changing x = %d, %v", n, err)
			}
			wantNames = []string{"x"}
			if tc.full {
				wantNames = []string{"x", "y"}
			}
			r = s.recv(t, tc.typeURL)
			content = sotwContent(t, r)
			if !atVersion(r.GetVersionInfo(), 3) || !slices.Equal(names(content), wantNames) || !proto.Equal(content["x"], want["x"]) {
				t.Fatalf("after x changed: %v at %q; want %v with the new x at version 3", names(content), r.GetVersionInfo(), wantNames)
			}
			if r := d.recv(t, tc.typeURL); !slices.Equal(r.names, []string{"x"}) || len(r.removed) != 0 {
				t.Fatalf("delta after x changed: %v, removed %v; want x", r.names, r.removed)
			}
		})
	}
}

// A removal moves the version: a CDS (full-state) stream gets what is
// left, a delta stream the removed name; an EDS state-of-the-world stream
// cannot be told of a removal and gets nothing. Removing everything sends
// an empty CDS response.
func TestViewCacheRemoval(t *testing.T) {
	w := newVCWorld(0)
	env := newADS(t, w)
	cds, eds := cdsView("a"), edsView("a")
	x, y := cluster("x", time.Second), cluster("y", 2*time.Second)
	w.set(cds, map[string]types.Resource{"x": x, "y": y})
	w.set(eds, map[string]types.Resource{"x": cla("x", "10.0.0.1"), "y": cla("y", "10.0.0.2")})
	s := env.sotw(t, "p1", "a")
	s.sub(t, resource.ClusterType)
	if got := names(sotwContent(t, s.recv(t, resource.ClusterType))); !slices.Equal(got, []string{"x", "y"}) {
		t.Fatalf("first CDS response %v", got)
	}
	s.ack(t, resource.ClusterType)
	s.sub(t, resource.EndpointType)
	s.recv(t, resource.EndpointType)
	s.ack(t, resource.EndpointType)
	d := env.delta(t, "p2", "a")
	d.sub(t, resource.ClusterType, nil, nil)
	d.recv(t, resource.ClusterType)
	d.ack(t, resource.ClusterType)

	if n, err := w.vc.Update(cds, map[string]types.Resource{"x": x}); err != nil || n != 1 {
		t.Fatalf("Update removing y = %d, %v; want 1", n, err)
	}
	r := s.recv(t, resource.ClusterType)
	if !atVersion(r.GetVersionInfo(), 1) || r.GetVersionInfo() != w.vc.Version(cds) {
		t.Fatalf("CDS response after the removal at %q, view at %q; want version 1", r.GetVersionInfo(), w.vc.Version(cds))
	}
	if got := names(sotwContent(t, r)); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("CDS response after the removal holds %v, want x only", got)
	}
	s.ack(t, resource.ClusterType)
	if r := d.recv(t, resource.ClusterType); len(r.names) != 0 || !slices.Equal(r.removed, []string{"y"}) {
		t.Fatalf("delta CDS response: %v, removed %v; want y removed", r.names, r.removed)
	}
	d.ack(t, resource.ClusterType)
	if res, _, _ := w.vc.Resources(cds); len(res) != 1 || res["x"] != x {
		t.Fatalf("Resources after the removal: %v", res)
	}
	// Removing what is already gone is no change.
	if n, err := w.vc.Update(cds, map[string]types.Resource{"x": x}); err != nil || n != 0 {
		t.Fatalf("repeated removal = %d, %v", n, err)
	}
	s.mustBlock(t)
	d.mustBlock(t)
	// Everything removed: the full-state type says so with an empty
	// response (the next one: the repeated removal sent nothing).
	if n, err := w.vc.Update(cds, nil); err != nil || n != 1 {
		t.Fatalf("Update removing x = %d, %v", n, err)
	}
	if r := s.recv(t, resource.ClusterType); len(r.GetResources()) != 0 || !atVersion(r.GetVersionInfo(), 2) {
		t.Fatalf("CDS response after removing everything: %d resources at %q; want none at version 2", len(r.GetResources()), r.GetVersionInfo())
	}
	if r := d.recv(t, resource.ClusterType); len(r.names) != 0 || !slices.Equal(r.removed, []string{"x"}) {
		t.Fatalf("delta CDS response: %v, removed %v; want x removed", r.names, r.removed)
	}

	// EDS: the removal of y is not sent; the next EDS response is x's
	// change, at version 2.
	if n, err := w.vc.Update(eds, map[string]types.Resource{"x": cla("x", "10.0.0.1")}); err != nil || n != 1 {
		t.Fatalf("EDS Update removing y = %d, %v; want 1", n, err)
	}
	if ver := w.vc.Version(eds); !atVersion(ver, 1) {
		t.Fatalf("EDS version after the removal %q", ver)
	}
	if n, err := w.vc.Update(eds, map[string]types.Resource{"x": cla("x", "10.0.0.5")}); err != nil || n != 1 {
		t.Fatalf("EDS Update changing x = %d, %v; want 1", n, err)
	}
	r = s.recv(t, resource.EndpointType)
	if content := sotwContent(t, r); !atVersion(r.GetVersionInfo(), 2) || !slices.Equal(names(content), []string{"x"}) || claIP(content["x"]) != "10.0.0.5" {
		t.Fatalf("EDS response %v at %q; want only the new x at version 2", names(content), r.GetVersionInfo())
	}
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
		sortViews(want)
		if got := w.views(); !slices.Equal(got, want) {
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
		t.Fatalf("eds, still bound, at %q after p1 left; want version 1", ver)
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
	// A stream no longer bound finds no view to subscribe to.
	if e, err := w.vc.bound(n2, resource.EndpointType, nil); e != nil || status.Code(err) != codes.Internal {
		t.Fatalf("bound of an unbound stream: %v, %v; want Internal", e, err)
	}

	// A new stream builds the view afresh.
	builds := w.buildCount(eds)
	n4, _ := w.bind(t, "p4", "a", resource.EndpointType)
	if w.buildCount(eds) != builds+1 {
		t.Fatal("a freed view was not rebuilt for a new stream")
	}
	if res, _, _ := w.vc.Resources(eds); claIP(res["a"]) != "10.0.0.1" {
		t.Fatal("the rebuilt view holds the freed view's resources, not the builder's")
	}
	w.vc.Unbind(n3)
	w.vc.Unbind(n4)
	wantViews()
}

// Over gRPC: a stream's end releases its views, freeing those no other
// stream holds; a later stream gets a fresh build.
func TestViewCacheStreamEndFreesViews(t *testing.T) {
	w := newVCWorld(0)
	env := newADS(t, w)
	eds, cds := edsView("a"), cdsView("a")
	w.set(eds, map[string]types.Resource{"a": cla("a", "10.0.0.1")})
	w.set(cds, map[string]types.Resource{"a": cluster("a", time.Second)})
	s := env.sotw(t, "p1", "a")
	s.sub(t, resource.ClusterType)
	s.recv(t, resource.ClusterType)
	s.sub(t, resource.EndpointType)
	s.recv(t, resource.EndpointType)
	d := env.delta(t, "p2", "a")
	d.sub(t, resource.EndpointType, nil, nil)
	d.recv(t, resource.EndpointType)
	if got, want := w.views(), []View{cds, eds}; !slices.Equal(got, want) {
		t.Fatalf("views %v, want %v", got, want)
	}

	s.close()
	testkit.WaitFor(t, "the CDS view to be freed", func() bool { return slices.Equal(w.views(), []View{eds}) })
	d.close()
	testkit.WaitFor(t, "every view to be freed", func() bool { return len(w.vc.Views()) == 0 && len(env.tr.Streams()) == 0 })

	w.set(eds, map[string]types.Resource{"b": cla("b", "10.0.0.2")})
	builds := w.buildCount(eds)
	s2 := env.sotw(t, "p1", "a")
	s2.sub(t, resource.EndpointType)
	r := s2.recv(t, resource.EndpointType)
	if got := names(sotwContent(t, r)); w.buildCount(eds) != builds+1 || !slices.Equal(got, []string{"b"}) || !atVersion(r.GetVersionInfo(), 0) {
		t.Fatalf("a new stream got %v at %q after %d builds; want a fresh build holding b", got, r.GetVersionInfo(), w.buildCount(eds)-builds)
	}
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
	// The refused stream has no view to subscribe to.
	if e, err := w.vc.bound(nc, resource.EndpointType, nil); e != nil || status.Code(err) != codes.Internal {
		t.Fatalf("bound of the refused stream: %v, %v; want Internal", e, err)
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

// Over gRPC: a stream that would need a view past the limit ends with
// ResourceExhausted; the streams of existing views are still served.
func TestViewCacheMaxViewsEndsTheStream(t *testing.T) {
	w := newVCWorld(1)
	env := newADS(t, w)
	v := edsView("a")
	w.set(v, map[string]types.Resource{"a": cla("a", "10.0.0.1")})
	s := env.sotw(t, "p1", "a")
	s.sub(t, resource.EndpointType)
	s.recv(t, resource.EndpointType)
	s.ack(t, resource.EndpointType)

	refused := env.sotw(t, "p2", "b")
	refused.sub(t, resource.EndpointType)
	wantCodeMsg(t, refused.end(t), codes.ResourceExhausted, "limit of 1 views")
	refusedDelta := env.delta(t, "p3", "a")
	refusedDelta.sub(t, resource.ClusterType, nil, nil)
	wantCodeMsg(t, func() error { _, err := refusedDelta.next(); return err }(), codes.ResourceExhausted, "cds/network=a")

	if _, err := w.vc.Update(v, map[string]types.Resource{"a": cla("a", "10.0.0.2")}); err != nil {
		t.Fatal(err)
	}
	if r := s.recv(t, resource.EndpointType); !atVersion(r.GetVersionInfo(), 1) {
		t.Fatalf("the stream of the existing view got %q", r.GetVersionInfo())
	}
}

// The classifier's verdicts: an unsupported type binds to no view; a
// status error is kept; any other error becomes InvalidArgument. None of
// them creates a view.
func TestViewCacheBindClassifierErrors(t *testing.T) {
	w := newVCWorld(0)
	const nds = "type.googleapis.com/istio.networking.nds.v1.NameTable"
	n := &corev3.Node{Id: "agent"}
	_, err := w.vc.Bind(n, nds, Proxy{ID: "agent"})
	var unsupported errUnsupported
	if !errors.As(err, &unsupported) || !strings.Contains(err.Error(), nds) {
		t.Fatalf("Bind of an unsupported type: %v, want UnsupportedType naming it", err)
	}
	if e, err := w.vc.bound(n, nds, nil); e != nil || err != nil {
		t.Fatalf("bound of the unsupported type: %v, %v; want no view, no error", e, err)
	}

	_, err = w.vc.Bind(&corev3.Node{Id: "r"}, resource.EndpointType, Proxy{ID: "r", Network: "refused"})
	wantCodeMsg(t, err, codes.PermissionDenied, "network refused")
	_, err = w.vc.Bind(&corev3.Node{Id: "b"}, resource.EndpointType, Proxy{ID: "b", Network: "broken"})
	wantCodeMsg(t, err, codes.InvalidArgument, "cannot classify")
	if len(w.vc.Views()) != 0 {
		t.Fatalf("views %v after refused binds", w.vc.Views())
	}
	w.vc.Unbind(n)
}

// Over gRPC: requests of an unsupported type are never answered and keep
// the stream, which is still served the other types; a refused proxy's
// stream ends with the classifier's error.
func TestViewCacheClassifierErrorsOnStreams(t *testing.T) {
	w := newVCWorld(0)
	env := newADS(t, w)
	const nds = "type.googleapis.com/istio.networking.nds.v1.NameTable"
	w.set(cdsView("a"), map[string]types.Resource{"x": cluster("x", time.Second)})
	s := env.sotw(t, "agent", "a")
	s.sub(t, nds)
	s.mustBlock(t)
	s.sub(t, resource.ClusterType)
	if got := names(sotwContent(t, s.recv(t, resource.ClusterType))); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("CDS after an unsupported type: %v", got)
	}
	s.sub(t, nds) // again: still not answered
	s.mustBlock(t)
	d := env.delta(t, "agent2", "a")
	d.sub(t, nds, nil, nil)
	d.mustBlock(t)

	for _, tc := range []struct {
		network string
		code    codes.Code
		msg     string
	}{
		{"refused", codes.PermissionDenied, "network refused"},
		{"broken", codes.InvalidArgument, "cannot classify"},
	} {
		s := env.sotw(t, "p", tc.network)
		s.sub(t, resource.EndpointType)
		wantCodeMsg(t, s.end(t), tc.code, tc.msg)
		d := env.delta(t, "p", tc.network)
		d.sub(t, resource.ClusterType, nil, nil)
		_, err := d.next()
		wantCodeMsg(t, err, tc.code, tc.msg)
	}
	if got, want := w.views(), []View{cdsView("a")}; !slices.Equal(got, want) {
		t.Fatalf("views %v, want %v", got, want)
	}
}

// A request without a type URL ends the stream: ADS needs it.
func TestViewCacheRequestWithoutTypeURL(t *testing.T) {
	env := newADS(t, newVCWorld(0))
	s := env.sotw(t, "p1", "a")
	s.send(t, &discovery.DiscoveryRequest{})
	wantCodeMsg(t, s.end(t), codes.InvalidArgument, "type URL is required")
	d := env.delta(t, "p2", "a")
	d.send(t, &discovery.DeltaDiscoveryRequest{})
	_, err := d.next()
	wantCodeMsg(t, err, codes.InvalidArgument, "type URL is required")
}

// An ACK with a stale nonce (of a response the stream has since been
// sent a newer one after) is ignored, even when it names new resources;
// the same request acknowledging the latest response is answered.
func TestViewCacheStaleACKIsIgnored(t *testing.T) {
	w := newVCWorld(0)
	env := newADS(t, w)
	v := edsView("a")
	w.set(v, map[string]types.Resource{"a": cla("a", "10.0.0.1"), "b": cla("b", "10.0.0.2")})
	s := env.sotw(t, "p1", "a")
	s.sub(t, resource.EndpointType, "a")
	r1 := s.recv(t, resource.EndpointType)
	if got := names(sotwContent(t, r1)); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("first response %v, want a", got)
	}
	if _, err := w.vc.Update(v, map[string]types.Resource{"a": cla("a", "10.0.0.3"), "b": cla("b", "10.0.0.2")}); err != nil {
		t.Fatal(err)
	}
	r2 := s.recv(t, resource.EndpointType)
	if r2.GetNonce() == r1.GetNonce() {
		t.Fatalf("two responses with nonce %q", r1.GetNonce())
	}
	s.send(t, &discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, VersionInfo: r1.GetVersionInfo(),
		ResponseNonce: r1.GetNonce(), ResourceNames: []string{"a", "b"}})
	s.mustBlock(t)
	s.sub(t, resource.EndpointType, "a", "b")
	r3 := s.recv(t, resource.EndpointType)
	if got := names(sotwContent(t, r3)); !slices.Equal(got, []string{"b"}) || !atVersion(r3.GetVersionInfo(), 1) {
		t.Fatalf("after subscribing to b: %v at %q; want b at version 1", got, r3.GetVersionInfo())
	}
}

// A NACK carries the last version the proxy accepted ("" if none):
// answering it would resend what the proxy just rejected. It is not
// answered; the next change reaches the proxy that rejected the last one.
func TestViewCacheNACKIsNotAnsweredWithTheSameResources(t *testing.T) {
	w := newVCWorld(0)
	env := newADS(t, w)
	v := cdsView("a")
	w.set(v, map[string]types.Resource{"x": cluster("x", time.Second)})
	s := env.sotw(t, "p1", "a")
	s.sub(t, resource.ClusterType)
	r0 := s.recv(t, resource.ClusterType)
	s.send(t, &discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, VersionInfo: "", ResponseNonce: r0.GetNonce(),
		ErrorDetail: &statuspb.Status{Code: int32(codes.InvalidArgument), Message: "bad cluster x"}})
	s.mustBlock(t)
	if st := env.tr.Streams(); len(st) != 1 || st[0].Types[resource.ClusterType].NACKs != 1 || st[0].Types[resource.ClusterType].LastNACK != "bad cluster x" {
		t.Fatalf("the Tracker did not record the NACK: %+v", st)
	}
	// Another stream's first request is answered.
	s2 := env.sotw(t, "p2", "a")
	s2.sub(t, resource.ClusterType)
	if got := names(sotwContent(t, s2.recv(t, resource.ClusterType))); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("a fresh request got %v", got)
	}
	// The next change reaches the proxy that rejected the last one.
	if _, err := w.vc.Update(v, map[string]types.Resource{"x": cluster("x", 2*time.Second)}); err != nil {
		t.Fatal(err)
	}
	r1 := s.recv(t, resource.ClusterType)
	if c := sotwContent(t, r1); !atVersion(r1.GetVersionInfo(), 1) || c["x"].(*clusterv3.Cluster).GetConnectTimeout().AsDuration() != 2*time.Second {
		t.Fatalf("after the NACK, got %v at %q; want the fixed x at version 1", names(c), r1.GetVersionInfo())
	}
	s.ack(t, resource.ClusterType)
	// A NACK of a later response carries the version accepted before it.
	if _, err := w.vc.Update(v, map[string]types.Resource{"x": cluster("x", 3*time.Second)}); err != nil {
		t.Fatal(err)
	}
	r2 := s.recv(t, resource.ClusterType)
	s.send(t, &discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, VersionInfo: r1.GetVersionInfo(), ResponseNonce: r2.GetNonce(),
		ErrorDetail: &statuspb.Status{Code: int32(codes.InvalidArgument), Message: "bad cluster x again"}})
	s.mustBlock(t)
	if _, err := w.vc.Update(v, map[string]types.Resource{"x": cluster("x", 4*time.Second)}); err != nil {
		t.Fatal(err)
	}
	if r := s.recv(t, resource.ClusterType); !atVersion(r.GetVersionInfo(), 3) {
		t.Fatalf("after the second NACK, got version %q; want 3", r.GetVersionInfo())
	}
}

// State of the world: an EDS request naming a new cluster gets that
// cluster's load assignment alone; names no longer requested are not sent
// when they change; a name the view lacks is sent once it exists; "*"
// asks for everything.
func TestViewCacheSotwSubscriptionChanges(t *testing.T) {
	w := newVCWorld(0)
	env := newADS(t, w)
	v := edsView("a")
	res := map[string]types.Resource{"a": cla("a", "10.0.0.1"), "b": cla("b", "10.0.0.2"), "c": cla("c", "10.0.0.3")}
	w.set(v, res)
	s := env.sotw(t, "p1", "a")
	s.sub(t, resource.EndpointType, "a")
	if got := names(sotwContent(t, s.recv(t, resource.EndpointType))); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("first response %v, want a", got)
	}
	s.sub(t, resource.EndpointType, "a", "b")
	r := s.recv(t, resource.EndpointType)
	if got := names(sotwContent(t, r)); !slices.Equal(got, []string{"b"}) || !atVersion(r.GetVersionInfo(), 0) {
		t.Fatalf("after naming b: %v at %q; want b alone at version 0", got, r.GetVersionInfo())
	}
	// Dropping a: nothing to send.
	s.sub(t, resource.EndpointType, "b")
	s.mustBlock(t)
	// a changes (not sent), then b: the next response is b's, at 2.
	res = copyMap(res)
	res["a"] = cla("a", "10.0.1.1")
	if _, err := w.vc.Update(v, res); err != nil {
		t.Fatal(err)
	}
	res = copyMap(res)
	res["b"] = cla("b", "10.0.1.2")
	if _, err := w.vc.Update(v, res); err != nil {
		t.Fatal(err)
	}
	r = s.recv(t, resource.EndpointType)
	if c := sotwContent(t, r); !slices.Equal(names(c), []string{"b"}) || claIP(c["b"]) != "10.0.1.2" || !atVersion(r.GetVersionInfo(), 2) {
		t.Fatalf("after a and b changed: %v at %q; want the new b alone at version 2", names(c), r.GetVersionInfo())
	}
	// A name the view lacks: nothing yet; sent once it exists.
	s.sub(t, resource.EndpointType, "b", "d")
	s.mustBlock(t)
	res = copyMap(res)
	res["d"] = cla("d", "10.0.0.4")
	if _, err := w.vc.Update(v, res); err != nil {
		t.Fatal(err)
	}
	r = s.recv(t, resource.EndpointType)
	if got := names(sotwContent(t, r)); !slices.Equal(got, []string{"d"}) || !atVersion(r.GetVersionInfo(), 3) {
		t.Fatalf("after d was added: %v at %q; want d at version 3", got, r.GetVersionInfo())
	}
	// "*": everything.
	s.sub(t, resource.EndpointType, "*")
	r = s.recv(t, resource.EndpointType)
	if c := sotwContent(t, r); !sameContent(c, res) || !atVersion(r.GetVersionInfo(), 3) {
		t.Fatalf("after subscribing to *: %v at %q; want a, b, c, d at version 3", names(c), r.GetVersionInfo())
	}
}

// State of the world, clusters by name: a response holds every subscribed
// cluster (full state); a change of an unsubscribed cluster sends nothing;
// a new name is answered, even one the view lacks.
func TestViewCacheSotwNamedClusters(t *testing.T) {
	w := newVCWorld(0)
	env := newADS(t, w)
	v := cdsView("a")
	state := func(x, z int) map[string]types.Resource {
		return map[string]types.Resource{"x": cluster("x", time.Duration(x)*time.Second), "y": cluster("y", time.Second), "z": cluster("z", time.Duration(z)*time.Second)}
	}
	w.set(v, state(1, 1))
	s := env.sotw(t, "p1", "a")
	s.sub(t, resource.ClusterType, "x", "y")
	if got := names(sotwContent(t, s.recv(t, resource.ClusterType))); !slices.Equal(got, []string{"x", "y"}) {
		t.Fatalf("first response %v, want x and y", got)
	}
	s.ack(t, resource.ClusterType)
	// z changes (nothing sent), then x: the next response is x's, at 2.
	if _, err := w.vc.Update(v, state(1, 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.vc.Update(v, state(2, 2)); err != nil {
		t.Fatal(err)
	}
	r := s.recv(t, resource.ClusterType)
	if c := sotwContent(t, r); !slices.Equal(names(c), []string{"x", "y"}) || !proto.Equal(c["x"], cluster("x", 2*time.Second)) || !atVersion(r.GetVersionInfo(), 2) {
		t.Fatalf("after z and x changed: %v at %q; want x (new) and y at version 2", names(c), r.GetVersionInfo())
	}
	s.sub(t, resource.ClusterType, "x", "y", "gone")
	if got := names(sotwContent(t, s.recv(t, resource.ClusterType))); !slices.Equal(got, []string{"x", "y"}) {
		t.Fatalf("after naming a cluster the view lacks: %v, want x and y", got)
	}
}

// Delta: resource_names_subscribe and _unsubscribe change what is sent;
// "*" subscribes to everything (sent: what the stream does not hold), and
// unsubscribing "*" leaves the names subscribed.
func TestViewCacheDeltaSubscriptions(t *testing.T) {
	w := newVCWorld(0)
	env := newADS(t, w)
	v := edsView("a")
	res := map[string]types.Resource{"a": cla("a", "10.0.0.1"), "b": cla("b", "10.0.0.2"), "c": cla("c", "10.0.0.3")}
	w.set(v, res)
	update := func(change func(map[string]types.Resource)) {
		t.Helper()
		res = copyMap(res)
		change(res)
		if _, err := w.vc.Update(v, res); err != nil {
			t.Fatal(err)
		}
	}
	d := env.delta(t, "p1", "a")
	d.sub(t, resource.EndpointType, []string{"a"}, nil)
	if r := d.recv(t, resource.EndpointType); !slices.Equal(r.names, []string{"a"}) {
		t.Fatalf("first response %v, want a", r.names)
	}
	d.sub(t, resource.EndpointType, []string{"b"}, nil)
	if r := d.recv(t, resource.EndpointType); !slices.Equal(r.names, []string{"b"}) || len(r.removed) != 0 {
		t.Fatalf("after subscribing to b: %v, removed %v; want b alone", r.names, r.removed)
	}
	d.sub(t, resource.EndpointType, nil, []string{"a"})
	d.mustBlock(t)
	// a and b change: only b is sent.
	update(func(m map[string]types.Resource) { m["a"], m["b"] = cla("a", "10.0.1.1"), cla("b", "10.0.1.2") })
	if r := d.recv(t, resource.EndpointType); !slices.Equal(r.names, []string{"b"}) || claIP(r.content["b"]) != "10.0.1.2" {
		t.Fatalf("after a and b changed: %v; want the new b alone", r.names)
	}
	d.ack(t, resource.EndpointType)
	// b is removed.
	update(func(m map[string]types.Resource) { delete(m, "b") })
	if r := d.recv(t, resource.EndpointType); len(r.names) != 0 || !slices.Equal(r.removed, []string{"b"}) {
		t.Fatalf("after b was removed: %v, removed %v; want b removed", r.names, r.removed)
	}
	d.ack(t, resource.EndpointType)
	// "*": everything the stream does not hold.
	d.sub(t, resource.EndpointType, []string{"*"}, nil)
	if r := d.recv(t, resource.EndpointType); !slices.Equal(r.names, []string{"a", "c"}) || len(r.removed) != 0 {
		t.Fatalf("after subscribing to *: %v, removed %v; want a and c", r.names, r.removed)
	}
	d.sub(t, resource.EndpointType, []string{"*"}, nil) // again: nothing new
	d.mustBlock(t)
	// Unsubscribing "*" leaves b subscribed: a and c are no longer sent.
	d.sub(t, resource.EndpointType, nil, []string{"*"})
	d.mustBlock(t)
	update(func(m map[string]types.Resource) {
		m["a"], m["c"], m["b"] = cla("a", "10.0.2.1"), cla("c", "10.0.2.3"), cla("b", "10.0.2.2")
	})
	if r := d.recv(t, resource.EndpointType); !slices.Equal(r.names, []string{"b"}) || len(r.removed) != 0 {
		t.Fatalf("after unsubscribing from *: %v, removed %v; want b alone", r.names, r.removed)
	}
}

// A delta stream's first request may list the resources the proxy holds
// (initial_resource_versions, on a reconnect): those at the view's current
// versions are not resent, those at other versions are, those the view no
// longer has are removed, and the rest of the view is sent.
func TestViewCacheDeltaInitialResourceVersions(t *testing.T) {
	w := newVCWorld(0)
	env := newADS(t, w)
	v := cdsView("a")
	w.set(v, map[string]types.Resource{"x": cluster("x", time.Second), "y": cluster("y", time.Second), "z": cluster("z", time.Second)})
	keep := env.sotw(t, "p0", "a") // holds the view while p1 is away
	keep.sub(t, resource.ClusterType)
	keep.recv(t, resource.ClusterType)
	d := env.delta(t, "p1", "a")
	d.sub(t, resource.ClusterType, nil, nil)
	held := d.recv(t, resource.ClusterType)
	if !slices.Equal(held.names, []string{"x", "y", "z"}) {
		t.Fatalf("first response %v", held.names)
	}
	d.close()
	// While the proxy is away: y changes, z goes, n is new.
	if _, err := w.vc.Update(v, map[string]types.Resource{"x": cluster("x", time.Second), "y": cluster("y", 2*time.Second), "n": cluster("n", time.Second)}); err != nil {
		t.Fatal(err)
	}
	d2 := env.delta(t, "p1", "a")
	d2.send(t, &discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, InitialResourceVersions: held.versions})
	r := d2.recv(t, resource.ClusterType)
	if !slices.Equal(r.names, []string{"n", "y"}) {
		t.Errorf("reconnected with x, y, z at their old versions: got %v; want n and y (x is current)", r.names)
	}
	if !slices.Equal(r.removed, []string{"z"}) {
		t.Errorf("reconnected holding z, which the view no longer has: removed %v; want z", r.removed)
	}
	if t.Failed() {
		return
	}
	d2.ack(t, resource.ClusterType)
	d2.mustBlock(t)

	// A proxy holding versions of another view instance gets everything.
	d3 := env.delta(t, "p3", "a")
	d3.send(t, &discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType,
		InitialResourceVersions: map[string]string{"x": "old.1-0", "y": "old.1-0"}})
	if r := d3.recv(t, resource.ClusterType); !slices.Equal(r.names, []string{"n", "x", "y"}) || len(r.removed) != 0 {
		t.Fatalf("reconnected with another instance's versions: %v, removed %v; want n, x, y", r.names, r.removed)
	}
}

// Every stream of a view gets the same response for a version: two state-
// of-the-world streams receive responses with the same nonce and version
// (the one encoded response), as do two delta streams; a stream whose
// responses are compressed gets the same content.
func TestViewCacheStreamsOfAViewShareResponses(t *testing.T) {
	w := newVCWorld(0)
	env := newADS(t, w)
	eds, cds := edsView("a"), cdsView("a")
	w.set(eds, map[string]types.Resource{"a": cla("a", "10.0.0.1"), "b": cla("b", "10.0.0.2")})
	w.set(cds, map[string]types.Resource{"a": cluster("a", time.Second), "b": cluster("b", time.Second)})
	s1, s2 := env.sotw(t, "p1", "a"), env.sotw(t, "p2", "a")
	gz := env.sotw(t, "p3", "a", grpc.UseCompressor(gzip.Name))
	d1, d2 := env.delta(t, "p4", "a"), env.delta(t, "p5", "a")
	same := func(what string, r1, r2 proto.Message, nonce1, nonce2 string) {
		t.Helper()
		if nonce1 != nonce2 || !proto.Equal(r1, r2) {
			t.Fatalf("%s: the streams got different responses:\n%v\n%v", what, r1, r2)
		}
	}
	for _, typeURL := range []string{resource.ClusterType, resource.EndpointType} {
		// The compressed stream asks first: a response encoded for it
		// must not be what the others are sent.
		var first *discovery.DiscoveryResponse
		for _, s := range []*sotwStream{gz, s1, s2} {
			s.sub(t, typeURL)
			r := s.recv(t, typeURL)
			s.ack(t, typeURL)
			switch s {
			case s1:
				first = r
			case s2:
				same("first "+TypeName(typeURL), first, r, first.GetNonce(), r.GetNonce())
			}
		}
		var firstDelta *deltaResult
		for _, d := range []*deltaStream{d1, d2} {
			d.sub(t, typeURL, nil, nil)
			r := d.recv(t, typeURL)
			d.ack(t, typeURL)
			if firstDelta == nil {
				firstDelta = r
			} else {
				same("first delta "+TypeName(typeURL), firstDelta.resp, r.resp, firstDelta.resp.GetNonce(), r.resp.GetNonce())
			}
		}
	}

	for i, upd := range []struct {
		v   View
		res map[string]types.Resource
	}{
		{eds, map[string]types.Resource{"a": cla("a", "10.0.0.3"), "b": cla("b", "10.0.0.2")}},
		{cds, map[string]types.Resource{"a": cluster("a", 2*time.Second), "b": cluster("b", time.Second)}},
	} {
		if n, err := w.vc.Update(upd.v, upd.res); n != 1 || err != nil {
			t.Fatalf("Update %d = %d, %v", i, n, err)
		}
		typeURL := upd.v.TypeURL
		r1, r2, rgz := s1.recv(t, typeURL), s2.recv(t, typeURL), gz.recv(t, typeURL)
		same(TypeName(typeURL)+" after an Update", r1, r2, r1.GetNonce(), r2.GetNonce())
		if r1.GetVersionInfo() != w.vc.Version(upd.v) {
			t.Fatalf("%s response at %q, the view at %q", TypeName(typeURL), r1.GetVersionInfo(), w.vc.Version(upd.v))
		}
		if c := sotwContent(t, rgz); rgz.GetVersionInfo() != r1.GetVersionInfo() || !proto.Equal(rgz, &discovery.DiscoveryResponse{
			VersionInfo: r1.GetVersionInfo(), Resources: r1.GetResources(), TypeUrl: typeURL, Nonce: rgz.GetNonce()}) {
			t.Fatalf("the compressed stream got %v at %q; want what the others got at %q", names(c), rgz.GetVersionInfo(), r1.GetVersionInfo())
		}
		dr1, dr2 := d1.recv(t, typeURL), d2.recv(t, typeURL)
		same("delta "+TypeName(typeURL)+" after an Update", dr1.resp, dr2.resp, dr1.resp.GetNonce(), dr2.resp.GetNonce())
		for _, s := range []*sotwStream{s1, s2, gz} {
			s.ack(t, typeURL)
		}
		d1.ack(t, typeURL)
		d2.ack(t, typeURL)
	}
}

// padded is a load assignment of about 100 kB, more than a stream's flow-
// control window: a response holding it waits for the client to read.
func padded(name string, n int) *endpointv3.ClusterLoadAssignment {
	c := cla(name, fmt.Sprintf("10.1.%d.%d", n/256, n%256))
	c.Endpoints[0].LbEndpoints[0].GetEndpoint().Hostname = strings.Repeat("h", 100<<10)
	return c
}

// A stream that lags — it does not read while many Updates land, more than
// the view's change log holds, and the server waits on flow control to
// send to it — still converges to the view's final state, state of the
// world and delta alike.
func TestViewCacheLaggingStreamConverges(t *testing.T) {
	w := newVCWorld(0)
	env := newADS(t, w)
	v := edsView("a")
	state := func(i int) map[string]types.Resource {
		// Every Update changes the padded resource and one of ten
		// others; one resource is removed half way, one added.
		m := map[string]types.Resource{"pad": padded("pad", i)}
		for k := range 10 {
			m["r"+strconv.Itoa(k)] = cla("r"+strconv.Itoa(k), "10.0.0.1")
		}
		for j := 1; j <= i; j++ {
			name := "r" + strconv.Itoa(j%10)
			m[name] = cla(name, fmt.Sprintf("10.2.%d.%d", j/256, j%256))
		}
		if i >= logSteps {
			delete(m, "r3")
		}
		if i >= logSteps+10 {
			m["new"] = cla("new", "10.0.0.7")
		}
		return m
	}
	w.set(v, state(0))
	s := env.sotw(t, "slow", "a")
	s.sub(t, resource.EndpointType)
	s.recv(t, resource.EndpointType)
	s.ack(t, resource.EndpointType)
	d := env.delta(t, "slow-delta", "a")
	d.sub(t, resource.EndpointType, nil, nil)
	d.recv(t, resource.EndpointType)
	d.ack(t, resource.EndpointType)

	const updates = 3 * logSteps
	for i := 1; i <= updates; i++ {
		if n, err := w.vc.Update(v, state(i)); n == 0 || err != nil {
			t.Fatalf("Update %d = %d, %v", i, n, err)
		}
	}
	final, finalVersion := state(updates), w.vc.Version(v)
	if !atVersion(finalVersion, updates) {
		t.Fatalf("view at %q after %d Updates", finalVersion, updates)
	}

	sotwHeld := map[string]proto.Message{}
	for responses := 0; ; responses++ {
		r := s.recv(t, resource.EndpointType)
		for n, m := range sotwContent(t, r) {
			sotwHeld[n] = m
		}
		if r.GetVersionInfo() == finalVersion {
			t.Logf("state of the world: %d responses for %d Updates", responses+1, updates)
			break
		}
	}
	delete(sotwHeld, "r3") // state of the world cannot tell an EDS removal
	if !sameContent(sotwHeld, final) {
		t.Fatalf("the lagging state-of-the-world stream holds %v, not the final state %v", names(sotwHeld), names(final))
	}
	s.ack(t, resource.EndpointType)
	s.mustBlock(t)

	deltaHeld := map[string]proto.Message{}
	for n, r := range state(0) {
		deltaHeld[n] = r
	}
	for !sameContent(deltaHeld, final) {
		r := d.recv(t, resource.EndpointType)
		for n, m := range r.content {
			deltaHeld[n] = m
		}
		for _, n := range r.removed {
			delete(deltaHeld, n)
		}
		if r.resp.GetSystemVersionInfo() == finalVersion && !sameContent(deltaHeld, final) {
			t.Fatalf("the lagging delta stream holds %v at the final version, not the final state %v", names(deltaHeld), names(final))
		}
	}
	d.ack(t, resource.EndpointType)
	d.mustBlock(t)
}

// A proxy that held a version of a view which was then freed (its last
// stream left, or discovery restarted) and is rebuilt empty must still be
// told: the new view's versions never match the old one's, so its request
// with the old version is answered — with nothing, which for clusters means
// "remove them all" — instead of waiting forever with stale clusters.
func TestViewCacheRecreatedEmptyViewAnswersAnOldVersion(t *testing.T) {
	w := newVCWorld(0)
	env := newADS(t, w)
	cds := cdsView("a")
	w.set(cds, map[string]types.Resource{"x": cluster("x", time.Second)})
	s := env.sotw(t, "p1", "a")
	s.sub(t, resource.ClusterType)
	r := s.recv(t, resource.ClusterType)
	if got := names(sotwContent(t, r)); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("first response %v", got)
	}
	held := r.GetVersionInfo()
	s.close()
	testkit.WaitFor(t, "the view to be freed", func() bool { return len(w.vc.Views()) == 0 })

	// x goes while nobody watches; the proxy reconnects with its version.
	w.set(cds, nil)
	s2 := env.sotw(t, "p1", "a")
	s2.send(t, &discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, VersionInfo: held})
	r2 := s2.recv(t, resource.ClusterType)
	if len(r2.GetResources()) != 0 || r2.GetVersionInfo() == held || r2.GetVersionInfo() != w.vc.Version(cds) {
		t.Fatalf("reconnected at %q: got %d resources at %q; want an empty response at the new view's version %q",
			held, len(r2.GetResources()), r2.GetVersionInfo(), w.vc.Version(cds))
	}
}

// Updates racing with streams connecting, reading, acknowledging and
// disconnecting (run with -race): every stream that is connected when the
// last change lands converges to it, and a stream opened after it gets it.
func TestViewCacheConcurrentUpdates(t *testing.T) {
	w := newVCWorld(0)
	env := newADS(t, w)
	eds, cds := edsView("a"), cdsView("a")
	const keys, updates = 5, 200
	edsState := func(i int) map[string]types.Resource {
		m := map[string]types.Resource{}
		for k := range keys {
			m["e"+strconv.Itoa(k)] = cla("e"+strconv.Itoa(k), "10.0.0.0")
		}
		for j := max(1, i-keys+1); j <= i; j++ { // the last keys Updates set one each
			name := "e" + strconv.Itoa(j%keys)
			m[name] = cla(name, fmt.Sprintf("10.3.%d.%d", j/256, j%256))
		}
		return m
	}
	cdsState := func(i int) map[string]types.Resource {
		m := map[string]types.Resource{}
		for k := range keys {
			if k != i%keys { // one cluster missing, another each time
				m["c"+strconv.Itoa(k)] = cluster("c"+strconv.Itoa(k), time.Duration(i+1)*time.Millisecond)
			}
		}
		return m
	}
	w.set(eds, edsState(0))
	w.set(cds, cdsState(0))

	type finalState struct {
		eds, cds       map[string]types.Resource
		edsVer, cdsVer string
	}
	var final finalState
	done := make(chan struct{}) // closed once final is set
	typeURLs := []string{resource.ClusterType, resource.EndpointType}

	// keepSotw reads s until it holds the final state, acknowledging
	// every response.
	keepSotw := func(s *sotwStream) error {
		held := map[string]map[string]proto.Message{resource.ClusterType: {}, resource.EndpointType: {}}
		version := map[string]string{}
		fin, timeout := done, time.After(testTimeout)
		for {
			if fin == nil && version[resource.ClusterType] == final.cdsVer && version[resource.EndpointType] == final.edsVer {
				if !sameContent(held[resource.ClusterType], final.cds) || !sameContent(held[resource.EndpointType], final.eds) {
					return fmt.Errorf("at the final versions, holds clusters %v, endpoints %v", names(held[resource.ClusterType]), names(held[resource.EndpointType]))
				}
				return nil
			}
			select {
			case <-fin:
				fin = nil
			case err := <-s.errc:
				return err
			case <-timeout:
				return fmt.Errorf("not converged in %v: at %v", testTimeout, version)
			case r := <-s.in:
				s.last[r.GetTypeUrl()] = r
				c, err := decodeSotw(r)
				if err != nil {
					return err
				}
				if r.GetTypeUrl() == resource.ClusterType {
					held[r.GetTypeUrl()] = c // full state
				} else {
					for n, m := range c {
						held[r.GetTypeUrl()][n] = m
					}
				}
				version[r.GetTypeUrl()] = r.GetVersionInfo()
				if err := s.trySend(s.ackOf(r.GetTypeUrl())); err != nil {
					return err
				}
			}
		}
	}
	keepDelta := func(d *deltaStream) error {
		held := map[string]map[string]proto.Message{resource.ClusterType: {}, resource.EndpointType: {}}
		fin, timeout := done, time.After(testTimeout)
		for {
			if fin == nil && sameContent(held[resource.ClusterType], final.cds) && sameContent(held[resource.EndpointType], final.eds) {
				return nil
			}
			select {
			case <-fin:
				fin = nil
			case err := <-d.errc:
				return err
			case <-timeout:
				return fmt.Errorf("not converged in %v: holds clusters %v, endpoints %v", testTimeout, names(held[resource.ClusterType]), names(held[resource.EndpointType]))
			case r := <-d.in:
				d.last[r.GetTypeUrl()] = r
				dr, err := decodeDelta(r)
				if err != nil {
					return err
				}
				for n, m := range dr.content {
					held[r.GetTypeUrl()][n] = m
				}
				for _, n := range dr.removed {
					delete(held[r.GetTypeUrl()], n)
				}
				if err := d.trySend(d.subOf(r.GetTypeUrl(), nil, nil)); err != nil {
					return err
				}
			}
		}
	}

	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 3 {
		s := env.sotw(t, fmt.Sprint("keep-sotw-", i), "a")
		d := env.delta(t, fmt.Sprint("keep-delta-", i), "a")
		for _, typeURL := range typeURLs {
			s.sub(t, typeURL)
			d.sub(t, typeURL, nil, nil)
		}
		wg.Add(2)
		go func() { defer wg.Done(); errs <- keepSotw(s) }()
		go func() { defer wg.Done(); errs <- keepDelta(d) }()
	}
	// Churners: streams that connect, read one response, and leave, until
	// the last Update has landed.
	var churn sync.WaitGroup
	for i := range 4 {
		churn.Add(1)
		go func() {
			defer churn.Done()
			for n := 0; ; n++ {
				select {
				case <-done:
					return
				default:
				}
				typeURL := typeURLs[n%2]
				var err error
				if i%2 == 0 {
					var s *sotwStream
					if s, err = env.openSotw(fmt.Sprint("churn-", i, "-", n), "a"); err == nil {
						if err = s.trySend(&discovery.DiscoveryRequest{TypeUrl: typeURL}); err == nil {
							_, err = s.next()
						}
						s.close()
					}
				} else {
					var d *deltaStream
					if d, err = env.openDelta(fmt.Sprint("churn-", i, "-", n), "a"); err == nil {
						if err = d.trySend(&discovery.DeltaDiscoveryRequest{TypeUrl: typeURL}); err == nil {
							_, err = d.next()
						}
						d.close()
					}
				}
				if err != nil {
					errs <- fmt.Errorf("churner %d: %w", i, err)
					return
				}
				_, _, _ = w.vc.Resources(eds)
				_ = w.vc.Version(cds)
			}
		}()
	}
	// The views exist once a stream asked for them (an Update of a view
	// that does not exist is dropped).
	testkit.WaitFor(t, "the views to exist", func() bool { return len(w.views()) == 2 })
	for i := 1; i <= updates; i++ {
		if _, err := w.vc.Update(eds, edsState(i)); err != nil {
			t.Fatal(err)
		}
		if _, err := w.vc.Update(cds, cdsState(i)); err != nil {
			t.Fatal(err)
		}
	}
	final = finalState{eds: edsState(updates), cds: cdsState(updates), edsVer: w.vc.Version(eds), cdsVer: w.vc.Version(cds)}
	if !atVersion(final.edsVer, updates) || !atVersion(final.cdsVer, updates) {
		t.Fatalf("views at %q and %q after %d Updates", final.edsVer, final.cdsVer, updates)
	}
	close(done)
	wg.Wait()
	churn.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}

	// A stream opened now gets the final state.
	s := env.sotw(t, "late", "a")
	s.sub(t, resource.EndpointType)
	if r := s.recv(t, resource.EndpointType); r.GetVersionInfo() != final.edsVer || !sameContent(sotwContent(t, r), final.eds) {
		t.Fatalf("a late stream got %v at %q; want the final state at %q", names(sotwContent(t, r)), r.GetVersionInfo(), final.edsVer)
	}
}

// When the context given to NewGRPC ends, the server ends its streams
// with no error (the client sees io.EOF) and Serve returns nil.
func TestViewCacheServerStopEndsStreams(t *testing.T) {
	w := newVCWorld(0)
	env := newADS(t, w)
	w.set(cdsView("a"), map[string]types.Resource{"x": cluster("x", time.Second)})
	s := env.sotw(t, "p1", "a")
	s.sub(t, resource.ClusterType)
	s.recv(t, resource.ClusterType)
	d := env.delta(t, "p2", "a")
	d.sub(t, resource.ClusterType, nil, nil)
	d.recv(t, resource.ClusterType)
	idle := env.sotw(t, "p3", "a") // a stream that has sent nothing
	testkit.WaitFor(t, "the server to hold the three streams", func() bool { return len(env.tr.Streams()) == 3 })

	env.stop()
	for name, end := range map[string]func() error{
		"state of the world": func() error { return s.end(t) },
		"delta":              func() error { _, err := d.next(); return err },
		"idle":               func() error { return idle.end(t) },
	} {
		if err := end(); !errors.Is(err, io.EOF) {
			t.Errorf("%s stream ended with %v, want io.EOF (status OK)", name, err)
		}
	}
	if err := env.serveResult(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// A first delta request naming nothing subscribes to everything (the
// legacy wildcard) only until the proxy names a resource: from then on it
// gets what it names, as on state-of-the-world streams.
func TestViewCacheDeltaLegacyWildcardEndsWithANamedSubscription(t *testing.T) {
	w := newVCWorld(0)
	env := newADS(t, w)
	v := edsView("a")
	w.set(v, map[string]types.Resource{"a": cla("a", "10.0.0.1"), "b": cla("b", "10.0.0.2")})
	d := env.delta(t, "p1", "a")
	d.sub(t, resource.EndpointType, nil, nil)
	if r := d.recv(t, resource.EndpointType); !slices.Equal(r.names, []string{"a", "b"}) {
		t.Fatalf("legacy wildcard: first response %v, want a and b", r.names)
	}
	d.sub(t, resource.EndpointType, []string{"a"}, nil)
	d.mustBlock(t)
	if _, err := w.vc.Update(v, map[string]types.Resource{"a": cla("a", "10.0.1.1"), "b": cla("b", "10.0.1.2")}); err != nil {
		t.Fatal(err)
	}
	if r := d.recv(t, resource.EndpointType); !slices.Equal(r.names, []string{"a"}) {
		t.Fatalf("after naming a: %v; want a alone", r.names)
	}
}

// State-of-the-world streams of a view asking for the same names share one
// set (a million map entries at 1,000 streams of 1,000 names otherwise); a
// stream that then asks for other names gets its own, and only the new
// names are sent.
func TestViewCacheStreamsShareTheirSubscription(t *testing.T) {
	w := newVCWorld(0)
	env := newADS(t, w)
	v := edsView("a")
	w.set(v, map[string]types.Resource{"a": cla("a", "10.0.0.1"), "b": cla("b", "10.0.0.2"), "c": cla("c", "10.0.0.3")})
	s1, s2 := env.sotw(t, "p1", "a"), env.sotw(t, "p2", "a")
	for _, s := range []*sotwStream{s1, s2} {
		s.sub(t, resource.EndpointType, "a", "b")
		s.recv(t, resource.EndpointType)
		s.ack(t, resource.EndpointType)
		s.mustBlock(t) // the ACK, its names unchanged, is handled
	}
	w.vc.mu.Lock()
	e := w.vc.caches[v]
	w.vc.mu.Unlock()
	sets := func() (n int, shared bool) {
		e.mu.Lock()
		defer e.mu.Unlock()
		var maps []map[string]struct{}
		for ts := range e.subs {
			maps = append(maps, ts.sub.names)
		}
		return len(e.nameSets), len(maps) == 2 && reflect.ValueOf(maps[0]).Pointer() == reflect.ValueOf(maps[1]).Pointer()
	}
	if n, shared := sets(); n != 1 || !shared {
		t.Fatalf("%d name sets, shared %v; want 1, shared", n, shared)
	}
	s2.sub(t, resource.EndpointType, "a", "b", "c")
	if r := s2.recv(t, resource.EndpointType); !slices.Equal(names(sotwContent(t, r)), []string{"c"}) {
		t.Fatalf("after adding c: %v; want c alone", names(sotwContent(t, r)))
	}
	if n, shared := sets(); n != 2 || shared {
		t.Fatalf("%d name sets, shared %v; want 2, not shared", n, shared)
	}
}

// Reclassify moves a stream whose proxy now belongs to another view: it is
// sent the new view whole (state of the world: every cluster; delta: what
// differs, and the removal of what the new view lacks), follows the new
// view's changes and no longer the old one's, and the old view is freed
// with its last stream.
func TestViewCacheReclassifyMovesStreams(t *testing.T) {
	w := newVCWorld(0)
	env := newADS(t, w)
	a, b := cdsView("a"), cdsView("b")
	w.set(a, map[string]types.Resource{"x": cluster("x", time.Second), "y": cluster("y", time.Second)})
	w.set(b, map[string]types.Resource{"x": cluster("x", 2*time.Second), "z": cluster("z", time.Second)})
	// Proxies on network "a" are classified by movedTo once it is set.
	var mu sync.Mutex
	movedTo := ""
	classify := w.vc.classify
	w.vc.classify = func(typeURL string, p Proxy) (translate.View, bool, error) {
		mu.Lock()
		defer mu.Unlock()
		if p.Network == "a" && movedTo != "" {
			p.Network = movedTo
		}
		return classify(typeURL, p)
	}
	s, d := env.sotw(t, "p1", "a"), env.delta(t, "p2", "a")
	s.sub(t, resource.ClusterType)
	s.recv(t, resource.ClusterType)
	s.ack(t, resource.ClusterType)
	d.sub(t, resource.ClusterType, nil, nil)
	d.recv(t, resource.ClusterType)
	d.ack(t, resource.ClusterType)

	mu.Lock()
	movedTo = "b"
	mu.Unlock()
	if n := w.vc.Reclassify(func(p Proxy) bool { return p.Network == "a" }); n != 2 {
		t.Fatalf("Reclassify moved %d bindings, want 2", n)
	}
	r := s.recv(t, resource.ClusterType)
	content := sotwContent(t, r)
	if got := names(content); !slices.Equal(got, []string{"x", "z"}) ||
		content["x"].(*clusterv3.Cluster).GetConnectTimeout().AsDuration() != 2*time.Second || !strings.HasPrefix(r.GetVersionInfo(), "network=b@") {
		t.Fatalf("after the move, SotW got %v at %q; want b's x and z", got, r.GetVersionInfo())
	}
	s.ack(t, resource.ClusterType)
	dr := d.recv(t, resource.ClusterType)
	if !slices.Equal(dr.names, []string{"x", "z"}) || !slices.Equal(dr.removed, []string{"y"}) {
		t.Fatalf("after the move, delta got %v, removed %v; want x and z, y removed", dr.names, dr.removed)
	}
	d.ack(t, resource.ClusterType)
	testkit.WaitFor(t, "view a freed", func() bool { return !slices.Contains(w.vc.Views(), a) })
	// The old view's changes no longer reach them; the new one's do.
	if _, err := w.vc.Update(b, map[string]types.Resource{"x": cluster("x", 3*time.Second), "z": cluster("z", time.Second)}); err != nil {
		t.Fatal(err)
	}
	if c := sotwContent(t, s.recv(t, resource.ClusterType)); c["x"].(*clusterv3.Cluster).GetConnectTimeout().AsDuration() != 3*time.Second {
		t.Fatalf("b's change did not reach the moved SotW stream: %v", names(c))
	}
	if dr := d.recv(t, resource.ClusterType); !slices.Equal(dr.names, []string{"x"}) {
		t.Fatalf("b's change reached the moved delta stream as %v, want x", dr.names)
	}
	if st := w.vc.Version(b); st == "" {
		t.Fatal("view b does not exist")
	}
}

// The name sets a view keeps for sharing live only while a stream holds
// them: a client that asked for maxNameSets invented lists and left takes
// no place from the view's later streams, which still share one set.
func TestViewNameSetsGoWithTheirStreams(t *testing.T) {
	w := newVCWorld(0)
	env := newADS(t, w)
	v := edsView("a")
	w.set(v, map[string]types.Resource{"a": cla("a", "10.0.0.1"), "b": cla("b", "10.0.0.2")})
	keep := env.sotw(t, "keeper", "a") // holds the view
	keep.sub(t, resource.EndpointType, "a")
	keep.recv(t, resource.EndpointType)
	hostile := env.sotw(t, "hostile", "a")
	for i := range maxNameSets + 1 {
		hostile.sub(t, resource.EndpointType, "a", fmt.Sprint("junk-", i))
		if i == 0 {
			hostile.recv(t, resource.EndpointType)
		}
	}
	hostile.mustBlock(t)
	w.vc.mu.Lock()
	e := w.vc.caches[v]
	w.vc.mu.Unlock()
	count := func() int {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.nameSets)
	}
	if n := count(); n > 2 {
		t.Fatalf("%d name sets kept for 2 streams' current lists", n)
	}
	hostile.close()
	testkit.WaitFor(t, "the hostile stream's sets to go", func() bool { return count() == 1 })
	s1, s2 := env.sotw(t, "p1", "a"), env.sotw(t, "p2", "a")
	for _, s := range []*sotwStream{s1, s2} {
		s.sub(t, resource.EndpointType, "a", "b")
		s.recv(t, resource.EndpointType)
	}
	e.mu.Lock()
	var maps []map[string]struct{}
	for ts := range e.subs {
		if len(ts.sub.names) == 2 {
			maps = append(maps, ts.sub.names)
		}
	}
	e.mu.Unlock()
	if len(maps) != 2 || reflect.ValueOf(maps[0]).Pointer() != reflect.ValueOf(maps[1]).Pointer() {
		t.Fatal("streams asking for the same names after the hostile one left do not share a set")
	}
}
