package server

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// View names one set of proxies that receive identical resources of one
// type: EDS views are networks, the CDS view is the sidecar role.
type View struct {
	TypeURL string
	Key     string
}

func (v View) String() string { return TypeName(v.TypeURL) + "/" + v.Key }

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
	}
	return typeURL
}

// Builder builds the current resources of a view.
type Builder func(View) map[string]types.Resource

// Classifier tells which view of a type a proxy belongs to.
type Classifier func(typeURL string, p Proxy) (key string, err error)

// ViewCache is a go-control-plane cache.Cache with one LinearCache per view.
// A LinearCache marshals each resource once however many streams watch it,
// whereas SnapshotCache marshals per response, i.e. once per proxy. Views are
// created when their first proxy asks and kept current by Update.
type ViewCache struct {
	mu       sync.Mutex
	caches   map[View]*viewEntry
	build    Builder
	classify Classifier
}

type viewEntry struct {
	lc *cache.LinearCache
	mu sync.Mutex // guards current and updates
	// current is what the view holds; updates counts UpdateResources calls,
	// which is exactly the LinearCache's own version counter.
	current map[string]types.Resource
	updates int
	prefix  string
}

// NewViewCache returns a cache whose new views are filled by build.
func NewViewCache(build Builder, classify Classifier) *ViewCache {
	return &ViewCache{caches: map[View]*viewEntry{}, build: build, classify: classify}
}

var _ cache.Cache = (*ViewCache)(nil)

// Views lists the views that exist (have had a proxy).
func (c *ViewCache) Views() []View {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]View, 0, len(c.caches))
	for v := range c.caches {
		out = append(out, v)
	}
	return out
}

// Update replaces a view's resources, sending only those that changed (by
// proto.Equal) and their removals; it reports how many changed. A view
// nobody watches yet is left alone: it is built when first asked for.
func (c *ViewCache) Update(v View, resources map[string]types.Resource) (int, error) {
	c.mu.Lock()
	e, ok := c.caches[v]
	c.mu.Unlock()
	if !ok {
		return 0, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	changed := map[string]types.Resource{}
	for name, r := range resources {
		if old, ok := e.current[name]; !ok || !proto.Equal(old, r) {
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
		return 0, nil // the view's version does not move
	}
	e.current = resources
	e.updates++
	return len(changed) + len(removed), e.lc.UpdateResources(changed, removed)
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
	return versionPrefix(v) + strconv.Itoa(e.updates)
}

// entryFor validates the requesting node and returns its view of typeURL.
func (c *ViewCache) entryFor(node *corev3.Node, typeURL string) (*viewEntry, error) {
	p, err := ProxyFromNode(node)
	if err != nil {
		return nil, err
	}
	return c.view(typeURL, p)
}

func (c *ViewCache) view(typeURL string, p Proxy) (*viewEntry, error) {
	key, err := c.classify(typeURL, p)
	if err != nil {
		return nil, err
	}
	v := View{TypeURL: typeURL, Key: key}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.caches[v]; ok {
		return e, nil
	}
	res := c.build(v)
	e := &viewEntry{
		lc:      cache.NewLinearCache(typeURL, cache.WithInitialResources(res), cache.WithVersionPrefix(versionPrefix(v))),
		current: res,
		prefix:  versionPrefix(v),
	}
	c.caches[v] = e
	return e, nil
}

func versionPrefix(v View) string { return v.Key + "-" }

// CreateWatch implements cache.ConfigWatcher for state-of-the-world streams.
func (c *ViewCache) CreateWatch(req *cache.Request, sub cache.Subscription, out chan cache.Response) (func(), error) {
	e, err := c.entryFor(req.GetNode(), req.GetTypeUrl())
	if err != nil {
		return nil, err
	}
	if req.GetErrorDetail() != nil && req.GetResponseNonce() != "" {
		// A NACK carries the last version the proxy accepted, "" if none:
		// LinearCache would answer "" with the same resources at once, and
		// the proxy would reject them again, in a loop. Treat the proxy as
		// current instead; the next change reaches it as usual.
		nack := proto.Clone(req).(*cache.Request)
		e.mu.Lock()
		nack.VersionInfo = e.prefix + strconv.Itoa(e.updates)
		e.mu.Unlock()
		req = nack
	}
	return e.lc.CreateWatch(req, sub, out)
}

// CreateDeltaWatch implements cache.ConfigWatcher for delta streams.
func (c *ViewCache) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, out chan cache.DeltaResponse) (func(), error) {
	e, err := c.entryFor(req.GetNode(), req.GetTypeUrl())
	if err != nil {
		return nil, err
	}
	return e.lc.CreateDeltaWatch(req, sub, out)
}

// Fetch is not served: Horizon speaks only streaming xDS.
func (c *ViewCache) Fetch(context.Context, *cache.Request) (cache.Response, error) {
	return nil, fmt.Errorf("REST fetch is not supported; use ADS")
}
