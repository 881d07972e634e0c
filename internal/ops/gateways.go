package ops

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/horizonmesh/horizon/internal/clip"
	"github.com/horizonmesh/horizon/internal/controlplane"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// DefaultGatewaysLimit is how many gateway endpoints one /debug/gateways
// answer holds unless ?limit= says otherwise (at most MaxGatewaysLimit).
const (
	DefaultGatewaysLimit = 200
	MaxGatewaysLimit     = 2000
)

// GatewaysAnswer is what /debug/gateways answers: a page of
// translate.GatewayEndpoints for the network's proxies, computed from the
// current mesh (a pure function of it, not a cached view). Next, when set,
// is the ?after= of the following page: the index of the first entry left.
type GatewaysAnswer struct {
	Network   string                      `json:"network"`
	Total     int                         `json:"total"`
	Next      string                      `json:"next,omitempty"`
	Endpoints []translate.GatewayEndpoint `json:"endpoints"`
}

// gateways shows what each gateway endpoint the proxies of ?network=N
// receive stands for: network, clusters and the pods behind it, with the
// share of its weight each stands for. ?name=CLUSTER keeps one Envoy
// cluster's; ?limit=N and ?after=I page.
func gateways(cp *controlplane.ControlPlane, w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	m := cp.Mesh()
	if m == nil {
		http.Error(w, "no mesh yet: waiting for the local cluster to sync", http.StatusServiceUnavailable)
		return
	}
	network := q.Get("network")
	if network != "" && !slices.Contains(m.Networks(), network) {
		http.Error(w, fmt.Sprintf("network %s: not a network of the mesh %v", clip.Quote(network), m.Networks()), http.StatusNotFound)
		return
	}
	limit, after := DefaultGatewaysLimit, 0
	var err error
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > MaxGatewaysLimit {
			http.Error(w, fmt.Sprintf("limit must be a number from 1 to %d", MaxGatewaysLimit), http.StatusBadRequest)
			return
		}
	}
	if s := q.Get("after"); s != "" {
		if after, err = strconv.Atoi(s); err != nil || after < 0 {
			http.Error(w, "after must be a number (the previous answer's next)", http.StatusBadRequest)
			return
		}
	}
	all := translate.GatewayEndpoints(m, translate.EDSView{Network: network})
	if name := q.Get("name"); name != "" {
		var one []translate.GatewayEndpoint
		for _, g := range all {
			if g.ClusterName == name {
				one = append(one, g)
			}
		}
		all = one
	}
	ans := GatewaysAnswer{Network: network, Total: len(all), Endpoints: []translate.GatewayEndpoint{}}
	if after < len(all) {
		page := all[after:]
		if len(page) > limit {
			page = page[:limit]
			ans.Next = strconv.Itoa(after + limit)
		}
		ans.Endpoints = page
	}
	writeJSON(w, ans)
}
