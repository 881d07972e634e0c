package server

import (
	"errors"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// View names one set of proxies that receive identical resources of one
// type: its typed key (translate.View) and the type.
type View struct {
	TypeURL string
	Key     translate.View
}

func (v View) String() string { return TypeName(v.TypeURL) + "/" + v.Key.String() }

// TypeName is the short name of an xDS type URL ("eds", "cds", ...).
func TypeName(typeURL string) string {
	switch typeURL {
	case resource.EndpointType:
		return "eds"
	case resource.ClusterType:
		return "cds"
	case resource.ListenerType:
		return "lds"
	case resource.RouteType:
		return "rds"
	case resource.SecretType:
		return "sds"
	case translate.NameTableType:
		return "nds"
	}
	return typeURL
}

// Builder builds the current resources of a view.
type Builder func(View) map[string]types.Resource

// Classifier tells which view of a type a proxy belongs to. It returns
// UnsupportedType for a type Horizon does not serve, and a gRPC status
// error (or any error, taken as InvalidArgument) for a proxy it refuses.
// claimed reports a key that rests on what the proxy states rather than on
// what the control plane verified (translate.ProxyOf): such views are
// bounded per client (MaxClaimedViewsPerClient).
type Classifier func(typeURL string, p Proxy) (key translate.View, claimed bool, err error)

// MaxClaimedViewsPerClient bounds the views one client (Proxy.Client) may
// hold whose keys rest on its own claims, so that no client can fill the
// cache's bound with views it invents and lock other proxies out.
const MaxClaimedViewsPerClient = 8

// UnsupportedType is the Classifier's answer for a resource type Horizon
// does not serve.
func UnsupportedType(typeURL string) error { return errUnsupported(typeURL) }

type errUnsupported string

func (e errUnsupported) Error() string {
	return "resource type " + quote(string(e)) + " is not served (Horizon serves listeners, routes, clusters, endpoints and, to sidecars, Istio's NDS name table)"
}

// DefaultMaxViews bounds the views a ViewCache holds when NewViewCache is
// given no bound.
const DefaultMaxViews = 1024

// ViewCache holds the views: each view's resources, marshalled once
// however many streams receive them (see viewEntry), and which stream is
// bound to which view. The ADS server (ads.go) serves streams from it; the
// cache knows a stream only as its node and its subscriber (pushqueue.go),
// which it tells of changes and moves.
//
// A view lives exactly as long as a stream is bound to it: the Tracker binds
// a stream's node (its own pointer, see Tracker.request) to one view per
// type on the stream's first request of that type, and unbinds it when the
// stream closes; the last unbinding frees the view. At most maxViews views
// exist; binding a stream to a new view past that is ResourceExhausted.
type ViewCache struct {
	build    Builder
	classify Classifier
	maxViews int
	// instance and made make each view's version prefix unique to this
	// view of this process: a view is rebuilt from scratch when it is
	// recreated (its last proxy left and one came back, or the control
	// plane restarted) while a proxy may still hold a version of an
	// earlier one. Were the prefix the same, a proxy whose old version
	// matches would never be answered when the new view is empty (no
	// resource to send), and keep clusters or listeners that are gone.
	instance string
	made     uint64
	share    *anyShare // marshalled resources views share

	mu          sync.Mutex
	caches      map[View]*viewEntry
	bindings    map[*corev3.Node]map[string]*viewEntry // stream node -> type -> view; nil: unsupported type
	proxies     map[*corev3.Node]Proxy                 // what each bound stream's node says, to classify it again
	subscribers map[*corev3.Node]subscriber            // of each bound node's stream, told of its moves
	// claims counts, per client, the bindings of each view it is bound
	// to on a claimed key; claimedBy lists a node's such views.
	claims    map[string]map[View]int
	claimedBy map[*corev3.Node][]View
}

// NewViewCache returns a cache whose new views are filled by build, holding
// at most maxViews views (0: DefaultMaxViews).
func NewViewCache(build Builder, classify Classifier, maxViews int) *ViewCache {
	if maxViews <= 0 {
		maxViews = DefaultMaxViews
	}
	return &ViewCache{caches: map[View]*viewEntry{}, bindings: map[*corev3.Node]map[string]*viewEntry{},
		proxies: map[*corev3.Node]Proxy{}, subscribers: map[*corev3.Node]subscriber{},
		claims: map[string]map[View]int{}, claimedBy: map[*corev3.Node][]View{},
		share: newAnyShare(), build: build, classify: classify, maxViews: maxViews, instance: strconv.FormatInt(time.Now().UnixNano(), 36)}
}

// Views lists the views that exist (have a stream bound).
func (c *ViewCache) Views() []View {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]View, 0, len(c.caches))
	for v := range c.caches {
		out = append(out, v)
	}
	return out
}

// Bind binds the stream whose node is node to p's view of typeURL,
// creating (and building) the view if it is new. An unsupported type is
// bound to no view and reported as UnsupportedType.
func (c *ViewCache) Bind(node *corev3.Node, typeURL string, p Proxy) (View, error) {
	key, claimed, err := c.classify(typeURL, p)
	var unsupported errUnsupported
	if errors.As(err, &unsupported) {
		c.mu.Lock()
		c.bindingsOf(node)[typeURL] = nil
		c.mu.Unlock()
		return View{}, err
	}
	if err != nil {
		if _, ok := status.FromError(err); !ok {
			err = status.Error(codes.InvalidArgument, err.Error())
		}
		return View{}, err
	}
	v := View{TypeURL: typeURL, Key: key}
	c.mu.Lock()
	c.proxies[node] = p
	b := c.bindingsOf(node)
	if _, ok := b[typeURL]; ok {
		c.mu.Unlock()
		return v, nil // already bound (the Tracker binds each type once)
	}
	held := c.claims[p.Client]
	if claimed && held[v] == 0 && len(held) >= MaxClaimedViewsPerClient {
		c.mu.Unlock()
		return View{}, status.Errorf(codes.ResourceExhausted,
			"client %s holds its limit of %d views keyed by what its proxies state (labels of a workload the mesh does not know); refusing %s",
			quote(p.Client), MaxClaimedViewsPerClient, v)
	}
	e, building, err := c.acquireUnbuilt(v)
	if err != nil {
		c.mu.Unlock()
		return View{}, err
	}
	if building {
		// A new view is built under its own lock, not the cache's: a
		// build takes milliseconds to tens of them in a large mesh, and
		// every other stream's binding, update and close would wait on
		// it (a client opening and closing streams of a view no one else
		// holds could make the whole server wait on builds). Whoever reads
		// this view meanwhile waits on e.mu, for this view only.
		defer func() {
			e.fill(c.build(v))
			e.mu.Unlock()
		}()
	}
	defer c.mu.Unlock()
	b[typeURL] = e
	if claimed {
		if held == nil {
			held = map[View]int{}
			c.claims[p.Client] = held
		}
		held[v]++
		c.claimedBy[node] = append(c.claimedBy[node], v)
	}
	return v, nil
}

// Unbind releases every view the stream of node is bound to, freeing those
// no other stream is bound to.
func (c *ViewCache) Unbind(node *corev3.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.bindings[node] {
		if e != nil {
			c.release(e)
		}
	}
	if views := c.claimedBy[node]; len(views) > 0 {
		client := c.proxies[node].Client
		held := c.claims[client]
		for _, v := range views {
			if held[v]--; held[v] <= 0 {
				delete(held, v)
			}
		}
		if len(held) == 0 {
			delete(c.claims, client)
		}
		delete(c.claimedBy, node)
	}
	delete(c.bindings, node)
	delete(c.proxies, node)
	delete(c.subscribers, node)
}

// Reclassify classifies again the bound streams whose proxy match selects
// and moves each whose view of a type changed to its new view (creating
// it), as its first request would bind it now: a sidecar's clusters and
// listeners depend on the ports its workload serves, which change when a
// Service or an endpoint of the workload comes or goes after its proxy
// connected. The stream is then sent its new view whole. A proxy that is
// refused now keeps its view; so does one whose new view would pass
// maxViews. It reports how many bindings moved.
func (c *ViewCache) Reclassify(match func(Proxy) bool) int {
	type move struct {
		s       subscriber
		typeURL string
		e       *viewEntry
	}
	var moves []move
	c.mu.Lock()
	for node, p := range c.proxies {
		if !match(p) {
			continue
		}
		for typeURL, old := range c.bindings[node] {
			if old == nil {
				continue
			}
			key, claimed, err := c.classify(typeURL, p)
			if err != nil || claimed || key == old.view.Key {
				continue // a claimed key is never moved to: it is bounded at Bind only
			}
			e, err := c.acquire(View{TypeURL: typeURL, Key: key})
			if err != nil {
				continue // past maxViews: the stream keeps its view
			}
			c.release(old)
			c.bindings[node][typeURL] = e
			if s := c.subscribers[node]; s != nil {
				moves = append(moves, move{s, typeURL, e})
			}
		}
	}
	c.mu.Unlock()
	for _, m := range moves {
		m.s.viewMoved(m.typeURL, m.e)
	}
	return len(moves)
}

// acquire returns view v for one more binding, creating and building it
// if it is new: the one place a view is made (Bind, Reclassify). A new
// view past maxViews is ResourceExhausted. Called with c.mu held.
func (c *ViewCache) acquire(v View) (*viewEntry, error) {
	e, building, err := c.acquireUnbuilt(v)
	if building {
		e.fill(c.build(v))
		e.mu.Unlock()
	}
	return e, err
}

// acquireUnbuilt is acquire, except that a view it creates is returned
// unbuilt with its lock held (building): the caller fills it and unlocks
// it, and may release c.mu first. Called with c.mu held.
func (c *ViewCache) acquireUnbuilt(v View) (e *viewEntry, building bool, err error) {
	e, ok := c.caches[v]
	if !ok {
		if len(c.caches) >= c.maxViews {
			return nil, false, status.Errorf(codes.ResourceExhausted,
				"the control plane holds its limit of %d views; refusing a new %s view", c.maxViews, v)
		}
		c.made++
		e = emptyViewEntry(v, c.instance+"."+strconv.FormatUint(c.made, 36))
		e.share = c.share
		e.mu.Lock()
		building = true
		c.caches[v] = e
	}
	e.refs++
	return e, building, nil
}

// release gives back one binding of e, freeing the view with its last.
// Called with c.mu held.
func (c *ViewCache) release(e *viewEntry) {
	if e.refs--; e.refs == 0 {
		delete(c.caches, e.view)
		// Not under c.mu: a stream may hold e.mu while it waits for c.mu.
		go e.free()
	}
}

// bindingsOf returns node's bindings, creating them. Called with c.mu held.
func (c *ViewCache) bindingsOf(node *corev3.Node) map[string]*viewEntry {
	b := c.bindings[node]
	if b == nil {
		b = map[string]*viewEntry{}
		c.bindings[node] = b
	}
	return b
}

// Update replaces a view's resources; the streams of the view are sent
// only those that changed (the same pointer, or else by proto.Equal) and,
// on delta streams, the removals. It reports how many changed. A view
// nobody watches yet is left alone: it is built when first asked for.
func (c *ViewCache) Update(v View, resources map[string]types.Resource) (int, error) {
	c.mu.Lock()
	e, ok := c.caches[v]
	c.mu.Unlock()
	if !ok {
		return 0, nil
	}
	e.mu.Lock()
	if e.freed {
		e.mu.Unlock()
		return 0, nil
	}
	changed := map[string]types.Resource{}
	for name, r := range resources {
		// The same pointer is a resource the builder reused unchanged: no
		// need to compare it field by field.
		if old, ok := e.current[name]; !ok || (old != r && !proto.Equal(old, r)) {
			changed[name] = r
		}
	}
	var removed []string
	for name := range e.current {
		if _, ok := resources[name]; !ok {
			removed = append(removed, name)
		}
	}
	if len(changed) == 0 && len(removed) == 0 {
		e.mu.Unlock()
		return 0, nil // the view's version does not move
	}
	tell := e.apply(resources, changed, removed)
	e.mu.Unlock()
	for _, s := range tell {
		s.viewChanged()
	}
	return len(changed) + len(removed), nil
}

// Version returns the current version of a view, "" if it does not exist.
func (c *ViewCache) Version(v View) string {
	c.mu.Lock()
	e, ok := c.caches[v]
	c.mu.Unlock()
	if !ok {
		return ""
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.versionInfo()
}

// bound returns the view the stream of node is bound to for typeURL; nil
// without error for a type Horizon does not serve. Unless s is nil, it
// records s as the stream's subscriber, which Reclassify tells of moves:
// under the same lock, so that a Reclassify either moved the binding
// before (the view returned is the new one) or tells s.
func (c *ViewCache) bound(node *corev3.Node, typeURL string, s subscriber) (*viewEntry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.bindings[node][typeURL]
	if !ok {
		// The Tracker binds every request it accepts before the stream
		// subscribes: this is a stream that is closing, or a bug.
		return nil, status.Errorf(codes.Internal, "stream is not bound to a %s view", TypeName(typeURL))
	}
	if e != nil && s != nil {
		c.subscribers[node] = s
	}
	return e, nil
}
