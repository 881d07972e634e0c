// Package ops serves the control plane's operational HTTP endpoints:
// readiness, Prometheus metrics and debug views.
package ops

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/horizonmesh/horizon/internal/controlplane"
	"github.com/horizonmesh/horizon/internal/xds/render"
)

// MaxDebugRequests is how many /debug/* requests run at once; more are
// refused with 429 rather than queued, so a burst of large answers cannot
// pile up memory.
const MaxDebugRequests = 2

// Bounds of the ops HTTP server: what one client's connections may hold.
const (
	// DefaultIdleTimeout closes a keep-alive connection idle that long.
	DefaultIdleTimeout = 30 * time.Second
	// ReadHeaderTimeout bounds how long a request's headers may take.
	ReadHeaderTimeout = 10 * time.Second
	// MaxHeaderBytes bounds a request's headers (431 beyond); probes,
	// scrapes and debug requests send well under 1 KiB.
	MaxHeaderBytes = 16 << 10
)

// NewServer returns the ops HTTP server for h: keep-alive connections
// idle for idleTimeout (DefaultIdleTimeout if 0) are closed, headers must
// arrive within ReadHeaderTimeout and fit MaxHeaderBytes, so idle or slow
// clients cannot hold connections without end.
func NewServer(h http.Handler, idleTimeout time.Duration) *http.Server {
	if idleTimeout <= 0 {
		idleTimeout = DefaultIdleTimeout
	}
	return &http.Server{Handler: h, IdleTimeout: idleTimeout, ReadHeaderTimeout: ReadHeaderTimeout, MaxHeaderBytes: MaxHeaderBytes}
}

// Handler returns the ops HTTP handler.
func Handler(cp *controlplane.ControlPlane, gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if !cp.Ready() {
			http.Error(w, "not ready: waiting for the local cluster to sync", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	debug := limit(MaxDebugRequests)
	mux.Handle("GET /debug/clusters", debug(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{
			"clusters":          cp.Clusters(),
			"meshNetworksError": cp.MeshNetworksError(),
		})
	}))
	mux.Handle("GET /debug/syncz", debug(func(w http.ResponseWriter, _ *http.Request) {
		versions := map[string]string{}
		for _, v := range cp.Views.Views() {
			versions[v.String()] = cp.Views.Version(v)
		}
		writeJSON(w, map[string]any{"streams": cp.Tracker.Streams(), "viewVersions": versions})
	}))
	mux.Handle("GET /debug/eds", debug(func(w http.ResponseWriter, r *http.Request) { eds(cp, w, r) }))
	mux.Handle("GET /debug/gateways", debug(func(w http.ResponseWriter, r *http.Request) { gateways(cp, w, r) }))
	mux.Handle("GET /debug/topology", debug(func(w http.ResponseWriter, r *http.Request) { topologyJSON(cp, w, r) }))
	mux.Handle("GET /ui/topology.svg", debug(func(w http.ResponseWriter, r *http.Request) { topologySVG(cp, w, r) }))
	mux.HandleFunc("GET /ui/topology", topologyHTML)
	return mux
}

// limit lets at most n requests through at once and answers the others
// 429 Too Many Requests at once.
func limit(n int) func(http.HandlerFunc) http.Handler {
	sem := make(chan struct{}, n)
	return func(h http.HandlerFunc) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
				h(w, r)
			default:
				w.Header().Set("Retry-After", "1")
				http.Error(w, "too many concurrent /debug requests; retry", http.StatusTooManyRequests)
			}
		})
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := render.Document("json", v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
